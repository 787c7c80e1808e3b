using SafetyNotebooks.Alignment;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

public class PpoTrainerTests
{
    public PpoTrainerTests() => TorchRuntime.EnsureLoaded();

    const long Target = 3;

    /// <summary>The toy reward: how many times the completion contains the target token.</summary>
    static readonly ScoreFunction CountTarget = ScoreFunctions.FromTokens((_, r) => r.Count(t => t == Target));

    static Tensor Prompts(int batch) => tensor(Enumerable.Range(0, batch).SelectMany(i => new long[] { 1, 2 + i % 3 }).ToArray(), new long[] { batch, 2 });

    static (PpoTrainer Ppo, HookedTransformer Model) Make(int rollouts, PpoConfig? config = null, double learningRate = 3e-3)
    {
        var model = new HookedTransformer(RolloutTests.Tiny);
        var reference = Rollouts.FrozenReference(model);
        var ppo = new PpoTrainer(new HookedTransformerWithValueHead(model), reference, CountTarget,
            (config ?? new PpoConfig()) with { NumTotalBatches = rollouts, ResponseLength = 8, Temperature = 1.0, Seed = 11 },
            new TrainerConfig { LearningRate = learningRate, LrSchedulerType = LrSchedulerType.Constant, ConsoleProgress = false, Seed = 5, WeightDecay = 0 });
        return (ppo, model);
    }

    // Reward = count of token 3 in 8 sampled tokens (about 8/7 at the start, 7 tokens). With β = 0.5 the KL-regularised
    // optimum tilts each token by exp(1/β): p*(3) ≈ e²/(e² + 6) = 0.55 from about 1/7, i.e. KL ≈ 0.45 nats per token,
    // 3.6 per completion, and an expected score of 4.4. Twenty rollouts of 16 completions raise the mean score well above
    // the start, while the KL to the reference (summed over the completion) stays below 6 (β = 0.05 lets it pass 15).
    [Fact]
    public void A_short_ppo_rlhf_run_raises_the_toy_score_while_the_kl_stays_bounded()
    {
        var (ppo, model) = Make(20, new PpoConfig { NumMiniBatches = 2, KlCoef = 0.5 }, learningRate: 1e-2);
        using var _ = ppo;
        using var __ = model;
        var stats = ppo.Train((i, rng) => new PromptBatch(Prompts(16)));
        Assert.Equal(20, stats.Count);
        double first = stats.Take(3).Average(s => s["objective/scores"]);
        double last = stats.TakeLast(5).Average(s => s["objective/scores"]);
        string trace = string.Join(" ", stats.Select(s => $"{s["objective/scores"]:0.00}/{s["objective/kl"]:0.00}"));
        Assert.True(last > first + 1.0, $"score went from {first:0.00} to {last:0.00} (score/kl by rollout: {trace})");
        Assert.All(stats, s => Assert.InRange(s["objective/kl"], -0.5, 6.0));
        foreach (var key in new[] { "objective/kl", "objective/entropy", "objective/non_score_reward", "objective/rlhf_reward", "objective/scores",
                     "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg", "val/clipfrac_avg", "policy/entropy_avg", "val/ratio" })
            Assert.True(stats[^1].ContainsKey(key), key);
        // rlhf_reward = scores + non_score_reward (TRL's definition).
        Assert.Equal(stats[^1]["objective/scores"] + stats[^1]["objective/non_score_reward"], stats[^1]["objective/rlhf_reward"], 6);
        // One trainer step per (epoch, mini-batch): 20 × 4 × 2.
        Assert.Equal(160, ppo.Trainer.Records.Count);
    }

    [Fact]
    public void The_same_seeds_give_the_same_ppo_run()
    {
        double[] Run()
        {
            var (ppo, model) = Make(2, new PpoConfig { NumPpoEpochs = 2 });
            using var _ = ppo;
            using var __ = model;
            var stats = ppo.Train((i, rng) => new PromptBatch(Prompts(8)));
            return stats.SelectMany(s => new[] { s["objective/scores"], s["objective/kl"], s["loss/policy_avg"], s["loss/value_avg"] }).ToArray();
        }
        Assert.Equal(Run(), Run());
    }

    [Fact]
    public void The_adaptive_controller_changes_beta_between_rollouts()
    {
        var (ppo, model) = Make(2, new PpoConfig { NumPpoEpochs = 1, KlCoef = 0.2, KlTarget = 6, KlHorizon = 100 });
        using var _ = ppo;
        using var __ = model;
        var stats = ppo.Train((i, rng) => new PromptBatch(Prompts(8)));
        // First rollout: the policy is the reference, KL = 0 → e = clip(0/6 − 1) = −0.2, β = 0.2·(1 − 0.2·8/100) = 0.1968.
        Assert.Equal(0.2, stats[0]["objective/kl_coef"], 12);
        Assert.Equal(0.0, stats[0]["objective/kl"], 5);
        Assert.Equal(0.1968, stats[1]["objective/kl_coef"], 6);
    }

    [Fact]
    public void A_rollout_that_cannot_be_split_into_the_mini_batches_fails_with_a_clear_message()
    {
        var (ppo, model) = Make(1, new PpoConfig { NumMiniBatches = 3 });
        using var _ = ppo;
        using var __ = model;
        var e = Assert.Throws<InvalidOperationException>(() => ppo.Train((i, rng) => new PromptBatch(Prompts(8))));
        Assert.Contains("multiple", e.Message);
    }

    [Fact]
    public void Bad_ppo_settings_name_the_field()
    {
        var e = Assert.Throws<ArgumentException>(() => new PpoConfig { MissingEosPenalty = 1 }.Validate());
        Assert.Contains("EosTokenId", e.Message);
        e = Assert.Throws<ArgumentException>(() => new PpoConfig { Cliprange = 0 }.Validate());
        Assert.Contains("Cliprange", e.Message);
    }
}
