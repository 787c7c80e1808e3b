using SafetyNotebooks.Alignment;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using SafetyNotebooks.Training;
using Xunit;
using static TorchSharp.torch;
using static SafetyNotebooks.Tests.Alignment.PreferenceTestModels;

namespace SafetyNotebooks.Tests.Alignment;

public class DpoObjectiveTests
{
    public DpoObjectiveTests() => TorchRuntime.EnsureLoaded();

    static double Metric(ObjectiveOutput o, string name) => o.Metrics![name].to_type(ScalarType.Float64).item<double>();

    [Fact]
    public void With_the_policy_equal_to_the_reference_sigmoid_dpo_loss_is_ln_2()
    {
        // Policy = reference ⇒ every log-ratio is 0 ⇒ Δ = 0 ⇒ −log σ(0) = ln 2 = 0.693147, rewards 0, accuracy 0 (strict >).
        var policy = Tiny();
        var objective = new DpoObjective(policy, DpoObjective.FrozenCopy(policy));
        using var batch = PreferenceData.Collate(Pairs(), Pad, PaddingSide.Left);
        var o = objective.Compute(batch);
        Assert.Equal(Math.Log(2), o.Loss.item<float>(), 5);
        Assert.Equal(0, Metric(o, "rewards/chosen"), 6);
        Assert.Equal(0, Metric(o, "rewards/margins"), 6);
        Assert.Equal(0, Metric(o, "rewards/accuracies"));
        Assert.Equal(3f, o.Weight!.item<float>());
    }

    [Fact]
    public void Logps_metrics_are_the_mean_summed_completion_log_probs_of_each_side()
    {
        var policy = Tiny();
        var objective = new DpoObjective(policy, DpoObjective.FrozenCopy(policy));
        var pairs = Pairs();
        using var batch = PreferenceData.Collate(pairs, Pad);
        var o = objective.Compute(batch);
        double chosen = pairs.Average(p => RowAlone(policy, p.Prompt, p.Chosen));
        double rejected = pairs.Average(p => RowAlone(policy, p.Prompt, p.Rejected));
        Assert.Equal(chosen, Metric(o, "logps/chosen"), 4);
        Assert.Equal(rejected, Metric(o, "logps/rejected"), 4);
    }

    [Fact]
    public void Only_the_policy_gets_gradients_and_the_reference_stays_frozen_in_eval_mode()
    {
        var policy = Tiny();
        var reference = DpoObjective.FrozenCopy(policy);
        var objective = new DpoObjective(policy, reference);
        policy.train();
        using var batch = PreferenceData.Collate(Pairs(), Pad);
        objective.Compute(batch).Loss.backward();
        Assert.Contains(policy.parameters(), p => p.grad is not null);
        Assert.All(reference.parameters(), p => { Assert.False(p.requires_grad); Assert.Null(p.grad); });
        Assert.False(reference.training);
    }

    [Fact]
    public void The_policy_itself_as_reference_is_refused_with_the_fix()
    {
        var policy = Tiny();
        var e = Assert.Throws<ArgumentException>(() => new DpoObjective(policy, policy));
        Assert.Contains("FrozenCopy", e.Message);
    }

    [Fact]
    public void Precomputed_reference_log_probs_give_the_same_loss_without_a_reference_model()
    {
        var policy = Tiny();
        var reference = Tiny(seed: 11);                  // a different reference, so the log-ratios are not 0
        var withRef = new DpoObjective(policy, reference, new DpoConfig { LossType = DpoLossType.Ipo, Beta = 0.3 });
        using var batch = PreferenceData.Collate(Pairs(), Pad);
        var pre = withRef.WithReferenceLogProbs(batch);
        var noRef = new DpoObjective(policy, null, withRef.Config);
        Assert.Equal(withRef.Compute(batch).Loss.item<float>(), noRef.Compute(pre).Loss.item<float>(), 5);
        // Reference log-probs are the rows' summed completion log-probs under the reference, computed by hand.
        var pairs = Pairs();
        Assert.Equal(RowAlone(reference, pairs[1].Prompt, pairs[1].Rejected), pre.RefRejectedLogProbs![1].item<float>(), 4);
        var e = Assert.Throws<InvalidOperationException>(() => noRef.Compute(batch));
        Assert.Contains("WithReferenceLogProbs", e.Message);
    }

