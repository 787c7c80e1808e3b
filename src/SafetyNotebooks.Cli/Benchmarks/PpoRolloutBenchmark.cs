using SafetyNotebooks.Alignment;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Cli.Benchmarks;

/// <summary>
/// <c>ppo_rollout</c>: one PPO-RLHF rollout with GPT-2 small's shape (random weights, seed 0): 16 prompts of 32 random
/// tokens, 64 new tokens each sampled with the KV cache (EOS 50256, temperature 1), then the frozen reference's pass
/// (log-probs of the completion) and the value pass (trunk + value head), through <see cref="Rollouts.Collect"/>.
/// The same workload runs in benchmarks/pytorch_baseline.py for the ratio.
/// </summary>
public static class PpoRolloutBenchmark
{
    /// <summary>Workload name in <c>bench</c>.</summary>
    public const string Name = "ppo_rollout";
    /// <summary>Prompts per rollout.</summary>
    public const int Batch = 16;
    /// <summary>Prompt length.</summary>
    public const int PromptLength = 32;
    /// <summary>New tokens per prompt.</summary>
    public const int NewTokens = 64;

    /// <summary>Median seconds per rollout over <paramref name="runs"/> (after <paramref name="warmup"/>), and the tokens generated in the last one.</summary>
    public static (double Seconds, long GeneratedTokens) Run(int warmup = 1, int runs = 3)
    {
        TorchRuntime.EnsureLoaded();
        using var model = new HookedTransformer(HookedTransformerConfig.Gpt2Small() with { Seed = 0 });
        using var policy = new HookedTransformerWithValueHead(model);
        using var reference = Rollouts.FrozenReference(model);
        random.manual_seed(0);
        using var prompt = randint(0, 50257, new long[] { Batch, PromptLength });
        var options = new GenerationOptions { MaxNewTokens = NewTokens, DoSample = true, Temperature = 1.0, EosTokenId = 50256, Seed = 0 };
        ScoreFunction score = c => zeros(c.Responses.shape[0]);
        long generated = 0;
        double median = ModelBenchmarks.MedianSeconds(() =>
        {
            using var r = Rollouts.Collect(policy, reference, new PromptBatch(prompt), score, options);
            generated = r.ResponseMask.sum().item<long>();
        }, warmup, runs);
        return (median, generated);
    }
}
