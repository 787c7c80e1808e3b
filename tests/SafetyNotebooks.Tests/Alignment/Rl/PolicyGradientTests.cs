using SafetyNotebooks.Alignment.Rl;
using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment.Rl;

public class PolicyGradientTests
{
    public PolicyGradientTests() => TorchRuntime.EnsureLoaded();

    static float[] F(Tensor t) => t.detach().to_type(ScalarType.Float32).data<float>().ToArray();
    static void Near(double[] expected, float[] actual, double tol = 1e-5) =>
        Assert.True(expected.Length == actual.Length && expected.Zip(actual).All(p => Math.Abs(p.First - p.Second) <= tol),
            $"expected [{string.Join(", ", expected)}], got [{string.Join(", ", actual)}]");

    // One state, two actions, logits θ = [0, ln 3] → π = [1/4, 3/4]. Two samples:
    //   action 0 with return G = 2, baseline b = 0.5 → weight 1.5;  action 1 with G = 1, b = 0.5 → weight 0.5.
    // L = −½ (1.5·log π(0) + 0.5·log π(1)), and ∂log π(a)/∂θ = onehot(a) − π:
    //   ∂L/∂θ = −½ (1.5·[3/4, −3/4] + 0.5·[−1/4, 1/4]) = −½ [1.0, −1.0] = [−0.5, 0.5].
    // The loss value: −½ (1.5·ln ¼ + 0.5·ln ¾) = 1.1116…; the baseline gets no gradient.
    [Fact]
    public void Reinforce_gradient_on_a_two_action_softmax_matches_the_hand_worked_score_function()
    {
        using var theta = torch.tensor(new[] { 0f, (float)Math.Log(3) }).requires_grad_();
        using var baseline = torch.tensor(new[] { 0.5f, 0.5f }).requires_grad_();
        var logits = theta.unsqueeze(0).expand(2, 2);
        var logProbs = PolicyGradient.LogProbs(logits, torch.tensor(new long[] { 0, 1 }));
        var loss = PolicyGradient.ReinforceLoss(logProbs, torch.tensor(new[] { 2f, 1f }), baseline);
        loss.backward();
        Assert.Equal(-0.5 * (1.5 * Math.Log(0.25) + 0.5 * Math.Log(0.75)), loss.item<float>(), 5);
        Near(new[] { -0.5, 0.5 }, F(theta.grad!));
        Assert.True(baseline.grad is null || F(baseline.grad).All(g => g == 0), "the baseline must not receive policy gradient");
    }

    // ε = 0.2; ratios r and advantages A, per sample the loss is max(−A·r, −A·clip(r, 0.8, 1.2)):
    //   r = 0.5, A = +1: max(−0.5, −0.8) = −0.5  (unclipped: the pessimistic term)     ∂/∂log π_new = −A·r = −0.5
    //   r = 1.0, A = −1: max( 1.0,  1.0) =  1.0                                          −A·r = 1.0
    //   r = 1.5, A = +1: max(−1.5, −1.2) = −1.2  (clipped: no gradient)                  0
    //   r = 1.5, A = −1: max( 1.5,  1.2) =  1.5                                          −A·r = 1.5
    //   r = 0.7, A = −1: max( 0.7,  0.8) =  0.8  (clipped: no gradient)                  0
    // mean = 1.6 / 5 = 0.32; gradient w.r.t. log π_new = [−0.5, 1, 0, 1.5, 0] / 5; clip fraction 4/5 (|r − 1| > 0.2).
    [Fact]
    public void Clipped_surrogate_matches_hand_worked_ratios_and_advantages()
    {
        var ratios = new[] { 0.5, 1.0, 1.5, 1.5, 0.7 };
        using var oldLogProbs = torch.tensor(new[] { -1f, -0.5f, -2f, -0.3f, -1.2f });
        using var newLogProbs = (oldLogProbs + torch.tensor(ratios.Select(r => (float)Math.Log(r)).ToArray())).detach().requires_grad_();
        using var advantages = torch.tensor(new[] { 1f, -1f, 1f, -1f, -1f });
        var result = PolicyGradient.ClippedSurrogateLoss(newLogProbs, oldLogProbs, advantages, 0.2);
        result.Loss.backward();
        Assert.Equal(0.32, result.Loss.item<float>(), 5);
        Near(new[] { -0.1, 0.2, 0, 0.3, 0 }, F(newLogProbs.grad!));
        Assert.Equal(0.8, result.ClipFraction.item<float>(), 6);
        double kl = ratios.Average(r => (r - 1) - Math.Log(r));
        Assert.Equal(kl, result.ApproxKl.item<float>(), 5);
        Assert.Equal(ratios.Average(r => -Math.Log(r)), result.OldApproxKl.item<float>(), 5);
    }

    // Old value 0, new value 1, ε = 0.2 (the clipped value is 0.2):
    //   return 2:   max((1 − 2)², (0.2 − 2)²) = max(1, 3.24) = 3.24 → ½·3.24 = 1.62 (the clipped term binds)
    //   return 0.5: max((1 − 0.5)², (0.2 − 0.5)²) = max(0.25, 0.09) = 0.25 → 0.125
    // Without clipping: ½·1 = 0.5 and ½·0.25 = 0.125.
    [Fact]
    public void Value_loss_with_and_without_clipping_matches_hand_worked_values()
    {
        using var newV = torch.tensor(new[] { 1f });
        using var oldV = torch.tensor(new[] { 0f });
        Assert.Equal(1.62, PolicyGradient.ValueLoss(newV, torch.tensor(new[] { 2f }), oldV, 0.2).item<float>(), 5);
        Assert.Equal(0.125, PolicyGradient.ValueLoss(newV, torch.tensor(new[] { 0.5f }), oldV, 0.2).item<float>(), 5);
        Assert.Equal(0.5, PolicyGradient.ValueLoss(newV, torch.tensor(new[] { 2f })).item<float>(), 5);
        var error = Assert.Throws<ArgumentException>(() => PolicyGradient.ValueLoss(newV, torch.tensor(new[] { 2f }), null, 0.2));
        Assert.Contains("pass oldValues", error.Message);
    }

    [Fact]
    public void Entropy_of_a_uniform_policy_is_ln_k_and_of_a_certain_one_is_zero()
    {
        using var logits = torch.tensor(new[] { 0f, 0f, 0f, 0f, 50f, 0f }, new long[] { 2, 3 });
        var h = F(PolicyGradient.Entropy(logits));
        Assert.Equal(Math.Log(3), h[0], 5);
        Assert.Equal(0, h[1], 5);
    }

    [Fact]
    public void Mismatched_shapes_are_refused_with_both_shapes_named()
    {
        var error = Assert.Throws<ArgumentException>(() => PolicyGradient.ClippedSurrogateLoss(torch.zeros(4), torch.zeros(4), torch.zeros(3), 0.2));
        Assert.Contains("advantages [3]", error.Message);
    }
}
