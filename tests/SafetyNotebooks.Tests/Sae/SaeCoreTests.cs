using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

/// <summary>Loss terms, activation functions and pseudo-gradients of the SAE architectures, against hand-worked numbers.</summary>
public class SaeCoreTests
{
    static SaeCoreTests() => TorchRuntime.EnsureLoaded();

    static Tensor T(float[] data, params long[] shape) => tensor(data, shape);

    static void Set(Tensor p, float[] data)
    {
        using var _ = no_grad();
        p.copy_(tensor(data, p.shape));
    }

    /// <summary>
    /// d_in 2, d_sae 3. W_enc = [[1,0,1],[0,1,1]], b_enc = [0,0,-1], b_dec = [0.5,0], W_dec rows [2,0], [0,1], [0,0.5] (norms 2, 1, 0.5).
    /// x row 0 = [1.5, 2]: x − b_dec = [1,2], pre = [1,2,2], acts = [1,2,2], recon = [2.5,3], error² = 1 + 1 = 2.
    /// x row 1 = [0.5,−1]: x − b_dec = [0,−1], pre = [0,−1,−2], acts = 0, recon = [0.5,0], error² = 0 + 1 = 1.
    /// </summary>
    static SparseAutoencoder HandSae(SaeArchitecture arch = SaeArchitecture.Standard)
    {
        var sae = new SparseAutoencoder(new SaeConfig { DIn = 2, DSae = 3, Architecture = arch, K = 2, Seed = 0 });
        Set(sae.W_enc, [1, 0, 1, 0, 1, 1]);
        if (sae.b_enc is not null) Set(sae.b_enc, [0, 0, -1]);
        Set(sae.b_dec, [0.5f, 0]);
        Set(sae.W_dec, [2, 0, 0, 1, 0, 0.5f]);
        return sae;
    }

    static readonly float[] HandX = [1.5f, 2, 0.5f, -1];

