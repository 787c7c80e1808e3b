using SafetyNotebooks.Alignment;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

public class AdvantagesTests
{
    public AdvantagesTests() => TorchRuntime.EnsureLoaded();

    static float[] F(Tensor t) => t.to_type(ScalarType.Float32).data<float>().ToArray();

    // A 4-step trajectory, γ = 0.9, λ = 0.5, r = [1, 0, 2, 1], V = [0.5, 1, 1.5, 0.5], bootstrap V₄ = 2, no dones:
    //   δ₃ = 1 + 0.9·2   − 0.5 = 2.3          A₃ = 2.3
    //   δ₂ = 2 + 0.9·0.5 − 1.5 = 0.95         A₂ = 0.95 + 0.45·2.3    = 1.985
    //   δ₁ = 0 + 0.9·1.5 − 1   = 0.35         A₁ = 0.35 + 0.45·1.985  = 1.24325
    //   δ₀ = 1 + 0.9·1   − 0.5 = 1.4          A₀ = 1.4  + 0.45·1.24325 = 1.9594625
    [Fact]
    public void Gae_on_a_four_step_trajectory_matches_the_hand_worked_recursion()
    {
        using var r = tensor(new[] { 1f, 0f, 2f, 1f }).unsqueeze(0);
        using var v = tensor(new[] { 0.5f, 1f, 1.5f, 0.5f }).unsqueeze(0);
        var (a, ret) = Advantages.Gae(r, v, 0.9, 0.5, nextValue: tensor(new[] { 2f }));
        Assert.Equal(new[] { 1.9594625f, 1.24325f, 1.985f, 2.3f }, F(a), (x, y) => Math.Abs(x - y) < 1e-5);
        Assert.Equal(new[] { 2.4594625f, 2.24325f, 3.485f, 2.8f }, F(ret), (x, y) => Math.Abs(x - y) < 1e-5);
    }

    // The same trajectory with the episode ending at step 1: steps 0–1 see neither V₂ nor A₂ (δ₁ = 0 − 1 = −1, A₁ = −1,
    // δ₀ = 1.4, A₀ = 1.4 − 0.45 = 0.95); steps 2–3 are unchanged.
    [Fact]
    public void Gae_does_not_flow_across_an_episode_boundary()
    {
        using var r = tensor(new[] { 1f, 0f, 2f, 1f }).unsqueeze(0);
        using var v = tensor(new[] { 0.5f, 1f, 1.5f, 0.5f }).unsqueeze(0);
        using var dones = tensor(new[] { false, true, false, false }).unsqueeze(0);
        var (a, _) = Advantages.Gae(r, v, 0.9, 0.5, nextValue: tensor(new[] { 2f }), dones: dones);
        Assert.Equal(new[] { 0.95f, -1f, 1.985f, 2.3f }, F(a), (x, y) => Math.Abs(x - y) < 1e-5);
    }

    // λ = 1, γ = 1, no bootstrap: advantages are the reward-to-go minus the value (Monte Carlo).
    [Fact]
    public void Gae_with_lambda_one_is_the_reward_to_go_minus_the_value()
    {
        using var r = tensor(new[] { 1f, 2f, 3f }).unsqueeze(0);
        using var v = tensor(new[] { 1f, 1f, 1f }).unsqueeze(0);
        var (a, _) = Advantages.Gae(r, v, 1.0, 1.0);
        Assert.Equal(new[] { 5f, 4f, 2f }, F(a), (x, y) => Math.Abs(x - y) < 1e-5);
    }

    // Masked entries [1, 2, 3, 4] (the 100 is padding): mean 2.5, unbiased variance 5/3 (Σ(x−m)² = 5, n − 1 = 3).
    [Fact]
    public void Masked_mean_variance_and_whitening_ignore_padding_and_use_the_unbiased_variance()
    {
        using var x = tensor(new[] { 1f, 2f, 3f, 4f, 100f }).unsqueeze(0);
        using var m = tensor(new[] { true, true, true, true, false }).unsqueeze(0);
        Assert.Equal(2.5f, Advantages.MaskedMean(x, m).item<float>(), 5);
        Assert.Equal(5f / 3f, Advantages.MaskedVariance(x, m).item<float>(), 5);
        var w = F(Advantages.MaskedWhiten(x, m));
        double sd = Math.Sqrt(5.0 / 3.0 + 1e-8);
        for (int i = 0; i < 4; i++) Assert.Equal((i + 1 - 2.5) / sd, w[i], 4);
        var kept = F(Advantages.MaskedWhiten(x, m, shiftMean: false));
        Assert.Equal((1 - 2.5) / sd + 2.5, kept[0], 4);
        using var one = tensor(new[] { true, false, false, false, false }).unsqueeze(0);
        Assert.Contains("at least 2", Assert.Throws<ArgumentException>(() => Advantages.MaskedVariance(x, one)).Message);
    }

    [Fact]
    public void Gae_names_mismatched_shapes()
    {
        using var r = zeros(2, 3);
        using var v = zeros(2, 4);
        Assert.Contains("same shape", Assert.Throws<ArgumentException>(() => Advantages.Gae(r, v, 0.9, 0.9)).Message);
    }
}
