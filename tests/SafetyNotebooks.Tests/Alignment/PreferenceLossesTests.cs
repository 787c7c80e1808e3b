using SafetyNotebooks.Alignment;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

public class PreferenceLossesTests
{
    public PreferenceLossesTests() => TorchRuntime.EnsureLoaded();

    static Tensor T(params float[] v) => tensor(v);
    static float[] F(Tensor t) => t.to_type(ScalarType.Float32).data<float>().ToArray();

    // One pair throughout: log π(y_c) = −3, log π(y_r) = −5, log π_ref(y_c) = −4, log π_ref(y_r) = −4.5, β = 0.5.
    //   chosen log-ratio = −3 − (−4) = 1, rejected log-ratio = −5 − (−4.5) = −0.5, Δ = 1.5, βΔ = 0.75.
    //   −log σ(0.75)  = log(1 + e^−0.75) = log(1.472367) = 0.386871
    //   −log σ(−0.75) = log(1 + e^0.75)  = log(3.117000) = 1.136871
    static Tensor Pc => T(-3f); static Tensor Pr => T(-5f); static Tensor Rc => T(-4f); static Tensor Rr => T(-4.5f);

    [Fact]
    public void Sigmoid_dpo_is_minus_log_sigmoid_of_beta_times_the_log_ratio_difference()
    {
        var loss = PreferenceLosses.Dpo(DpoLossType.Sigmoid, Pc, Pr, Rc, Rr, beta: 0.5);
        Assert.Equal(0.386871, F(loss)[0], 5);
    }

    [Fact]
    public void Sigmoid_dpo_with_label_smoothing_is_conservative_dpo()
    {
        // cDPO, ε = 0.1: 0.9·0.386871 + 0.1·1.136871 = 0.348184 + 0.113687 = 0.461871
        var loss = PreferenceLosses.Dpo(DpoLossType.Sigmoid, Pc, Pr, Rc, Rr, beta: 0.5, labelSmoothing: 0.1);
        Assert.Equal(0.461871, F(loss)[0], 5);
    }

    [Fact]
    public void Robust_dpo_debiases_the_flipped_label_term()
    {
        // Robust, ε = 0.1: (0.9·0.386871 − 0.1·1.136871) / (1 − 0.2) = (0.348184 − 0.113687) / 0.8 = 0.293121
        var loss = PreferenceLosses.Dpo(DpoLossType.Robust, Pc, Pr, Rc, Rr, beta: 0.5, labelSmoothing: 0.1);
        Assert.Equal(0.293121, F(loss)[0], 5);
        // ε = 0 is plain DPO.
        Assert.Equal(0.386871, F(PreferenceLosses.Dpo(DpoLossType.Robust, Pc, Pr, Rc, Rr, beta: 0.5))[0], 5);
    }

    [Fact]
    public void Hinge_loss_is_one_minus_beta_delta_clipped_at_zero()
    {
        // Pair 1: βΔ = 0.75 → 1 − 0.75 = 0.25. Pair 2: chosen −1 vs ref −4 (ratio 3), rejected −5 vs −4.5 (−0.5): βΔ = 1.75 → 0.
        var loss = PreferenceLosses.Dpo(DpoLossType.Hinge, T(-3f, -1f), T(-5f, -5f), T(-4f, -4f), T(-4.5f, -4.5f), beta: 0.5);
        Assert.Equal(new[] { 0.25f, 0f }, F(loss));
    }

    [Fact]
    public void Ipo_divides_each_log_ratio_by_its_completion_length()
    {
        // Chosen completion 2 tokens, rejected 4: 1/2 − (−0.5)/4 = 0.625; 1/(2β) = 1; (0.625 − 1)² = 0.140625.
        var loss = PreferenceLosses.Dpo(DpoLossType.Ipo, Pc, Pr, Rc, Rr, beta: 0.5, chosenLengths: T(2f), rejectedLengths: T(4f));
        Assert.Equal(0.140625, F(loss)[0], 6);
    }

    [Fact]
    public void Ipo_without_lengths_is_refused_with_a_message_naming_them()
    {
        var e = Assert.Throws<ArgumentException>(() => PreferenceLosses.Dpo(DpoLossType.Ipo, Pc, Pr, Rc, Rr, beta: 0.5));
        Assert.Contains("chosenLengths", e.Message);
    }

