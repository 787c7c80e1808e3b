using SafetyNotebooks.Alignment;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

public class GrpoRlooTrainerTests
{
    public GrpoRlooTrainerTests() => TorchRuntime.EnsureLoaded();

    static readonly ScoreFunction CountTarget = ScoreFunctions.FromTokens((_, r) => r.Count(t => t == 3));

    static Tensor Prompts(int n) => tensor(Enumerable.Range(0, n).SelectMany(i => new long[] { 1, 2 + i % 3 }).ToArray(), new long[] { n, 2 });

    static TrainerConfig Optim => new() { LearningRate = 3e-3, LrSchedulerType = LrSchedulerType.Constant, ConsoleProgress = false, Seed = 5, WeightDecay = 0 };

    [Fact]
    public void A_short_grpo_run_with_a_kl_term_raises_the_toy_score()
    {
        using var model = new HookedTransformer(RolloutTests.Tiny);
        using var reference = Rollouts.FrozenReference(model);
        using var grpo = new GrpoTrainer(model, reference, CountTarget,
            new GrpoConfig { NumGenerations = 4, Beta = 0.04, NumTotalBatches = 12, NumIterations = 2, MaxCompletionLength = 8, Seed = 2 }, Optim);
        var stats = grpo.Train((i, rng) => new PromptBatch(Prompts(4)));
        double first = stats.Take(2).Average(s => s["reward"]), last = stats.TakeLast(2).Average(s => s["reward"]);
        Assert.True(last > first + 1.0, $"reward went from {first:0.00} to {last:0.00}");
        Assert.All(stats, s => Assert.True(s["kl"] >= 0, "k3 is never negative"));
        Assert.Contains("clip_ratio/region_mean", stats[^1].Keys);
        Assert.Contains("frac_reward_zero_std", stats[^1].Keys);
    }

    [Fact]
    public void A_short_rloo_run_raises_the_toy_score()
    {
        using var model = new HookedTransformer(RolloutTests.Tiny);
        using var reference = Rollouts.FrozenReference(model);
        using var rloo = new RlooTrainer(model, reference, CountTarget,
            new RlooConfig { NumGenerations = 4, NumTotalBatches = 12, NumIterations = 2, MaxCompletionLength = 8, Seed = 2 }, Optim);
        var stats = rloo.Train((i, rng) => new PromptBatch(Prompts(4)));
        double first = stats.Take(2).Average(s => s["reward"]), last = stats.TakeLast(2).Average(s => s["reward"]);
        Assert.True(last > first + 1.0, $"reward went from {first:0.00} to {last:0.00}");
    }

    // RLOO's reward folds the KL in at the sequence level: score − β·Σₜ k1. Hand-made rollout: log π − log π_ref per token
    // row 0 [0.5, 1 (masked)], row 1 [0.2, 0.3] → Σ k1 = [0.5, 0.5]; scores [1, 2], β = 0.1 → [0.95, 1.95].
    [Fact]
    public void Rloo_rewards_subtract_beta_times_the_summed_log_ratio()
    {
        using var r = new Rollout
        {
            QueryResponses = zeros(2, 3, dtype: ScalarType.Int64), ContextLength = 1, Responses = zeros(2, 2, dtype: ScalarType.Int64),
            ResponseMask = tensor(new[] { true, false, true, true }, new long[] { 2, 2 }),
            LogProbs = tensor(new[] { -1f, -1f, -2f, -2f }, new long[] { 2, 2 }),
            RefLogProbs = tensor(new[] { -1.5f, -2f, -2.2f, -2.3f }, new long[] { 2, 2 }),
            Scores = tensor(new[] { 1f, 2f }), ContainsEos = ones(2, dtype: ScalarType.Bool),
        };
        Assert.Equal(new[] { 0.95f, 1.95f }, RlooTrainer.Rewards(r, 0.1).data<float>().ToArray(), (a, b) => Math.Abs(a - b) < 1e-5);
    }

    [Fact]
    public void Grpo_with_a_kl_term_needs_a_reference_model()
    {
        using var model = new HookedTransformer(RolloutTests.Tiny);
        var e = Assert.Throws<ArgumentException>(() => new GrpoTrainer(model, null, CountTarget, new GrpoConfig { Beta = 0.1 }, Optim));
        Assert.Contains("FrozenReference", e.Message);
    }
}
