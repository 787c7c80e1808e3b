using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

/// <summary>SAELens-named metrics against hand-worked values; splicing into a HookedTransformer; training recovers known features.</summary>
public class SaeMetricsAndSplicingTests
{
    static SaeMetricsAndSplicingTests() => TorchRuntime.EnsureLoaded();

    /// <summary>
    /// x = [[1,0],[0,2]], x̂ = [[1,1],[0,3]]: errors² 1 and 1 → mse 1; x̄ = [0.5,1], ‖x − x̄‖² = 1.25 for both → EV = 1 − 1/1.25 = 0.2;
    /// cos = 1/√2 and 1 → 0.853553; ‖x̂‖/‖x‖ = √2 and 1.5 → 1.457107; E‖x̂‖² / E[x·x̂] = 5.5 / 3.5 = 1.571429.
    /// </summary>
    [Fact]
    public void Reconstruction_metrics_match_hand_worked_values()
    {
        var x = tensor(new float[] { 1, 0, 0, 2 }, new long[] { 2, 2 });
        var xHat = tensor(new float[] { 1, 1, 0, 3 }, new long[] { 2, 2 });
        Assert.Equal(1.0, SaeMetrics.Mse(x, xHat), 6);
        Assert.Equal(0.2, SaeMetrics.ExplainedVariance(x, xHat), 6);
        Assert.Equal(0.2, SaeMetrics.ExplainedVarianceLegacy(x, xHat), 6);
        Assert.Equal((1 / Math.Sqrt(2) + 1) / 2, SaeMetrics.CosineSimilarity(x, xHat), 6);
        Assert.Equal((Math.Sqrt(2) + 1.5) / 2, SaeMetrics.L2Ratio(x, xHat), 6);
        Assert.Equal(5.5 / 3.5, SaeMetrics.RelativeReconstructionBias(x, xHat), 6);
        Assert.Throws<ArgumentException>(() => SaeMetrics.Mse(x, xHat.narrow(0, 0, 1)));
    }

    /// <summary>acts rows [0,1,0.5], [0,0,2], [0,3,0], [0,0,0]: l0 = 4/4 = 1, l1 = 6.5/4; densities [0, 0.5, 0.5]: 1 of 3 dead, 2 of 3 dense (&gt; 0.1).</summary>
    [Fact]
    public void Sparsity_and_density_metrics_match_hand_worked_values()
    {
        var acts = tensor(new float[] { 0, 1, 0.5f, 0, 0, 2, 0, 3, 0, 0, 0, 0 }, new long[] { 4, 3 });
        Assert.Equal(1.0, SaeMetrics.L0(acts), 9);
        Assert.Equal(6.5 / 4, SaeMetrics.L1(acts), 6);
        var density = SaeMetrics.FeatureDensity(acts);
        Assert.Equal(new[] { 0.0, 0.5, 0.5 }, density.data<double>().ToArray());
        Assert.Equal(1.0 / 3, SaeMetrics.DeadFraction(density), 9);
        Assert.Equal(2.0 / 3, SaeMetrics.DenseFraction(density), 9);
        // log10(0 + 1e-10) = −10 → first bin; log10(0.5 + 1e-10) ≈ −0.301 → last of 10 bins over [−10, 0].
        var h = SaeMetrics.LogDensityHistogram(density, bins: 10);
        Assert.Equal(new long[] { 1, 0, 0, 0, 0, 0, 0, 0, 0, 2 }, h.Counts);
        Assert.Equal(1, h.DeadCount);
        Assert.Equal(-10.0, h.BinEdges[0]);
        Assert.Equal(0.0, h.BinEdges[^1]);
    }

    static HookedTransformer TinyModel() => new(HookedTransformerConfig.AttnOnly2L(dVocab: 16, nCtx: 8) with { Seed = 1 });

    static SparseAutoencoder TinySae() =>
        new(new SaeConfig { DIn = 64, DSae = 128, HookName = "blocks.0.hook_resid_post", Seed = 3, DecoderInitNorm = 1.0 });

    [Fact]
    public void Splicing_with_the_error_term_leaves_the_logits_unchanged_and_without_it_changes_them()
    {
        using var model = TinyModel();
        using var sae = TinySae();
        random.manual_seed(4);
        using var tokens = randint(0, 16, new long[] { 3, 8 });
        using var noGrad = no_grad();
        using var clean = model.forward(tokens);
        using var withError = SaeSplicing.RunWithSae(model, tokens, sae, useErrorTerm: true);
        using var withoutError = SaeSplicing.RunWithSae(model, tokens, sae);
        Assert.True((withError - clean).abs().max().item<float>() < 1e-4f);
        Assert.True((withoutError - clean).abs().max().item<float>() > 1e-2f);
        Assert.Equal(0, model.HookCount);                                     // the splice hook is removed afterwards
    }

