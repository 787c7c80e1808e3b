using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

/// <summary>Composition scores, circuits and the eigenvalue copying score on hand-built matrices.</summary>
public class CompositionTests
{
    static CompositionTests() => TorchRuntime.EnsureLoaded();

    static Tensor E(int d, int i) { var v = zeros(d, 1); v[i, 0] = 1; return v; }

    [Fact]
    public void Orthogonal_subspaces_compose_to_0_and_identical_rank_1_maps_to_1()
    {
        // W_A = e0 e0ᵀ writes only into e0; W_B = e1 e1ᵀ reads only e1.
        var a = new FactoredMatrix(E(4, 0), E(4, 0).t());
        var b = new FactoredMatrix(E(4, 1), E(4, 1).t());
        Assert.Equal(0f, Composition.Score(a, b).item<float>(), 6);
        // u vᵀ · v wᵀ = |v|² u wᵀ: ‖·‖ = |u||v|²|w| = ‖u vᵀ‖ ‖v wᵀ‖, so the score is 1 whatever the lengths.
        var u = tensor(new float[] { 1, 2, 0, -1 }).unsqueeze(1);
        var v = tensor(new float[] { 0, 3, 1, 1 }).unsqueeze(1);
        var w = tensor(new float[] { 2, 0, 0, 5 }).unsqueeze(1);
        Assert.Equal(1f, Composition.Score(new FactoredMatrix(u, v.t()), new FactoredMatrix(v, w.t())).item<float>(), 5);
        Assert.Equal(1f, Composition.Score(matmul(u, v.t()), matmul(v, w.t())).item<float>(), 5);
        // Halfway: W_A = I₂ (padded), W_B = e0 e0ᵀ: ‖e0e0ᵀ‖ / (√2 · 1) = 1/√2.
        var i2 = new FactoredMatrix(cat(new[] { E(4, 0), E(4, 1) }, 1), cat(new[] { E(4, 0), E(4, 1) }, 1).t());
        Assert.Equal(1 / Math.Sqrt(2), Composition.Score(i2, a).item<float>(), 5);
    }

    [Fact]
    public void Factored_scores_equal_the_formed_product_formula_on_random_matrices()
    {
        var gen = new Generator(5);
        var a = new FactoredMatrix(randn(new long[] { 3, 12, 4 }, generator: gen), randn(new long[] { 3, 4, 12 }, generator: gen));
        var b = new FactoredMatrix(randn(new long[] { 3, 12, 4 }, generator: gen), randn(new long[] { 3, 4, 12 }, generator: gen));
        var formed = a.AB.to_type(ScalarType.Float64); var formedB = b.AB.to_type(ScalarType.Float64);
        var expected = matmul(formed, formedB).pow(2).sum(new long[] { 1, 2 }).sqrt() / (formed.pow(2).sum(new long[] { 1, 2 }).sqrt() * formedB.pow(2).sum(new long[] { 1, 2 }).sqrt());
        AnalysisTestModels.Close(expected, Composition.Score(a, b), 1e-5, "factored vs formed");
    }

    [Fact]
    public void The_random_baseline_mean_square_is_1_over_d_model_and_is_seeded()
    {
        // For Gaussian factors the later matrix is rotation invariant, so E[score²] = 1/d_model exactly.
        var baseline = Composition.RandomBaseline(16, 4, samples: 2000, seed: 3);
        double meanSquare = baseline.Samples.Average(x => x * x);
        Assert.InRange(meanSquare, 0.9 / 16, 1.1 / 16);
        Assert.Equal(0.25, baseline.ExpectedRms, 12);
        Assert.True(baseline.Mean < baseline.ExpectedRms, "the mean is below the RMS (Jensen)");
        Assert.Equal(baseline.Samples, Composition.RandomBaseline(16, 4, samples: 2000, seed: 3).Samples);
        Assert.NotEqual(baseline.Samples, Composition.RandomBaseline(16, 4, samples: 2000, seed: 4).Samples);
    }

