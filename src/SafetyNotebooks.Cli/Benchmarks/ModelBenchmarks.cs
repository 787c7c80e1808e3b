using System.Diagnostics;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Cli.Benchmarks;

/// <summary>
/// Fixed workloads for tracking the model's CPU performance. Each returns the median seconds per step over
/// <c>runs</c> timed repetitions after <c>warmup</c> untimed ones (setup such as building the model is not timed),
/// except <see cref="MatmulPeak"/>, which returns GFLOP/s.
/// </summary>
public static class ModelBenchmarks
{
    /// <summary>Workload names mapped to runners (default warmup/runs).</summary>
    public static IReadOnlyDictionary<string, Func<double>> Workloads { get; } = new Dictionary<string, Func<double>>
    {
        ["attn_only_train_step"] = () => AttnOnlyTrainStep(),
        ["gpt2_small_forward"] = () => Gpt2SmallForward(),
        ["gpt2_small_run_with_cache"] = () => Gpt2SmallRunWithCache(),
        ["matmul_peak"] = () => MatmulPeak(),
    };

    /// <summary>Unit of each workload's result.</summary>
    public static string UnitOf(string workload) => workload == "matmul_peak" ? "GFLOP/s" : "s/step";

    /// <summary>Median of the timed runs of <paramref name="step"/>, in seconds.</summary>
    public static double MedianSeconds(Action step, int warmup, int runs)
    {
        if (runs < 1) throw new ArgumentOutOfRangeException(nameof(runs), "runs must be at least 1.");
        for (int i = 0; i < warmup; i++) step();
        var times = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            step();
            times[i] = sw.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        return runs % 2 == 1 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
    }

