using SafetyNotebooks.Alignment;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

public class KlControllerTests
{
    public KlControllerTests() => TorchRuntime.EnsureLoaded();

    static float[] F(Tensor t) => t.to_type(ScalarType.Float32).data<float>().ToArray();

    // logp = [−1, −2], logp_ref = [−1.5, −1]: log r = ref − logp = [−0.5, 1].
    //   k1 = −log r = [0.5, −1]
    //   k3 = (r − 1) − log r = [e^−0.5 − 1 + 0.5, e − 1 − 1] = [0.1065307, 0.7182818]
    [Fact]
    public void K1_and_k3_match_Schulman_s_formulas_on_given_log_probs()
    {
        using var logp = tensor(new[] { -1f, -2f });
        using var refLogp = tensor(new[] { -1.5f, -1f });
        Assert.Equal(new[] { 0.5f, -1f }, F(KlEstimators.K1(logp, refLogp)), (a, b) => Math.Abs(a - b) < 1e-6);
        Assert.Equal(new[] { 0.1065307f, 0.7182818f }, F(KlEstimators.K3(logp, refLogp)), (a, b) => Math.Abs(a - b) < 1e-6);
        Assert.Equal(F(KlEstimators.K3(logp, refLogp)), F(KlEstimators.Estimate(logp, refLogp, KlEstimator.K3)));
    }

    [Fact]
    public void K3_is_zero_where_the_policy_and_the_reference_agree_and_positive_elsewhere()
    {
        using var logp = tensor(new[] { -0.7f, -3f, -0.1f });
        using var refLogp = tensor(new[] { -0.7f, -0.2f, -4f });
        var k3 = F(KlEstimators.K3(logp, refLogp));
        Assert.Equal(0f, k3[0], 6);
        Assert.True(k3[1] > 0 && k3[2] > 0);
    }

    [Fact]
    public void Estimators_reject_log_probs_of_different_shapes()
    {
        using var a = zeros(2, 3);
        using var b = zeros(2, 4);
        var e = Assert.Throws<ArgumentException>(() => KlEstimators.K3(a, b));
        Assert.Contains("[2, 3]", e.Message);
    }

    // TRL's AdaptiveKLController(0.2, target 6, horizon 10000):
    //   update(9, 256):    e = clip(9/6 − 1 = 0.5) = 0.2,  β = 0.2 · (1 + 0.2·256/10000)     = 0.2 · 1.00512 = 0.201024
    //   update(5.4, 1000): e = 5.4/6 − 1 = −0.1,          β = 0.201024 · (1 − 0.1·1000/10000) = 0.201024 · 0.99 = 0.19901376
    [Fact]
    public void The_adaptive_controller_follows_Ziegler_s_clipped_proportional_update()
    {
        var c = new AdaptiveKlController(0.2, target: 6, horizon: 10000);
        c.Update(9, 256);
        Assert.Equal(0.201024, c.Value, 12);
        c.Update(5.4, 1000);
        Assert.Equal(0.19901376, c.Value, 12);
    }

    [Fact]
    public void The_fixed_controller_never_changes()
    {
        var c = new FixedKlController(0.05);
        c.Update(100, 10000);
        Assert.Equal(0.05, c.Value);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdaptiveKlController(0.2, target: 0));
    }
}
