using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Cli.Benchmarks;

/// <summary>
/// <c>gpt2_small_generate</c>: greedy generation with GPT-2 small's shape (random weights, seed 0), a batch of 8 prompts of
/// 32 random tokens, 96 new tokens each, with and without the key/value cache. The same workload runs in
/// benchmarks/pytorch_baseline.py (its own KV cache) for the ratio.
/// </summary>
public static class GenerationBenchmark
{
    /// <summary>Workload name in <c>bench</c>.</summary>
    public const string Name = "gpt2_small_generate";
    /// <summary>Prompts per batch.</summary>
    public const int Batch = 8;
    /// <summary>Prompt length.</summary>
    public const int PromptLength = 32;
    /// <summary>New tokens per prompt.</summary>
    public const int NewTokens = 96;

    /// <summary>Median seconds per full generation with the cache and without it, and whether both produced the same tokens.</summary>
    public sealed record Result(double CachedSeconds, double UncachedSeconds, int CachedRuns, int UncachedRuns, bool SameTokens)
    {
        /// <summary>How many times faster the cache makes generation.</summary>
        public double SpeedUp => UncachedSeconds / CachedSeconds;
    }

    /// <summary>
    /// Times <paramref name="cachedRuns"/> cached generations (after one warm-up) and <paramref name="uncachedRuns"/> uncached
    /// ones (the uncached one is slow: each token recomputes the whole prefix), and checks both give the same tokens.
    /// </summary>
    public static Result Run(int cachedRuns = 5, int uncachedRuns = 1)
    {
        TorchRuntime.EnsureLoaded();
        using var model = new HookedTransformer(HookedTransformerConfig.Gpt2Small() with { Seed = 0 });
        random.manual_seed(0);
        using var prompt = randint(0, 50257, new long[] { Batch, PromptLength });
        var options = GenerationOptions.Greedy(NewTokens);
        long[]? cachedTokens = null, uncachedTokens = null;
        double cached = ModelBenchmarks.MedianSeconds(() =>
        {
            using var r = Generation.Generate(model, prompt, options);
            cachedTokens ??= r.Tokens.data<long>().ToArray();
        }, warmup: 1, cachedRuns);
        double uncached = ModelBenchmarks.MedianSeconds(() =>
        {
            using var r = Generation.Generate(model, prompt, options with { UseCache = false });
            uncachedTokens ??= r.Tokens.data<long>().ToArray();
        }, warmup: 0, uncachedRuns);
        return new Result(cached, uncached, cachedRuns, uncachedRuns, cachedTokens!.SequenceEqual(uncachedTokens!));
    }
}