    /// <summary>
    /// One AdamW training step (forward, loss, backward, update) of a 2-layer attention-only model
    /// (d_model 64, 8 heads × d_head 8, vocab 64) on a batch of 64 sequences of 65 tokens.
    /// </summary>
    public static double AttnOnlyTrainStep(int warmup = 3, int runs = 20)
    {
        TorchRuntime.EnsureLoaded();
        var cfg = HookedTransformerConfig.AttnOnly2L(dVocab: 64, nCtx: 65) with { Seed = 0 };
        using var model = new HookedTransformer(cfg);
        using var opt = optim.AdamW(model.parameters(), 1e-3);
        using var tokens = randint(0, 64, new long[] { 64, 65 });
        return MedianSeconds(() =>
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var loss = model.Loss(tokens);
            loss.backward();
            opt.step();
        }, warmup, runs);
    }

    /// <summary>Builds GPT-2 small with random weights (not timed by the workloads).</summary>
    static HookedTransformer RandomGpt2Small() => new(HookedTransformerConfig.Gpt2Small() with { Seed = 0 });

    /// <summary>Inference forward pass of GPT-2 small (random weights) on 4 × 128 tokens, without autograd.</summary>
    public static double Gpt2SmallForward(int warmup = 1, int runs = 5) =>
        TimeGpt2Small((model, tokens) => model.forward(tokens), warmup, runs);

    /// <summary>
    /// GPT-2 small (random weights) on 4 × 128 tokens with every activation cached that TransformerLens' <c>run_with_cache</c>
    /// caches by default: every hook point except the per-head <c>attn.hook_result</c> (TL's <c>use_attn_result</c> is off).
    /// </summary>
    public static double Gpt2SmallRunWithCache(int warmup = 1, int runs = 5) =>
        TimeGpt2Small((model, tokens) => model.RunWithCache(tokens).Cache.Dispose(), warmup, runs);

    /// <summary>Result of <see cref="CacheOverheadPaired"/>: the median per-pair ratio and the medians of each half.</summary>
    public sealed record CacheOverhead(double Ratio, double ForwardSeconds, double CacheSeconds, int Pairs, double ForwardFaults, double CacheFaults);

    /// <summary>
    /// <c>RunWithCache</c> / forward on GPT-2 small (4 × 128 tokens), measured in interleaved pairs on one model: each pair
    /// times a plain forward and a cache-all run back to back (the order alternating from pair to pair), and the result is
    /// the median of the per-pair ratios. Two medians taken minutes apart (the separate workloads) drift with the machine's
    /// load by more than the 15% this ratio is held to; a pair shares its load. Also reports the minor page faults per call
    /// (from <c>/proc/self/stat</c>), which do not depend on load: memory the allocator hands back and re-faults shows there.
    /// </summary>
    public static CacheOverhead CacheOverheadPaired(int warmup = 2, int pairs = 11)
    {
        if (pairs < 1) throw new ArgumentOutOfRangeException(nameof(pairs), "pairs must be at least 1.");
        TorchRuntime.EnsureLoaded();
        using var model = RandomGpt2Small();
        using var tokens = randint(0, 50257, new long[] { 4, 128 });
        (double Seconds, long Faults) Time(bool cache)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            long f0 = MinorFaults();
            var sw = Stopwatch.StartNew();
            if (cache) model.RunWithCache(tokens).Cache.Dispose(); else model.forward(tokens);
            var s = sw.Elapsed.TotalSeconds;
            return (s, MinorFaults() - f0);
        }
        for (int i = 0; i < warmup; i++) { Time(false); Time(true); }
        var ratios = new double[pairs]; var fwd = new double[pairs]; var cached = new double[pairs];
        var fwdFaults = new double[pairs]; var cacheFaults = new double[pairs];
        for (int i = 0; i < pairs; i++)
        {
            (double, long) f, c;
            if (i % 2 == 0) { f = Time(false); c = Time(true); } else { c = Time(true); f = Time(false); }
            (fwd[i], fwdFaults[i]) = f; (cached[i], cacheFaults[i]) = c;
            ratios[i] = c.Item1 / f.Item1;
        }
        return new CacheOverhead(Median(ratios), Median(fwd), Median(cached), pairs, Median(fwdFaults), Median(cacheFaults));
    }

    static double Median(double[] v)
    {
        var a = (double[])v.Clone(); Array.Sort(a);
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    /// <summary>Minor page faults of this process so far (field 10 of /proc/self/stat); 0 where /proc is missing.</summary>
    static long MinorFaults()
    {
        try
        {
            var stat = File.ReadAllText("/proc/self/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');   // fields from 3 (state) on
            return long.Parse(fields[10 - 3], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }

    /// <summary>Times <paramref name="step"/> on a random GPT-2 small and 4 × 128 random tokens, under no_grad, in a dispose scope.</summary>
    static double TimeGpt2Small(Action<HookedTransformer, Tensor> step, int warmup, int runs)
    {
        TorchRuntime.EnsureLoaded();
        using var model = RandomGpt2Small();
        using var tokens = randint(0, 50257, new long[] { 4, 128 });
        return MedianSeconds(() =>
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            step(model, tokens);
        }, warmup, runs);
    }

    /// <summary>GFLOP/s of an n × n float32 matrix multiply (2n³ flops), median over the runs.</summary>
    public static double MatmulPeak(int n = 2048, int warmup = 5, int runs = 15)
    {
        TorchRuntime.EnsureLoaded();
        using var a = randn(n, n);
        using var b = randn(n, n);
        var seconds = MedianSeconds(() => { using var c = a.matmul(b); }, warmup, runs);
        return 2.0 * n * n * n / seconds / 1e9;
    }

    /// <summary>
    /// Memory over a long training run: resident set size and live tensors sampled at each quarter, and the RSS
    /// after warm-up (the first <see cref="WarmupSteps"/> steps), which is the run's live working set.
    /// </summary>
    public sealed record MemoryReport(int Steps, double[] RssMb, long LiveTensorsHalf, long LiveTensorsEnd, double SecondsPerStep,
        double RssWarmMb = double.NaN, int WarmupSteps = 0)
    {
        /// <summary>The target: RSS at the end of the run at most this many times the working set after warm-up.</summary>
        public const double MaxRssOverWarm = 2.0;
        /// <summary>RSS at the end over the RSS after warm-up.</summary>
        public double RssEndOverWarm => RssEndMb / RssWarmMb;
        /// <summary>
        /// True when the run kept its memory: RSS at the end within <see cref="MaxRssOverWarm"/>× the working set after
        /// warm-up, and as many live tensors at the end as at half-way. Freed memory that the C allocator keeps instead of
        /// returning to the system (see <see cref="Runtime.MallocTrimPolicy"/>) fails the first part; a tensor leak the second.
        /// </summary>
        public bool MeetsTarget => RssEndOverWarm <= MaxRssOverWarm && LiveTensorsEnd <= LiveTensorsHalf;
        /// <summary>RSS at half-way (allocator caches warmed up).</summary>
        public double RssEarlyMb => RssMb[1];
        /// <summary>RSS at the end.</summary>
        public double RssEndMb => RssMb[^1];
        /// <summary>RSS growth over the second half of the run: a leak keeps growing there, allocator caches do not.</summary>
        public double RssGrowthMb => RssEndMb - RssEarlyMb;
        /// <summary>Live tensors at half-way (for comparisons with the end).</summary>
        public long LiveTensorsEarly => LiveTensorsHalf;
    }

    /// <summary>
    /// Trains the <see cref="AttnOnlyTrainStep"/> model for <paramref name="steps"/> AdamW steps on fresh random
    /// batches and samples memory at each quarter of the run. A loop that leaks tensors grows without bound.
    /// </summary>
    public static MemoryReport TrainingMemory(int steps = 2000)
    {
        TorchRuntime.EnsureLoaded();
        var cfg = HookedTransformerConfig.AttnOnly2L(dVocab: 64, nCtx: 65) with { Seed = 0 };
        using var model = new HookedTransformer(cfg);
        using var opt = optim.AdamW(model.parameters(), 1e-3);
        var rss = new double[4];
        long liveHalf = 0;
        int warmup = Math.Clamp(steps / 20, 1, 100);
        double rssWarm = double.NaN;
        var sw = Stopwatch.StartNew();
        for (int i = 1; i <= steps; i++)
        {
            if (i == warmup + 1)
            {
                GC.Collect(); GC.WaitForPendingFinalizers();
                rssWarm = Environment.WorkingSet / 1048576.0;
            }
            using (var scope = NewDisposeScope())
            {
                var tokens = randint(0, 64, new long[] { 64, 65 });
                opt.zero_grad();
                var loss = model.Loss(tokens);
                loss.backward();
                opt.step();
            }
            int quarter = i * 4 / steps;
            if (i * 4 % steps == 0 && quarter >= 1)
            {
                GC.Collect(); GC.WaitForPendingFinalizers();
                rss[quarter - 1] = Environment.WorkingSet / 1048576.0;
                if (quarter == 2) liveHalf = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            }
        }
        double perStep = sw.Elapsed.TotalSeconds / steps;
        return new MemoryReport(steps, rss, liveHalf, DisposeScopeManager.Statistics.ThreadTotalLiveCount, perStep, rssWarm, warmup);
    }
}
