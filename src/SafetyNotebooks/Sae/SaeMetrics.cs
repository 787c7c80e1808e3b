using SafetyNotebooks.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>A histogram of log10 feature densities (SAELens' <c>feature_density_line_chart</c>).</summary>
/// <param name="BinEdges">Bins + 1 edges in log10 units.</param>
/// <param name="Counts">Features per bin.</param>
/// <param name="DeadCount">Features that never fired (density 0; placed at log10(1e-10) = −10, SAELens' epsilon).</param>
public sealed record FeatureDensityHistogram(double[] BinEdges, long[] Counts, long DeadCount);

/// <summary>
/// SAE evaluation metrics with SAELens' names (<c>evals.py</c> and the trainer's logs). Reconstruction metrics take inputs
/// <c>x</c> and reconstructions <c>x̂</c> <c>[..., d_in]</c> (leading dimensions are flattened into tokens); downstream metrics splice
/// the SAE into a <see cref="HookedTransformer"/>.
/// </summary>
public static class SaeMetrics
{
    static Tensor Rows(Tensor t) => t.reshape(-1, t.shape[^1]).to_type(ScalarType.Float64);

    static void SameShape(Tensor x, Tensor xHat)
    {
        if (!x.shape.SequenceEqual(xHat.shape))
            throw new ArgumentException($"Input [{string.Join(", ", x.shape)}] and reconstruction [{string.Join(", ", xHat.shape)}] differ in shape; pass the SAE's reconstruction of the same activations.");
    }

    /// <summary><c>l0</c>: mean number of features with activation &gt; 0 per token.</summary>
    public static double L0(Tensor featureActs)
    {
        using var scope = NewDisposeScope();
        return Rows(featureActs).gt(0).sum(-1, type: ScalarType.Float64).mean().item<double>();
    }

    /// <summary><c>l1</c>: mean sum of feature activations per token.</summary>
    public static double L1(Tensor featureActs)
    {
        using var scope = NewDisposeScope();
        return Rows(featureActs).sum(-1).mean().item<double>();
    }

    /// <summary>
    /// <c>mse</c>: squared error summed over d_in, averaged over tokens — SAELens' training <c>losses/mse_loss</c>. (SAELens'
    /// <c>evals.py</c> divides that per-token sum once more by the token count; this does not.)
    /// </summary>
    public static double Mse(Tensor x, Tensor xHat)
    {
        SameShape(x, xHat);
        using var scope = NewDisposeScope();
        return (Rows(x) - Rows(xHat)).pow(2).sum(-1).mean().item<double>();
    }

    /// <summary><c>explained_variance</c>: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over tokens (x̄ the mean token; SAELens' trainer formula).</summary>
    public static double ExplainedVariance(Tensor x, Tensor xHat)
    {
        SameShape(x, xHat);
        using var scope = NewDisposeScope();
        var a = Rows(x);
        var resid = (a - Rows(xHat)).pow(2).sum(-1).mean();
        var total = (a - a.mean(new long[] { 0 })).pow(2).sum(-1).mean();
        return 1 - (resid / total).item<double>();
    }

    /// <summary><c>explained_variance_legacy</c>: the mean over tokens of 1 − ‖x − x̂‖² / ‖x − x̄‖².</summary>
    public static double ExplainedVarianceLegacy(Tensor x, Tensor xHat)
    {
        SameShape(x, xHat);
        using var scope = NewDisposeScope();
        var a = Rows(x);
        var resid = (a - Rows(xHat)).pow(2).sum(-1);
        var total = (a - a.mean(new long[] { 0 })).pow(2).sum(-1);
        return (1 - resid / total).mean().item<double>();
    }

    /// <summary><c>cossim</c>: mean over tokens of the cosine similarity between x and x̂.</summary>
    public static double CosineSimilarity(Tensor x, Tensor xHat)
    {
        SameShape(x, xHat);
        using var scope = NewDisposeScope();
        var a = Rows(x);
        var b = Rows(xHat);
        return ((a * b).sum(-1) / (a.pow(2).sum(-1).sqrt() * b.pow(2).sum(-1).sqrt())).mean().item<double>();
    }

    /// <summary><c>l2_ratio</c>: mean over tokens of ‖x̂‖ / ‖x‖ (tokens with ‖x‖ &lt; 1e-4 divide by 1, as SAELens).</summary>
    public static double L2Ratio(Tensor x, Tensor xHat)
    {
        SameShape(x, xHat);
        using var scope = NewDisposeScope();
        var nIn = Rows(x).pow(2).sum(-1).sqrt();
        var nOut = Rows(xHat).pow(2).sum(-1).sqrt();
        return (nOut / where(nIn.abs().lt(1e-4), ones_like(nIn), nIn)).mean().item<double>();
    }

    /// <summary><c>relative_reconstruction_bias</c> (Rajamanoharan et al. 2024, eq. 10): E‖x̂‖² / E[x·x̂]; 1 = no shrinkage.</summary>
    public static double RelativeReconstructionBias(Tensor x, Tensor xHat)
    {
        SameShape(x, xHat);
        using var scope = NewDisposeScope();
        var a = Rows(x);
        var b = Rows(xHat);
        return (b.pow(2).sum(-1).mean() / (a * b).sum(-1).mean()).item<double>();
    }

    /// <summary><c>feature_density</c>: the fraction of tokens on which each feature is &gt; 0 (float64 <c>[d_sae]</c>).</summary>
    public static Tensor FeatureDensity(Tensor featureActs)
    {
        using var scope = NewDisposeScope();
        return Rows(featureActs).gt(0).to_type(ScalarType.Float64).mean(new long[] { 0 }).MoveToOuterDisposeScope();
    }

    /// <summary>Fraction of features that never fire (density 0): the dead fraction.</summary>
    public static double DeadFraction(Tensor featureDensity)
    {
        using var scope = NewDisposeScope();
        return featureDensity.eq(0).to_type(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>Fraction of features denser than <paramref name="threshold"/> (default 0.1: firing on more than 10% of tokens).</summary>
    public static double DenseFraction(Tensor featureDensity, double threshold = 0.1)
    {
        using var scope = NewDisposeScope();
        return featureDensity.gt(threshold).to_type(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>
    /// The log10 feature-density histogram (SAELens' <c>log10(density + 1e-10)</c>): <paramref name="bins"/> equal bins from
    /// <paramref name="min"/> to 0; dead features land at −10 and are also counted in <see cref="FeatureDensityHistogram.DeadCount"/>.
    /// </summary>
    public static FeatureDensityHistogram LogDensityHistogram(Tensor featureDensity, int bins = 50, double min = -10)
    {
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins), "Use at least one bin.");
        if (!(min < 0)) throw new ArgumentOutOfRangeException(nameof(min), "The lowest log10 density must be below 0 (e.g. -10).");
        double[] logs;
        using (var scope = NewDisposeScope())
            logs = (featureDensity.to_type(ScalarType.Float64) + 1e-10).log10().cpu().data<double>().ToArray();
        var edges = Enumerable.Range(0, bins + 1).Select(i => min + (0 - min) * i / bins).ToArray();
        var counts = new long[bins];
        foreach (var v in logs)
        {
            int b = (int)Math.Floor((v - min) / (0 - min) * bins);
            counts[Math.Clamp(b, 0, bins - 1)]++;
        }
        long dead;
        using (var scope = NewDisposeScope()) dead = featureDensity.eq(0).sum().item<long>();
        return new FeatureDensityHistogram(edges, counts, dead);
    }

    /// <summary>
    /// SAELens' downstream reconstruction metrics on one batch of <paramref name="tokens"/>: the model's mean next-token loss
    /// clean (<c>ce_loss_without_sae</c>), with the SAE's reconstruction spliced in at its hook (<c>ce_loss_with_sae</c>), and with the
    /// activation zero-ablated (<c>ce_loss_with_ablation</c>); <c>ce_loss_score</c> = (ablation − sae) / (ablation − clean), the
    /// fraction of the loss recovered; per-token KL(clean ‖ spliced) averaged (<c>kl_div_with_sae</c>, <c>kl_div_with_ablation</c>) and
    /// <c>kl_div_score</c> = (ablation − sae) / ablation. With <paramref name="useErrorTerm"/> the splice adds the SAE's error term, so
    /// the "with SAE" numbers equal the clean ones (a check that splicing itself changes nothing).
    /// </summary>
    public static IReadOnlyDictionary<string, double> DownstreamReconstruction(HookedTransformer model, SparseAutoencoder sae, Tensor tokens,
        string? hookName = null, bool useErrorTerm = false, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sae);
        var hook = SaeSplicing.ResolveHook(sae, hookName);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var clean = model.forward(tokens, attentionMask);
        var spliced = SaeSplicing.RunWithSae(model, tokens, sae, hook, useErrorTerm, attentionMask);
        var ablated = model.RunWithHooks(tokens, attentionMask, (hook, (x, _) => zeros_like(x)));
        double Ce(Tensor logits) => LanguageModelLoss.Mean(logits, tokens, attentionMask is null ? null : LanguageModelLoss.TargetMaskFromAttentionMask(attentionMask)).to_type(ScalarType.Float64).item<double>();
        double ceClean = Ce(clean), ceSae = Ce(spliced), ceAbl = Ce(ablated);
        var logPClean = clean.to_type(ScalarType.Float64).log_softmax(-1);
        double Kl(Tensor logits)
        {
            var logQ = logits.to_type(ScalarType.Float64).log_softmax(-1);
            var perToken = (logPClean.exp() * (logPClean - logQ)).sum(-1);
            if (attentionMask is null) return perToken.mean().item<double>();
            var m = attentionMask.to_type(ScalarType.Float64);
            return ((perToken * m).sum() / m.sum()).item<double>();
        }
        double klSae = Kl(spliced), klAbl = Kl(ablated);
        return new Dictionary<string, double>
        {
            ["ce_loss_without_sae"] = ceClean,
            ["ce_loss_with_sae"] = ceSae,
            ["ce_loss_with_ablation"] = ceAbl,
            ["ce_loss_score"] = (ceAbl - ceSae) / (ceAbl - ceClean),
            ["kl_div_with_sae"] = klSae,
            ["kl_div_with_ablation"] = klAbl,
            ["kl_div_score"] = (klAbl - klSae) / klAbl,
        };
    }

    /// <summary>
    /// The reconstruction and sparsity metrics of <paramref name="sae"/> on activations <paramref name="x"/> <c>[..., d_in]</c>,
    /// under no_grad in eval mode: <c>l0</c>, <c>l1</c>, <c>mse</c>, <c>explained_variance</c>, <c>explained_variance_legacy</c>,
    /// <c>cossim</c>, <c>l2_ratio</c>, <c>relative_reconstruction_bias</c>, <c>dead_features</c> and <c>dense_features</c> (fractions of d_sae
    /// on this batch).
    /// </summary>
    public static IReadOnlyDictionary<string, double> Evaluate(SparseAutoencoder sae, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(sae);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        bool was = sae.training;
        sae.eval();
        try
        {
            var acts = sae.Encode(x);
            var xHat = sae.Decode(acts);
            var xs = x.to_type(xHat.dtype);
            var density = FeatureDensity(acts);
            return new Dictionary<string, double>
            {
                ["l0"] = L0(acts),
                ["l1"] = L1(acts),
                ["mse"] = Mse(xs, xHat),
                ["explained_variance"] = ExplainedVariance(xs, xHat),
                ["explained_variance_legacy"] = ExplainedVarianceLegacy(xs, xHat),
                ["cossim"] = CosineSimilarity(xs, xHat),
                ["l2_ratio"] = L2Ratio(xs, xHat),
                ["relative_reconstruction_bias"] = RelativeReconstructionBias(xs, xHat),
                ["dead_features"] = DeadFraction(density),
                ["dense_features"] = DenseFraction(density),
            };
        }
        finally { sae.train(was); }
    }
}
