using SafetyNotebooks.Alignment;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

public class PpoLossTests
{
    public PpoLossTests() => TorchRuntime.EnsureLoaded();

    static float[] F(Tensor t) => t.to_type(ScalarType.Float32).data<float>().ToArray();
    static bool Close(float a, float b) => Math.Abs(a - b) < 1e-5;

    // Two completions, T = 4, β = 0.1, k1.
    //   row 0 ends with its EOS at t = 2 (mask 1 1 1 0): k1 = logp − ref = [0.5, −1, 0, (−6 masked → 0)]
    //     −β·k1 = [−0.05, 0.1, 0, 0]; score 2 at t = 2 → rewards [−0.05, 0.1, 2, 0]
    //   row 1 was cut at the length limit (mask 1 1 1 1): k1 = [1, 0, 0, 2]
    //     −β·k1 = [−0.1, 0, 0, −0.2]; score 1 at t = 3 → rewards [−0.1, 0, 0, 0.8]
    [Fact]
    public void Token_rewards_put_minus_beta_kl_everywhere_and_the_score_on_the_last_real_token()
    {
        using var logp = tensor(new[] { -1f, -2f, -0.5f, -7f, -1f, -1f, -1f, -1f }, new long[] { 2, 4 });
        using var refLogp = tensor(new[] { -1.5f, -1f, -0.5f, -1f, -2f, -1f, -1f, -3f }, new long[] { 2, 4 });
        using var mask = tensor(new[] { true, true, true, false, true, true, true, true }, new long[] { 2, 4 });
        using var scores = tensor(new[] { 2f, 1f });
        var (rewards, nonScore, kl) = PpoRewards.TokenRewards(logp, refLogp, scores, mask, 0.1, KlEstimator.K1);
        Assert.Equal(new[] { -0.05f, 0.1f, 2f, 0f, -0.1f, 0f, 0f, 0.8f }, F(rewards), Close);
        Assert.Equal(new[] { -0.05f, 0.1f, 0f, 0f, -0.1f, 0f, 0f, -0.2f }, F(nonScore), Close);
        Assert.Equal(new[] { 0.5f, -1f, 0f, 0f, 1f, 0f, 0f, 2f }, F(kl), Close);
    }

    [Fact]
    public void Token_rewards_with_k3_penalise_every_token_non_negatively()
    {
        using var logp = tensor(new[] { -1f, -2f }, new long[] { 1, 2 });
        using var refLogp = tensor(new[] { -1.5f, -1f }, new long[] { 1, 2 });
        using var mask = ones(1, 2, dtype: ScalarType.Bool);
        var (rewards, _, _) = PpoRewards.TokenRewards(logp, refLogp, tensor(new[] { 0f }), mask, 1.0, KlEstimator.K3);
        Assert.Equal(new[] { -0.1065307f, -0.7182818f }, F(rewards), Close);
    }

    // The missing-EOS penalty (EOS = 5, penalty 1): row 0 has its EOS among its real tokens, row 1 none, row 2 only after
    // its end (masked, so it does not count).
    [Fact]
    public void The_missing_eos_penalty_hits_only_completions_without_a_real_eos()
    {
        using var responses = tensor(new long[] { 3, 5, 5, 3, 4, 4, 3, 4, 5 }, new long[] { 3, 3 });
        using var mask = tensor(new[] { true, true, false, true, true, true, true, true, false }, new long[] { 3, 3 });
        using var scores = tensor(new[] { 2f, 2f, 2f });
        var (penalized, containsEos) = Rollouts.PenalizeMissingEos(scores, responses, mask, 5, 1.0);
        Assert.Equal(new[] { 2f, 1f, 1f }, F(penalized));
        Assert.Equal(new[] { true, false, false }, containsEos.data<bool>().ToArray());
        var e = Assert.Throws<ArgumentException>(() => Rollouts.PenalizeMissingEos(scores, responses, mask, null, 1.0));
        Assert.Contains("EosTokenId", e.Message);
    }

