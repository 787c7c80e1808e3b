using SafetyNotebooks.Alignment;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Cli.Benchmarks;

/// <summary>
/// <c>dpo_step</c>: one sigmoid-DPO training step with GPT-2 small's shape (random weights, seed 0): a batch of 4
/// preference pairs, each row 64 prompt + 64 completion tokens (8 rows × 128), through <see cref="DpoObjective"/>:
/// policy forward with autograd, frozen reference forward under no_grad, completion log-probs, the loss and TRL's
/// metrics, backward and an AdamW step. benchmarks/pytorch_baseline.py's <c>dpo_step</c> does the same in PyTorch.
/// </summary>
public static class DpoBenchmark
{
    /// <summary>Workload name in <c>bench</c>.</summary>
    public const string Name = "dpo_step";
    /// <summary>Preference pairs per batch.</summary>
    public const int Pairs = 4;
    /// <summary>Prompt tokens per row.</summary>
    public const int PromptLength = 64;
    /// <summary>Completion tokens per row.</summary>
    public const int CompletionLength = 64;

    /// <summary>Median seconds per DPO step.</summary>
    public static double Run(int warmup = 1, int runs = 5)
    {
        TorchRuntime.EnsureLoaded();
        using var policy = new HookedTransformer(HookedTransformerConfig.Gpt2Small() with { Seed = 0 });
        using var reference = DpoObjective.FrozenCopy(policy);
        var objective = new DpoObjective(policy, reference, new DpoConfig { Beta = 0.1 });
        using var opt = optim.AdamW(policy.parameters(), 1e-6);
        random.manual_seed(0);
        using var batch = RandomBatch();
        policy.train();
        return ModelBenchmarks.MedianSeconds(() =>
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var output = objective.Compute(batch);
            output.Loss.backward();
            opt.step();
        }, warmup, runs);
    }

    /// <summary>Random prompts shared by each pair's two rows, random chosen and rejected completions, no padding.</summary>
    static PreferenceBatch RandomBatch()
    {
        int width = PromptLength + CompletionLength;
        var prompt = randint(0, 50257, new long[] { Pairs, PromptLength });
        var chosen = randint(0, 50257, new long[] { Pairs, CompletionLength });
        var rejected = randint(0, 50257, new long[] { Pairs, CompletionLength });
        var tokens = cat(new[] { cat(new[] { prompt, chosen }, 1), cat(new[] { prompt, rejected }, 1) }, 0);
        var attention = ones(2 * Pairs, width, dtype: ScalarType.Int64);
        var completion = cat(new[] { zeros(2 * Pairs, PromptLength, dtype: ScalarType.Bool), ones(2 * Pairs, CompletionLength, dtype: ScalarType.Bool) }, 1);
        return new PreferenceBatch(tokens, attention, completion);
    }
}