    [Fact]
    public void Standard_loss_is_mse_plus_l1_scaled_by_decoder_norms_as_worked_by_hand()
    {
        using var sae = HandSae();
        var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L1Coefficient = 0.2 });
        var output = objective.Compute(T(HandX, 2, 2));
        // mse_loss = (2 + 1) / 2 = 1.5; l1 = 0.2 · mean(1·2 + 2·1 + 2·0.5, 0) = 0.2 · 2.5 = 0.5; total 2.0.
        Assert.Equal(1.5, output.Metrics!["losses/mse_loss"].item<float>(), 5);
        Assert.Equal(0.5, output.Metrics["losses/l1_loss"].item<float>(), 5);
        Assert.Equal(2.0, output.Loss.item<float>(), 5);
        // l0 = (3 + 0) / 2; x̄ = [1, 0.5], ‖x − x̄‖² = 2.5 for both rows: EV = 1 − 1.5/2.5 = 0.4, legacy = mean(1 − 2/2.5, 1 − 1/2.5) = 0.4.
        Assert.Equal(1.5, output.Metrics["metrics/l0"].item<float>(), 5);
        Assert.Equal(0.4, output.Metrics["metrics/explained_variance"].item<float>(), 5);
        Assert.Equal(0.4, output.Metrics["metrics/explained_variance_legacy"].item<float>(), 5);
        Assert.Equal(2.0, output.Weight!.item<double>());
    }

    [Fact]
    public void The_l1_gradient_to_an_active_feature_is_its_decoder_norm_times_the_coefficient()
    {
        using var sae = HandSae();
        // Isolate the L1 term: the MSE gradient is the same with coefficient 1 and 0.
        Tensor GradBEnc(double c)
        {
            sae.zero_grad();
            var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L1Coefficient = c });
            objective.Compute(T(HandX, 2, 2)).Loss.backward();
            return sae.b_enc!.grad!.clone();
        }
        var diff = (GradBEnc(1.0) - GradBEnc(0.0)).data<float>().ToArray();
        // ∂/∂b_enc of mean_rows Σ_i acts_i·‖d_i‖: only row 0 is active (all three features), / 2 rows: [2, 1, 0.5] / 2.
        Assert.Equal(new[] { 1f, 0.5f, 0.25f }, diff.Select(v => MathF.Round(v, 5)).ToArray());
    }

    [Theory]
    [InlineData(SaeArchitecture.Standard)]
    [InlineData(SaeArchitecture.TopK)]
    [InlineData(SaeArchitecture.BatchTopK)]
    [InlineData(SaeArchitecture.JumpReLU)]
    [InlineData(SaeArchitecture.Gated)]
    public void Every_parameter_is_a_leaf_that_the_training_loss_reaches(SaeArchitecture arch)
    {
        // Regression: W_enc was built from W_dec after W_dec required grad, so it was a non-leaf and never received a gradient.
        using var sae = new SparseAutoencoder(new SaeConfig { DIn = 4, DSae = 6, Architecture = arch, K = 2, Seed = 1, JumpReLUInitThreshold = 0.001 });
        random.manual_seed(2);
        var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L1Coefficient = 0.1 });
        objective.Compute(randn(16, 4) + 1).Loss.backward();
        foreach (var (name, p) in sae.named_parameters())
        {
            Assert.True(p.is_leaf, $"{name} is not a leaf tensor");
            Assert.True(p.grad is not null, $"{name} received no gradient");
        }
    }

    [Fact]
    public void The_l1_coefficient_warms_up_linearly_from_zero_as_sae_lens_coefficient_scheduler()
    {
        Assert.Equal(0.0, SaeTrainingObjective.WarmedUp(0.2, 4, 0));
        Assert.Equal(0.05, SaeTrainingObjective.WarmedUp(0.2, 4, 1), 12);
        Assert.Equal(0.2, SaeTrainingObjective.WarmedUp(0.2, 4, 4), 12);
        Assert.Equal(0.2, SaeTrainingObjective.WarmedUp(0.2, 4, 9), 12);
        Assert.Equal(0.2, SaeTrainingObjective.WarmedUp(0.2, 0, 0), 12);

        using var sae = HandSae();
        var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L1Coefficient = 0.2, L1WarmUpSteps = 4 });
        Assert.Equal(0.0, objective.Compute(T(HandX, 2, 2)).Metrics!["losses/l1_loss"].item<float>(), 6);
        using (no_grad()) objective.AfterOptimizerStep();
        // After one update: coefficient 0.05, l1 = 0.05 · 2.5.
        Assert.Equal(0.125, objective.Compute(T(HandX, 2, 2)).Metrics!["losses/l1_loss"].item<float>(), 5);
        Assert.Equal(0.05, objective.Compute(T(HandX, 2, 2)).Metrics!["details/l1_coefficient"].item<double>(), 12);
    }

    [Fact]
    public void Top_k_keeps_exactly_k_per_row_and_they_are_the_row_maxima()
    {
        random.manual_seed(1);
        using var pre = rand(5, 20) + 1;                                       // all positive: ReLU keeps every selected value
        using var acts = SparseAutoencoder.TopK(pre, 3);
        var p = pre.data<float>().ToArray();
        var a = acts.data<float>().ToArray();
        for (int r = 0; r < 5; r++)
        {
            var row = p.Skip(r * 20).Take(20).ToArray();
            var kept = Enumerable.Range(0, 20).Where(j => a[r * 20 + j] != 0).ToArray();
            Assert.Equal(3, kept.Length);
            var top3 = row.Select((v, j) => (v, j)).OrderByDescending(t => t.v).Take(3).Select(t => t.j).OrderBy(j => j).ToArray();
            Assert.Equal(top3, kept);
            foreach (var j in kept) Assert.Equal(row[j], a[r * 20 + j]);
        }
    }

    [Fact]
    public void Batch_top_k_keeps_k_times_batch_in_total_and_they_are_the_batch_maxima()
    {
        random.manual_seed(2);
        using var pre = rand(4, 10) + 1;
        using var acts = SparseAutoencoder.BatchTopK(pre, 2.5);              // 2.5 · 4 rows = 10 in total
        var p = pre.data<float>().ToArray();
        var a = acts.data<float>().ToArray();
        var kept = Enumerable.Range(0, 40).Where(i => a[i] != 0).ToArray();
        Assert.Equal(10, kept.Length);
        var minKept = kept.Min(i => p[i]);
        var maxDropped = Enumerable.Range(0, 40).Except(kept).Max(i => p[i]);
        Assert.True(minKept > maxDropped);
        // Rows need not keep 2.5 each: the budget is shared across the batch.
        foreach (var i in kept) Assert.Equal(p[i], a[i]);
    }

    [Fact]
    public void Top_k_sae_encodes_with_k_features_per_row()
    {
        using var sae = HandSae(SaeArchitecture.TopK);                        // K = 2
        using var acts = sae.Encode(T(HandX, 2, 2));
        // Row 0: pre [1,2,2] keeps the two 2's; row 1: pre [0,−1,−2] keeps 0 and −1, ReLU'd to 0.
        Assert.Equal(new[] { 0f, 2, 2, 0, 0, 0 }, acts.data<float>().ToArray());
    }

    /// <summary>
    /// θ = [0.5, 0.5, 0.45], ε = 0.1, x = [[0.30, 0.52, 0.47], [0.48, 0.90, 0.56]]: x − θ = [[−0.2, 0.02, 0.02], [−0.02, 0.4, 0.11]],
    /// rectangle((x − θ)/ε) = [[0,1,1],[1,0,0]]; upstream gradient g = [[1,2,3],[4,5,6]].
    /// JumpReLU: ∂/∂θ_j = Σ_rows −(θ_j/ε)·K·g = [−5·4, −5·2, −4.5·3] = [−20, −10, −13.5]; ∂/∂x = H(x − θ)·g.
    /// Step: ∂/∂θ_j = Σ_rows −(1/ε)·K·g = [−40, −20, −30], nothing to x.
    /// </summary>
    [Fact]
    public void Jumprelu_and_step_pseudo_gradients_of_the_threshold_match_the_rectangle_kernel_formula()
    {
        var xData = new float[] { 0.30f, 0.52f, 0.47f, 0.48f, 0.90f, 0.56f };
        var g = T([1, 2, 3, 4, 5, 6], 2, 3);

        var x = T(xData, 2, 3).requires_grad_(true);
        var theta = T([0.5f, 0.5f, 0.45f], 3).requires_grad_(true);
        var y = SparseAutoencoder.JumpReLU(x, theta, 0.1);
        Assert.Equal(new[] { 0f, 0.52f, 0.47f, 0f, 0.90f, 0.56f }, y.data<float>().ToArray());
        (y * g).sum().backward();
        AssertClose(new[] { -20f, -10f, -13.5f }, theta.grad!.data<float>().ToArray());
        AssertClose(new[] { 0f, 2, 3, 0, 5, 6 }, x.grad!.data<float>().ToArray());

        var x2 = T(xData, 2, 3).requires_grad_(true);
        var theta2 = T([0.5f, 0.5f, 0.45f], 3).requires_grad_(true);
        var h = SparseAutoencoder.Step(x2, theta2, 0.1);
        Assert.Equal(new[] { 0f, 1, 1, 0, 1, 1 }, h.data<float>().ToArray());
        (h * g).sum().backward();
        AssertClose(new[] { -40f, -20f, -30f }, theta2.grad!.data<float>().ToArray());
        Assert.True(x2.grad is null || x2.grad.abs().sum().item<float>() == 0);
    }

    [Fact]
    public void Jumprelu_l0_loss_counts_features_above_threshold_times_the_coefficient()
    {
        using var sae = HandSae(SaeArchitecture.JumpReLU);
        Set(sae.threshold!, [1.5f, 1.5f, 0.5f]);
        var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L0Coefficient = 0.3 });
        var output = objective.Compute(T(HandX, 2, 2));
        // pre row 0 = [1,2,2] > [1.5,1.5,0.5] → 2 features; row 1 = [0,−1,−2] → 0. l0_loss = 0.3 · mean(2, 0) = 0.3.
        Assert.Equal(0.3, output.Metrics!["losses/l0_loss"].item<float>(), 5);
        Assert.Equal(1.0, output.Metrics["metrics/l0"].item<float>(), 5);
    }

    [Fact]
    public void Gated_encoding_gates_by_the_gate_path_and_scales_by_the_magnitude_path()
    {
        using var sae = HandSae(SaeArchitecture.Gated);
        Set(sae.b_gate!, [0, -2.5f, 0]);       // gate pre row 0 = [1, 2−2.5, 3] → feature 1 closed
        Set(sae.r_mag!, [0, 0, MathF.Log(2)]); // magnitude weights: column 2 doubled
        Set(sae.b_mag!, [0, 0, -1]);           // magnitude pre row 0 = [1, 2, 2·3 − 1 = 5]
        using var acts = sae.Encode(T(HandX, 2, 2));
        AssertClose(new[] { 1f, 0, 5, 0, 0, 0 }, acts.data<float>().ToArray());
    }

    [Fact]
    public void Dead_feature_tracking_counts_updates_since_each_feature_fired()
    {
        using var sae = HandSae();
        var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { DeadFeatureWindow = 2, L1Coefficient = 0 });
        // Only row 1 = [0.5, −1]: every pre-activation ≤ 0, so nothing fires; row 0 fires all three.
        var quiet = T([0.5f, -1], 1, 2);
        ObjectiveOutput? last = null;
        for (int i = 0; i < 3; i++)
        {
            last = objective.Compute(quiet);
            using (no_grad()) objective.AfterOptimizerStep();
        }
        Assert.Equal(new[] { 3f, 3, 3 }, objective.StepsSinceFired.data<float>().ToArray());
        Assert.Equal(3.0, last!.Metrics!["sparsity/dead_features"].item<float>());     // 3 > window 2
        objective.Compute(T([1.5f, 2], 1, 2));
        Assert.Equal(new[] { 0f, 0, 0 }, objective.StepsSinceFired.data<float>().ToArray());
        Assert.Equal(1.0 / 4, objective.FeatureDensity().data<float>()[0], 6);          // fired on 1 of 4 rows
    }

    [Fact]
    public void Auxk_loss_reconstructs_the_residual_from_the_top_dead_latents()
    {
        // d_in 2 → k_aux = 1; dead = {feature 2}, scale = min(1/1, 1) = 1. Row 0: hidden_pre of feature 2 is 2, so aux acts = [0,0,2],
        // decode = 2·[0,0.5] + b_dec = [0.5, 1]; residual = x − sae_out. Row 1: feature 2's pre is −2: decode = [0, −1] + [0.5, 0].
        using var sae = HandSae(SaeArchitecture.TopK);
        var objective = new SaeTrainingObjective(sae);
        var x = T(HandX, 2, 2);
        var sae_out = T([2.5f, 3, 0.5f, 0], 2, 2);
        var pre = T([1, 2, 2, 0, -1, -2], 2, 3);
        var dead = tensor(new[] { false, false, true });
        var loss = objective.AuxKLoss(x, sae_out, pre, dead, 1.0);
        // residual row 0 = [−1, −1], recon [0.5, 1] → (1.5² + 2²) = 6.25; row 1 residual = [0, −1], recon [0.5, −1] → 0.25. Mean 3.25.
        Assert.Equal(3.25, loss.item<float>(), 5);
        Assert.Equal(0.0, objective.AuxKLoss(x, sae_out, pre, tensor(new[] { false, false, false }), 1.0).item<float>());
    }

    [Fact]
    public void Error_term_makes_the_sae_output_equal_its_input_while_hooks_still_act()
    {
        using var sae = HandSae();
        var x = T(HandX, 2, 2);
        sae.UseErrorTerm = true;
        AssertClose(HandX, sae.forward(x).data<float>().ToArray());
        // Ablating feature 0 (activation 1, direction [2,0]) on row 0 removes exactly [2, 0] from that row.
        sae.AddHook("hook_sae_acts_post", SaeSplicing.AblateFeatures(0));
        AssertClose(new[] { -0.5f, 2, 0.5f, -1 }, sae.forward(x).data<float>().ToArray());
        sae.ResetHooks();
        sae.UseErrorTerm = false;
        AssertClose(new[] { 2.5f, 3, 0.5f, 0 }, sae.forward(x).data<float>().ToArray());
    }

    [Fact]
    public void A_wrong_input_width_names_d_in_and_the_fix()
    {
        using var sae = HandSae();
        var e = Assert.Throws<ArgumentException>(() => sae.Encode(zeros(3, 5)));
        Assert.Contains("d_in = 2", e.Message);
        var t = Assert.Throws<ArgumentException>(() => new SaeTrainingObjective(sae).Compute(zeros(2, 3, 2)));
        Assert.Contains("reshape(-1, d)", t.Message);
    }

    internal static void AssertClose(float[] expected, float[] actual, float tol = 1e-5f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol, $"index {i}: expected {expected[i]}, got {actual[i]}");
    }
}
