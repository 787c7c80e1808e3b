using SafetyNotebooks.Alignment;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;
using static SafetyNotebooks.Tests.Alignment.PreferenceTestModels;

namespace SafetyNotebooks.Tests.Alignment;

public class KtoObjectiveTests
{
    public KtoObjectiveTests() => TorchRuntime.EnsureLoaded();

    static UnpairedExample[] Examples() => new[]
    {
        new UnpairedExample(L(1, 2), L(5, 5, 3), true),
        new UnpairedExample(L(1, 4), L(7, 3), false),
        new UnpairedExample(L(1), L(6, 3), true),
    };

    [Fact]
    public void With_the_policy_equal_to_the_reference_kto_loss_is_the_weighted_half()
    {
        // Every log-ratio is 0 and the KL estimate is 0: desirable 1·(1 − σ(0)) = 0.5, undesirable 2·(1 − σ(0)) = 1.
        // Mean over [0.5, 1, 0.5] = 2/3.
        var policy = Tiny();
        var objective = new KtoObjective(policy, DpoObjective.FrozenCopy(policy), new KtoConfig { UndesirableWeight = 2 });
        using var batch = PreferenceData.CollateUnpaired(Examples(), Pad);
        var o = objective.Compute(batch);
        Assert.Equal(2.0 / 3, o.Loss.item<float>(), 5);
        Assert.Equal(0f, o.Metrics!["kl"].item<float>(), 6);
        Assert.Equal(0f, o.Metrics["rewards/margins"].item<float>(), 6);
    }

    [Fact]
    public void Kto_loss_matches_the_formula_on_hand_computed_row_log_probs()
    {
        var policy = Tiny();
        var reference = Tiny(seed: 11);
        var ex = Examples();
        var objective = new KtoObjective(policy, reference, new KtoConfig { Beta = 0.5 });
        using var batch = PreferenceData.CollateUnpaired(ex, Pad);
        var o = objective.Compute(batch);
        // KL rows: prompt i with completion i − 1 (cycled); KL = max(0, mean(policy − reference)).
        int n = ex.Length;
        double kl = Math.Max(0, Enumerable.Range(0, n).Average(i =>
            RowAlone(policy, ex[i].Prompt, ex[(i + n - 1) % n].Completion) - RowAlone(reference, ex[i].Prompt, ex[(i + n - 1) % n].Completion)));
        static double S(double x) => 1 / (1 + Math.Exp(-x));
        double expected = ex.Average(e =>
        {
            double ratio = RowAlone(policy, e.Prompt, e.Completion) - RowAlone(reference, e.Prompt, e.Completion);
            return e.Desirable ? 1 - S(0.5 * (ratio - kl)) : 1 - S(0.5 * (kl - ratio));
        });
        Assert.Equal(kl, o.Metrics!["kl"].item<float>(), 4);
        Assert.Equal(expected, o.Loss.item<float>(), 4);
    }
}