    [Fact]
    public void Robust_label_smoothing_of_one_half_or_more_is_refused()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => PreferenceLosses.Dpo(DpoLossType.Robust, Pc, Pr, Rc, Rr, beta: 0.5, labelSmoothing: 0.5));
        Assert.Contains("[0, 0.5)", e.Message);
    }

    [Fact]
    public void Simpo_subtracts_the_target_margin_from_the_scaled_average_log_prob_difference()
    {
        // Average log-probs −1.2 (chosen) and −2.0 (rejected), β = 2, γ = 0.5: z = 2·0.8 − 0.5 = 1.1;
        // −log σ(1.1) = log(1 + e^−1.1) = log(1.332871) = 0.287335
        var loss = PreferenceLosses.SimPo(T(-1.2f), T(-2.0f), beta: 2, gamma: 0.5);
        Assert.Equal(0.287335, F(loss)[0], 5);
    }

    [Fact]
    public void Cpo_is_reference_free_sigmoid_on_summed_log_probs()
    {
        // −3 vs −5, β = 0.1: z = 0.2; −log σ(0.2) = log(1 + e^−0.2) = log(1.818731) = 0.598139
        var loss = PreferenceLosses.Cpo(T(-3f), T(-5f), beta: 0.1);
        Assert.Equal(0.598139, F(loss)[0], 5);
    }

    [Fact]
    public void Kto_uses_the_kl_reference_point_and_the_desirable_and_undesirable_weights()
    {
        // Policy/ref log-probs: example 1 (desirable) −3/−4 → ratio 1; example 2 (undesirable) −5/−4.5 → ratio −0.5.
        // KL rows: policy [−6, −7], ref [−6.4, −7.2] → KL = mean(0.4, 0.2) = 0.3. β = 0.5, w_D = 1, w_U = 2.
        //   desirable:   1 − σ(0.5·(1 − 0.3))    = 1 − σ(0.35) = 1 − 0.586618 = 0.413382
        //   undesirable: 2·(1 − σ(0.5·(0.3 + 0.5))) = 2·(1 − σ(0.4)) = 2·0.401312 = 0.802625
        var kl = PreferenceLosses.KtoKlEstimate(T(-6f, -7f), T(-6.4f, -7.2f));
        Assert.Equal(0.3, kl.item<float>(), 5);
        var losses = PreferenceLosses.Kto(T(-3f, -5f), T(-4f, -4.5f), tensor(new[] { true, false }), kl, beta: 0.5, desirableWeight: 1, undesirableWeight: 2);
        var v = F(losses);
        Assert.Equal(0.413382, v[0], 5);
        Assert.Equal(0.802625, v[1], 5);
    }

    [Fact]
    public void Kto_kl_estimate_is_clamped_at_zero_and_detached()
    {
        var policy = tensor(new[] { -7f, -8f }, requires_grad: true);
        var kl = PreferenceLosses.KtoKlEstimate(policy, T(-6f, -7f));   // mean(−1, −1) = −1 → 0
        Assert.Equal(0f, kl.item<float>());
        Assert.False(kl.requires_grad);
    }

    [Fact]
    public void Bradley_terry_loss_with_margin_and_reward_centering_matches_the_hand_computation()
    {
        // r_c = [1.0, 0.2], r_r = [0.5, 0.4], margin = [0.1, 0]: r_c − r_r − m = [0.4, −0.2].
        //   −log σ(0.4) = log(1 + e^−0.4) = 0.513015;  −log σ(−0.2) = log(1 + e^0.2) = 0.798139;  mean = 0.655577
        //   centering, c = 0.01: mean((1.5)², (0.6)²) = (2.25 + 0.36)/2 = 1.305 → + 0.01305 = 0.668627
        var rc = T(1.0f, 0.2f); var rr = T(0.5f, 0.4f); var m = T(0.1f, 0f);
        Assert.Equal(0.655577, PreferenceLosses.BradleyTerry(rc, rr, m).item<float>(), 5);
        Assert.Equal(0.668627, PreferenceLosses.BradleyTerry(rc, rr, m, centerRewardsCoefficient: 0.01).item<float>(), 5);
        // Without a margin: mean(−log σ(0.5), −log σ(−0.2)) = (0.474077 + 0.798139)/2 = 0.636108
        Assert.Equal(0.636108, PreferenceLosses.BradleyTerry(rc, rr).item<float>(), 5);
    }
}