    // Ratios [1.5, 0.5, 1.1, 0.7] with advantages [1, 1, −1, −1], ε = 0.2 (a fifth token is masked out):
    //   t0: −A·ρ = −1.5, −A·clip = −1.2 → −1.2 (clipped)     t1: −0.5 vs −0.8 → −0.5
    //   t2:  1.1 vs 1.1 → 1.1                                t3:  0.7 vs  0.8 → 0.8 (clipped)
    //   loss = (−1.2 − 0.5 + 1.1 + 0.8)/4 = 0.05, clipfrac = 2/4, ratio mean = 3.8/4 = 0.95,
    //   approx KL = ½·mean(ln²ρ) = ½·(0.164402 + 0.480453 + 0.009084 + 0.127217)/4 = 0.0976445.
    //   Gradient w.r.t. log π: 0 where clipped, −A·ρ/4 elsewhere: [0, −0.125, 0.275, 0, 0].
    [Fact]
    public void The_clipped_policy_loss_matches_hand_worked_ratios_and_advantages()
    {
        var ratios = new[] { 1.5, 0.5, 1.1, 0.7, Math.Exp(3) };
        using var oldLogp = tensor(new[] { -1f, -2f, -0.5f, -1.2f, -4f });
        using var newLogp = (oldLogp + tensor(ratios.Select(r => (float)Math.Log(r)).ToArray())).detach().requires_grad_(true);
        using var adv = tensor(new[] { 1f, 1f, -1f, -1f, 100f });
        using var mask = tensor(new[] { true, true, true, true, false });
        var o = PpoLosses.PolicyLoss(newLogp, oldLogp, adv, mask, 0.2);
        Assert.Equal(0.05f, o.Loss.item<float>(), 5);
        Assert.Equal(0.5f, o.ClipFrac.item<float>(), 6);
        Assert.Equal(0.95f, o.RatioMean.item<float>(), 5);
        Assert.Equal(0.0976445f, o.ApproxKl.item<float>(), 5);
        o.Loss.backward();
        Assert.Equal(new[] { 0f, -0.125f, 0.275f, 0f, 0f }, F(newLogp.grad!), Close);
    }

    // V = [1, 0, 2], V_old = [0.5, 0.5, 2], R = [2, 1, 0], c = 0.2:
    //   t0: V̂ = 0.7, (V − R)² = 1, (V̂ − R)² = 1.69 → 1.69 (clipped)   t1: V̂ = 0.3, 1 vs 0.49 → 1   t2: 4 vs 4 → 4
    //   loss = ½·(1.69 + 1 + 4)/3 = 1.115, clipfrac = 1/3.
    [Fact]
    public void The_clipped_value_loss_matches_hand_worked_values()
    {
        using var v = tensor(new[] { 1f, 0f, 2f, 50f }, new long[] { 1, 4 });
        using var old = tensor(new[] { 0.5f, 0.5f, 2f, 0f }, new long[] { 1, 4 });
        using var ret = tensor(new[] { 2f, 1f, 0f, 0f }, new long[] { 1, 4 });
        using var mask = tensor(new[] { true, true, true, false }, new long[] { 1, 4 });
        var (loss, clipFrac) = PpoLosses.ValueLoss(v, old, ret, mask, 0.2);
        Assert.Equal(1.115f, loss.item<float>(), 5);
        Assert.Equal(1f / 3, clipFrac.item<float>(), 5);
    }

    // γ = λ = 1, so Aₜ = Σ_{s≥t} rₛ − Vₜ within each completion (rewards and values after the end are zeroed first):
    //   row 0 (mask 1 1 0, r = [0, 1, 99], V = [0.5, 0.5, 99]) → A = [0.5, 0.5, 0], returns [1, 1, 0]
    //   row 1 (mask 1 1 1, r = [1, 0, 2],  V = [1, 2, 0])      → A = [2, 0, 2],     returns [3, 2, 2]
    // Whitening over the 5 real tokens {0.5, 0.5, 2, 0, 2}: mean 1, unbiased variance 3.5/4 = 0.875 →
    //   row 0 [−0.5345225, −0.5345225, 0 (masked)], row 1 [1.0690450, −1.0690450, 1.0690450].
    [Fact]
    public void Advantages_are_whitened_over_the_real_tokens_only_and_zero_after_the_end()
    {
        using var r = tensor(new[] { 0f, 1f, 99f, 1f, 0f, 2f }, new long[] { 2, 3 });
        using var v = tensor(new[] { 0.5f, 0.5f, 99f, 1f, 2f, 0f }, new long[] { 2, 3 });
        using var mask = tensor(new[] { true, true, false, true, true, true }, new long[] { 2, 3 });
        var (adv, returns) = PpoRewards.AdvantagesAndReturns(r, v, mask, 1.0, 1.0);
        Assert.Equal(new[] { -0.5345225f, -0.5345225f, 0f, 1.069045f, -1.069045f, 1.069045f }, F(adv), Close);
        Assert.Equal(new[] { 1f, 1f, 0f, 3f, 2f, 2f }, F(returns), Close);
    }
}