    [Fact]
    public void Cpo_adds_the_nll_of_the_chosen_completions_to_the_reference_free_loss()
    {
        var policy = Tiny();
        var pairs = Pairs();
        var objective = new DpoObjective(policy, null, new DpoConfig { LossType = DpoLossType.Cpo, Beta = 0.1, CpoAlpha = 1.0 });
        using var batch = PreferenceData.Collate(pairs, Pad);
        var o = objective.Compute(batch);
        // By hand: preference term mean_i log(1 + exp(−0.1·(c_i − r_i))), NLL = −Σ c_i / Σ |chosen_i| (TRL's cross-entropy over chosen tokens).
        var c = pairs.Select(p => RowAlone(policy, p.Prompt, p.Chosen)).ToArray();
        var r = pairs.Select(p => RowAlone(policy, p.Prompt, p.Rejected)).ToArray();
        double pref = c.Zip(r, (a, b) => Math.Log(1 + Math.Exp(-0.1 * (a - b)))).Average();
        double nll = -c.Sum() / pairs.Sum(p => p.Chosen.Count);
        Assert.Equal(nll, Metric(o, "nll_loss"), 4);
        Assert.Equal(pref + nll, o.Loss.item<float>(), 4);
        Assert.Equal(0.1 * c.Average(), Metric(o, "rewards/chosen"), 4);
    }

    [Fact]
    public void Simpo_uses_length_averaged_log_probs_and_the_gamma_margin()
    {
        var policy = Tiny();
        var pairs = Pairs();
        var objective = new DpoObjective(policy, null, new DpoConfig { LossType = DpoLossType.SimPo, Beta = 2, SimpoGamma = 0.5, CpoAlpha = 0 });
        using var batch = PreferenceData.Collate(pairs, Pad, PaddingSide.Left);
        var o = objective.Compute(batch);
        var c = pairs.Select(p => RowAlone(policy, p.Prompt, p.Chosen) / p.Chosen.Count).ToArray();
        var r = pairs.Select(p => RowAlone(policy, p.Prompt, p.Rejected) / p.Rejected.Count).ToArray();
        double expected = c.Zip(r, (a, b) => Math.Log(1 + Math.Exp(-(2 * (a - b) - 0.5)))).Average();
        Assert.Equal(expected, o.Loss.item<float>(), 4);
        Assert.Equal(c.Average(), Metric(o, "logps/chosen"), 4);
    }

    static Trainer<PreferenceBatch> Run(int seed)
    {
        var policy = Tiny(seed);
        var objective = new DpoObjective(policy, DpoObjective.FrozenCopy(policy), new DpoConfig { Beta = 0.1 });
        var batch = PreferenceData.Collate(Pairs(), Pad);
        var trainer = new Trainer<PreferenceBatch>(objective, new TrainerConfig { MaxSteps = 12, LearningRate = 1e-2, ConsoleProgress = false, Seed = seed });
        trainer.Train(new[] { batch });
        return trainer;
    }

    [Fact]
    public void A_short_dpo_run_on_a_tiny_model_raises_reward_accuracy_and_margin()
    {
        var trainer = Run(seed: 5);
        var first = trainer.Records[0].Metrics!;
        var last = trainer.Records[^1].Metrics!;
        Assert.Equal(0, first["rewards/accuracies"]);     // step 1 is measured before the update: policy = reference
        Assert.Equal(1, last["rewards/accuracies"]);
        Assert.True(last["rewards/margins"] > 0.05, $"margin {last["rewards/margins"]}");
        Assert.True(trainer.Records[^1].Loss < Math.Log(2) - 0.02, $"loss {trainer.Records[^1].Loss}");
    }

    [Fact]
    public void Dpo_training_with_the_same_seed_gives_identical_loss_histories()
    {
        var a = Run(seed: 9).LossHistory;
        var b = Run(seed: 9).LossHistory;
        Assert.Equal(a, b);
    }
}
