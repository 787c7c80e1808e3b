using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Cli.Benchmarks;

/// <summary>
/// <c>patching_sweep</c>: activation patching of <c>resid_pre</c> at every layer × position of GPT-2 small's shape (random
/// weights, seed 0), batch 1 × 32 tokens, with a last-position logit difference as the metric. Times the batched sweep
/// (<see cref="Patching.GetActPatchResidPre"/>) against TransformerLens' one-forward-per-cell loop
/// (<see cref="PatchingOptions.Naive"/>) and checks both give the same numbers.
/// </summary>
public static class PatchingBenchmark
{
    /// <summary>Workload name in <c>bench</c>.</summary>
    public const string Name = "patching_sweep";
    /// <summary>Prompt length.</summary>
    public const int Positions = 32;
    /// <summary>The speed-up over the naive loop the batched sweep should reach.</summary>
    public const double TargetSpeedUp = 5.0;

    /// <summary>Median seconds of the batched sweep and of the naive loop, cells swept, and the largest difference of their results.</summary>
    public sealed record Result(double BatchedSeconds, double NaiveSeconds, int BatchedRuns, int NaiveRuns, int Cells, double MaxAbsDiff)
    {
        /// <summary>How many times faster the batched sweep is.</summary>
        public double SpeedUp => NaiveSeconds / BatchedSeconds;
        /// <summary>Whether <see cref="SpeedUp"/> reaches <see cref="TargetSpeedUp"/>.</summary>
        public bool MeetsTarget => SpeedUp >= TargetSpeedUp;
    }

    /// <summary>Times <paramref name="batchedRuns"/> batched sweeps (after one warm-up) and <paramref name="naiveRuns"/> naive ones.</summary>
    public static Result Run(int batchedRuns = 3, int naiveRuns = 1)
    {
        TorchRuntime.EnsureLoaded();
        using var model = new HookedTransformer(HookedTransformerConfig.Gpt2Small() with { Seed = 0 });
        random.manual_seed(0);
        using var clean = randint(0, 50257, new long[] { 1, Positions });
        using var corrupted = clean.clone();
        corrupted[0, 5] = tensor(1000L);
        corrupted[0, 20] = tensor(2000L);
        Func<Tensor, Tensor> metric = logits => (logits[.., -1, 11] - logits[.., -1, 22]).mean();
        var (cleanLogits, cleanCache) = model.RunWithCache(clean, n => n.EndsWith("hook_resid_pre"));
        cleanLogits.Dispose();
        using var _ = cleanCache;
        Tensor? batched = null, naive = null;
        double b = ModelBenchmarks.MedianSeconds(() => { var r = Patching.GetActPatchResidPre(model, corrupted, cleanCache, metric, new PatchingOptions { MetricPositions = [-1] }); if (batched is null) batched = r; else r.Dispose(); }, 1, batchedRuns);
        double n = ModelBenchmarks.MedianSeconds(() => { var r = Patching.GetActPatchResidPre(model, corrupted, cleanCache, metric, new PatchingOptions { Naive = true }); if (naive is null) naive = r; else r.Dispose(); }, 0, naiveRuns);
        double diff = (batched! - naive!).abs().max().to_type(ScalarType.Float64).item<double>();
        int cells = (int)batched!.numel();
        batched.Dispose(); naive!.Dispose();
        return new Result(b, n, batchedRuns, naiveRuns, cells, diff);
    }
}