    [Fact]
    public void Ablating_a_feature_inside_a_model_run_removes_exactly_its_decoder_contribution()
    {
        using var model = TinyModel();
        using var sae = TinySae();
        random.manual_seed(5);
        using var tokens = randint(0, 16, new long[] { 2, 8 });
        using var noGrad = no_grad();
        var (_, cache) = SaeSplicing.RunWithSaeCache(model, tokens, sae, useErrorTerm: true);
        var acts = cache["blocks.0.hook_resid_post.hook_sae_acts_post"];
        Assert.Equal(new long[] { 2, 8, 128 }, acts.shape);
        int feature = (int)acts.gt(0).sum(new long[] { 0, 1 }).argmax().item<long>();   // the most active feature
        // Reference without the SAE: subtract a_f · W_dec[f] from the residual stream directly.
        var direction = sae.FeatureDirection(feature);
        var a = acts.select(-1, feature).unsqueeze(-1);
        using var expected = model.RunWithHooks(tokens, ("blocks.0.hook_resid_post", (x, _) => x - a * direction));
        sae.AddHook("hook_sae_acts_post", SaeSplicing.AblateFeatures(feature));
        using var ablated = SaeSplicing.RunWithSae(model, tokens, sae, useErrorTerm: true);
        sae.ResetHooks();
        Assert.True((ablated - expected).abs().max().item<float>() < 1e-4f);
        foreach (var t in cache.Values) t.Dispose();
    }

    [Fact]
    public void Downstream_metrics_with_the_error_term_recover_the_clean_loss_and_zero_kl()
    {
        using var model = TinyModel();
        using var sae = TinySae();
        random.manual_seed(6);
        using var tokens = randint(0, 16, new long[] { 4, 8 });
        var m = SaeMetrics.DownstreamReconstruction(model, sae, tokens, useErrorTerm: true);
        Assert.Equal(m["ce_loss_without_sae"], m["ce_loss_with_sae"], 4);
        Assert.True(Math.Abs(m["kl_div_with_sae"]) < 1e-6);
        Assert.True(m["kl_div_with_ablation"] > 1e-4);
        Assert.Equal(1.0, m["kl_div_score"], 4);
        using var noGrad = no_grad();
        // The ablation loss is the model's loss with the hook zeroed, computed independently.
        using var abl = model.RunWithHooks(tokens, ("blocks.0.hook_resid_post", (x, _) => zeros_like(x)));
        Assert.Equal(LanguageModelLoss.Mean(abl, tokens).item<float>(), m["ce_loss_with_ablation"], 4);
    }

    [Fact]
    public void Steering_adds_the_scaled_feature_direction_to_the_activation()
    {
        using var sae = TinySae();
        var hook = SaeSplicing.SteeringHook(sae, 7, 2.5);
        using var x = zeros(1, 3, 64);
        using var steered = hook(x, null!)!;
        var expected = sae.FeatureDirection(7) * 2.5;
        for (int p = 0; p < 3; p++) Assert.True(steered[0, p].allclose(expected));
    }

    /// <summary>
    /// Four orthonormal directions in R^16, each active on ~15% of samples with magnitude U(0.5, 1.5): a standard SAE with 8
    /// features, trained through the library's Trainer, must learn each direction (a decoder row with cosine &gt; 0.9).
    /// </summary>
    [Fact]
    public void Training_a_standard_sae_on_sparse_orthogonal_features_recovers_them()
    {
        random.manual_seed(11);
        var (q, _) = linalg.qr(randn(16, 16));
        var features = q.narrow(1, 0, 4).t().contiguous();                       // [4, 16], orthonormal rows
        var sae = new SparseAutoencoder(new SaeConfig { DIn = 16, DSae = 8, Seed = 12 });
        var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L1Coefficient = 0.1, L1WarmUpSteps = 50 });
        var config = SaeTrainingObjective.SaeLensTrainerConfig(maxSteps: 300, learningRate: 1e-2, batchSize: 256) with { ConsoleProgress = false, Seed = 13 };
        var trainer = new Trainer<Tensor>(objective, config);
        trainer.Train((_, rng) =>
        {
            var on = rand(256, 4).lt(0.15).to_type(ScalarType.Float32);
            var mag = rand(256, 4) + 0.5;
            return (on * mag).matmul(features);
        });
        using var noGrad = no_grad();
        var dec = sae.W_dec / sae.W_dec.pow(2).sum(1, keepdim: true).sqrt();
        var cos = features.matmul(dec.t());                                       // [4, 8]
        var best = cos.max(1).values.data<float>().ToArray();
        Assert.All(best, c => Assert.True(c > 0.9f, $"best cosines {string.Join(", ", best)}"));
        Assert.True(trainer.Records[^1].Metrics!["metrics/explained_variance"] > 0.8);
        Assert.Contains("losses/l1_loss", trainer.History.Columns.Select(c => c.Name));
    }
}