    [Fact]
    public void All_composition_scores_match_formed_head_matrices_and_are_zero_unless_the_later_head_is_in_a_later_layer()
    {
        using var _ = no_grad();
        var model = AnalysisTestModels.Tiny();
        var wov = matmul(model.W_V, model.W_O);                                      // [L, H, d, d]
        var wqk = matmul(model.W_Q, model.W_K.transpose(-2, -1));
        var q = Composition.AllScores(model, CompositionType.Q);
        var k = Composition.AllScores(model, CompositionType.K);
        var v = Composition.AllScores(model, CompositionType.V);
        Assert.Equal(new long[] { 2, 2, 2, 2 }, q.shape);
        Assert.Equal(Composition.Score(wov[0, 1], wqk[1, 0]).item<float>(), q[0, 1, 1, 0].item<float>(), 5);
        Assert.Equal(Composition.Score(wov[0, 1], wqk[1, 0].t()).item<float>(), k[0, 1, 1, 0].item<float>(), 5);
        Assert.Equal(Composition.Score(wov[0, 0], wov[1, 1]).item<float>(), v[0, 0, 1, 1].item<float>(), 5);
        Assert.Equal(0f, q[1, 0, 1, 1].item<float>());                              // same layer
        Assert.Equal(0f, k[1, 1, 0, 0].item<float>());                              // earlier layer
        AnalysisTestModels.Close(k[0, TensorIndex.Colon, 1], Composition.ConsecutiveLayerScores(model, CompositionType.K, 0), 1e-6, "consecutive layers");
        Assert.Throws<ArgumentOutOfRangeException>(() => Composition.ConsecutiveLayerScores(model, CompositionType.K, 1));
    }

    [Fact]
    public void Eigenvalue_copying_score_is_1_for_an_identity_like_ov_0_for_its_negation_and_the_positive_magnitude_share_otherwise()
    {
        var pad = cat(new[] { eye(3), zeros(5, 3) }, 0);                            // [8, 3]
        var identityLike = new FactoredMatrix(pad, pad.t());
        var negated = new FactoredMatrix(-pad, pad.t());
        Assert.Equal(1f, Composition.EigenvalueCopyingScore(identityLike).item<float>(), 6);
        Assert.Equal(0f, Composition.EigenvalueCopyingScore(negated).item<float>(), 6);
        // Eigenvalues 2 and −1: copying share 2/3; Elhage's Σλ/Σ|λ| = 1/3.
        var mixed = new FactoredMatrix(diag(tensor(new float[] { 2, -1 })), eye(2));
        Assert.Equal(2f / 3, Composition.EigenvalueCopyingScore(mixed).item<float>(), 5);
        Assert.Equal(1f / 3, Composition.EigenvalueSumRatio(mixed).item<float>(), 5);
        // A 90° rotation has eigenvalues ±i: no positive real part.
        var rot = new FactoredMatrix(tensor(new float[] { 0, -1, 1, 0 }, new long[] { 2, 2 }), eye(2));
        Assert.Equal(0f, Composition.EigenvalueCopyingScore(rot).item<float>(), 5);
    }

    [Fact]
    public void Full_ov_circuit_is_w_e_w_v_w_o_w_u_and_diagonal_accuracy_counts_rows_whose_argmax_is_the_diagonal()
    {
        using var _ = no_grad();
        var model = AnalysisTestModels.Tiny();
        var full = Composition.FullOvCircuit(model, 1, 0);
        var formed = matmul(matmul(matmul(model.W_E, model.blocks[1].attn.W_V[0]), model.blocks[1].attn.W_O[0]), model.W_U);
        AnalysisTestModels.Close(formed, full.AB, 1e-5, "W_E W_V W_O W_U");
        var qk = Composition.FullQkCircuit(model, 0, 1, positional: true);
        AnalysisTestModels.Close(matmul(matmul(model.W_pos, model.blocks[0].attn.W_Q[1]), matmul(model.blocks[0].attn.W_K[1].t(), model.W_pos.t())), qk.AB, 1e-5, "W_pos W_Q W_Kᵀ W_posᵀ");

        // Rows 0 and 1 peak on the diagonal, row 2 on column 0: accuracy 2/3, also when computed in chunks of 2 rows.
        var m = tensor(new float[] { 5, 1, 0, 0, 4, 1, 3, 0, 2 }, new long[] { 3, 3 });
        var fm = new FactoredMatrix(m, eye(3));
        Assert.Equal(2.0 / 3, Composition.DiagonalAccuracy(fm, chunk: 2), 12);
        var (idx, vals) = Composition.TopKPerRow(fm, new[] { 2 }, k: 2);
        Assert.Equal(new long[] { 0, 2 }, idx[0].data<long>().ToArray());
        Assert.Equal(new float[] { 3, 2 }, vals[0].data<float>().ToArray());
    }
}
