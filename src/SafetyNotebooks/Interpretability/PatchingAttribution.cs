using SafetyNotebooks.Models;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>
/// Attribution patching (Nanda, "Attribution Patching: Activation Patching At Industrial Scale", 2023): the first-order
/// Taylor estimate of activation patching, <c>metric(patched) − metric(corrupted) ≈ Σ (clean − corrupted) · ∂metric/∂act</c>,
/// with the gradient taken on the corrupted run. One forward and one backward pass give every cell at once; results have
/// the shapes of the <see cref="Patching"/> sweeps but hold estimated changes of the metric (not metric values).
/// </summary>
/// <remarks>
/// The gradient comes from <see cref="HookedTransformer.RunWithCacheAndGradients"/> (TransformerLens' <c>incl_bwd</c> cache).
/// The estimate is exact for activations the metric depends on linearly and degrades with non-linear paths (attention
/// patterns, LayerNorm scales); <see cref="Compare"/> checks it against exact patching.
/// </remarks>
public static class PatchingAttribution
{
    /// <summary>
    /// The corrupted run's activations and gradients for <paramref name="activationNames"/> (short names such as "resid_pre",
    /// "z") at every layer, and the corrupted metric. Dispose the cache.
    /// </summary>
    public static (double CorruptedMetric, ActivationCache Cache) CorruptedGradients(HookedTransformer model, Tensor corruptedTokens,
        Func<Tensor, Tensor> patchingMetric, params string[] activationNames) =>
        CorruptedGradients(model, corruptedTokens, patchingMetric, attentionMask: null, activationNames);

    /// <summary>
    /// <see cref="CorruptedGradients(HookedTransformer, Tensor, Func{Tensor, Tensor}, string[])"/> for a padded batch:
    /// <paramref name="attentionMask"/> is the corrupted tokens' [batch, pos] mask (1 = real, 0 = padding; the clean cache must
    /// come from a run with the same mask). Padded positions get zero gradients, so they add nothing to the attributions.
    /// </summary>
    public static (double CorruptedMetric, ActivationCache Cache) CorruptedGradients(HookedTransformer model, Tensor corruptedTokens,
        Func<Tensor, Tensor> patchingMetric, Tensor? attentionMask, params string[] activationNames)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(corruptedTokens);
        ArgumentNullException.ThrowIfNull(activationNames);
        if (activationNames.Length == 0)
            throw new ArgumentException("Name at least one activation to attribute, e.g. CorruptedGradients(model, tokens, metric, mask, \"z\").", nameof(activationNames));
        var tokens = corruptedTokens.dim() == 1 ? corruptedTokens.unsqueeze(0) : corruptedTokens;
        if (attentionMask is not null)
        {
            var mask = attentionMask.dim() == 1 ? attentionMask.unsqueeze(0) : attentionMask;
            if (!mask.shape.SequenceEqual(tokens.shape))
                throw new ArgumentException($"The attention mask has shape [{string.Join(", ", mask.shape)}] but the corrupted tokens [{string.Join(", ", tokens.shape)}]; " +
                    "pass the corrupted batch's own [batch, pos] mask (1 = real token, 0 = padding).", nameof(attentionMask));
            attentionMask = mask;
        }
        var wanted = new HashSet<string>(Enumerable.Range(0, model.Cfg.NLayers).SelectMany(l => activationNames.Select(a => Utils.GetActName(a, l))));
        foreach (var n in wanted) model.GetHookPoint(n);
        var (logits, metric, cache) = model.RunWithCacheAndGradients(tokens, patchingMetric, wanted.Contains, attentionMask);
        logits.Dispose();
        return (metric, cache);
    }

    /// <summary>
    /// Attribution of one activation at every layer. <paramref name="indexAxisNames"/> as in
    /// <see cref="Patching.GenericActivationPatch(HookedTransformer, Tensor, ActivationCache, Func{Tensor, Tensor}, PatchSetter, string, IReadOnlyList{string}, PatchingOptions?)"/>:
    /// ["layer", "pos"] for [batch, pos, d] activations; ["layer", "pos", "head"] or ["layer", "head"] for z/q/k/v;
    /// ["layer", "head_index"], ["layer", "head_index", "dest_pos"] for patterns. The other dimensions are summed.
    /// </summary>
    /// <param name="cleanCache">The clean run's activations (same [batch, pos] as the corrupted tokens).</param>
    /// <param name="corruptedGradients">From <see cref="CorruptedGradients"/>: the corrupted activations and their gradients.</param>
    /// <param name="activationName">Short name: resid_pre, resid_mid, resid_post, attn_out, mlp_out, z, q, k, v, pattern.</param>
    /// <param name="indexAxisNames">Which axes to keep (the first is "layer").</param>
    public static Tensor Attribute(ActivationCache cleanCache, ActivationCache corruptedGradients, string activationName, IReadOnlyList<string> indexAxisNames)
    {
        ArgumentNullException.ThrowIfNull(cleanCache);
        ArgumentNullException.ThrowIfNull(corruptedGradients);
        var model = corruptedGradients.Model;
        bool pattern = activationName is "pattern" or "attn_scores";
        var keep = indexAxisNames.Skip(1).ToArray();
        int[] keepDims = (pattern, string.Join(",", keep)) switch
        {
            (false, "pos") => [1],
            (false, "pos,head") or (false, "pos,head_index") => [1, 2],
            (false, "head") or (false, "head_index") => [2],
            (true, "head") or (true, "head_index") => [1],
            (true, "head,dest_pos") or (true, "head_index,dest_pos") => [1, 2],
            (true, "head,dest_pos,src_pos") or (true, "head_index,dest_pos,src_pos") => [1, 2, 3],
            _ => throw new ArgumentException($"Attribution of '{activationName}' cannot keep axes [{string.Join(", ", indexAxisNames)}]; use [\"layer\", \"pos\"] " +
                "(resid/attn_out/mlp_out), [\"layer\", \"pos\", \"head\"] or [\"layer\", \"head\"] (z, q, k, v), or [\"layer\", \"head_index\"(, \"dest_pos\")] (pattern).", nameof(indexAxisNames)),
        };
        if (indexAxisNames[0] != "layer")
            throw new ArgumentException($"indexAxisNames must start with \"layer\", got [{string.Join(", ", indexAxisNames)}].", nameof(indexAxisNames));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var perLayer = new List<Tensor>();
        for (int l = 0; l < model.Cfg.NLayers; l++)
        {
            var name = Utils.GetActName(activationName, l);
            if (!corruptedGradients.Contains(name + "_grad"))
                throw new ArgumentException($"The gradient cache has no '{name}_grad'; build it with PatchingAttribution.CorruptedGradients(model, corruptedTokens, metric, \"{activationName}\").", nameof(corruptedGradients));
            if (!cleanCache.Contains(name))
                throw new ArgumentException($"The clean cache has no '{name}'. Cache it: model.RunWithCache(cleanTokens) without a namesFilter, or with one that keeps \"{activationName}\".", nameof(cleanCache));
            var clean = cleanCache[name];
            var corrupted = corruptedGradients[name];
            var grad = corruptedGradients[name + "_grad"];
            if (!clean.shape.SequenceEqual(corrupted.shape))
                throw new ArgumentException($"The clean cache's '{name}' has shape [{string.Join(", ", clean.shape)}] but the corrupted run's is [{string.Join(", ", corrupted.shape)}]: " +
                    "clean and corrupted prompts need the same batch size and length.", nameof(cleanCache));
            var product = ((clean - corrupted) * grad).to_type(ScalarType.Float64);
            var sumDims = Enumerable.Range(0, (int)product.dim()).Where(d => !keepDims.Contains(d)).Select(d => (long)d).ToArray();
            perLayer.Add(product.sum(sumDims));
        }
        return stack(perLayer).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Attribution patching of every cell of resid_pre, attn_out and mlp_out by [layer, pos] → [3, n_layers, pos], as
    /// <see cref="Patching.GetActPatchBlockEvery"/> (rows <see cref="Patching.BlockEveryLabels"/>).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="corruptedTokens">int64 [batch, pos].</param>
    /// <param name="cleanCache">The clean run's activations (same [batch, pos] and mask).</param>
    /// <param name="patchingMetric">Logits [batch, pos, d_vocab] → single-element float tensor.</param>
    /// <param name="attentionMask">[batch, pos] mask of the corrupted tokens (1 = real, 0 = padding), or null.</param>
    public static Tensor BlockEvery(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> patchingMetric,
        Tensor? attentionMask = null)
    {
        var (_, grads) = CorruptedGradients(model, corruptedTokens, patchingMetric, attentionMask, "resid_pre", "attn_out", "mlp_out");
        using var _g = grads;
        using var scope = NewDisposeScope();
        return stack(Patching.BlockEveryLabels.Select(a => Attribute(cleanCache, grads, a, ["layer", "pos"])).ToArray()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Attribution patching of every head's z, q, k, v and pattern over all positions → [5, n_layers, n_heads], as
    /// <see cref="Patching.GetActPatchAttnHeadAllPosEvery"/> (grouped-query k/v heads beyond n_key_value_heads are NaN).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="corruptedTokens">int64 [batch, pos].</param>
    /// <param name="cleanCache">The clean run's activations (same [batch, pos] and mask).</param>
    /// <param name="patchingMetric">Logits [batch, pos, d_vocab] → single-element float tensor.</param>
    /// <param name="attentionMask">[batch, pos] mask of the corrupted tokens (1 = real, 0 = padding), or null.</param>
    public static Tensor AttnHeadAllPosEvery(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> patchingMetric,
        Tensor? attentionMask = null)
    {
        var (_, grads) = CorruptedGradients(model, corruptedTokens, patchingMetric, attentionMask, "z", "q", "k", "v", "pattern");
        using var _g = grads;
        using var scope = NewDisposeScope();
        int h = model.Cfg.NHeads;
        Tensor Pad(Tensor t) => t.shape[^1] == h ? t : cat(new[] { t, full(new long[] { t.shape[0], h - t.shape[^1] }, double.NaN, dtype: t.dtype) }, -1);
        return stack(new[]
        {
            Attribute(cleanCache, grads, "z", ["layer", "head"]),
            Attribute(cleanCache, grads, "q", ["layer", "head"]),
            Pad(Attribute(cleanCache, grads, "k", ["layer", "head"])),
            Pad(Attribute(cleanCache, grads, "v", ["layer", "head"])),
            Attribute(cleanCache, grads, "pattern", ["layer", "head_index"]),
        }).MoveToOuterDisposeScope();
    }

    /// <summary>One cell of <see cref="Compare"/>: its label, the exact change of the metric, and the attribution estimate.</summary>
    public sealed record Row(string Label, double Exact, double Attribution);

    /// <summary>How well attribution patching matches exact patching: Pearson correlation, largest error, and the cells.</summary>
    public sealed record Comparison(double Correlation, double MaxAbsError, IReadOnlyList<Row> Rows)
    {
        /// <summary>A plain-text table, one cell per line, sorted by |exact| (largest first), at most <paramref name="top"/> lines.</summary>
        public string ToTable(int top = 20)
        {
            var ci = System.Globalization.CultureInfo.InvariantCulture;
            var lines = Rows.OrderByDescending(r => Math.Abs(r.Exact)).Take(top)
                .Select(r => string.Format(ci, "{0,-16} {1,12:0.0000} {2,12:0.0000}", r.Label, r.Exact, r.Attribution));
            return string.Format(ci, "{0,-16} {1,12} {2,12}\n", "cell", "exact Δ", "attribution") + string.Join("\n", lines) +
                string.Format(ci, "\ncorrelation {0:0.000}, max |error| {1:0.0000}", Correlation, MaxAbsError);
        }
    }

    /// <summary>
    /// Compares attribution patching with exact activation patching on the same cells: <paramref name="exact"/> holds metric
    /// values from a <see cref="Patching"/> sweep (the corrupted metric is subtracted to get changes), <paramref name="attribution"/>
    /// the estimates of the same shape. NaN cells are skipped.
    /// </summary>
    /// <param name="exact">Metric values of exact patching, e.g. <see cref="Patching.GetActPatchResidPre"/>'s result.</param>
    /// <param name="attribution">Attribution estimates of the same shape.</param>
    /// <param name="corruptedMetric">The metric of the unpatched corrupted run.</param>
    /// <param name="labels">One label per cell in row-major order (e.g. <see cref="Patching.HeadLabels"/>); null: the cell's index.</param>
    public static Comparison Compare(Tensor exact, Tensor attribution, double corruptedMetric, IReadOnlyList<string>? labels = null)
    {
        ArgumentNullException.ThrowIfNull(exact);
        ArgumentNullException.ThrowIfNull(attribution);
        if (!exact.shape.SequenceEqual(attribution.shape))
            throw new ArgumentException($"Exact patching has shape [{string.Join(", ", exact.shape)}] but attribution [{string.Join(", ", attribution.shape)}]; compare the same sweep (e.g. GetActPatchBlockEvery with BlockEvery).", nameof(attribution));
        var e = exact.to_type(ScalarType.Float64).reshape(-1).data<double>().ToArray();
        var a = attribution.to_type(ScalarType.Float64).reshape(-1).data<double>().ToArray();
        if (labels is not null && labels.Count != e.Length)
            throw new ArgumentException($"{labels.Count} labels for {e.Length} cells; pass one label per cell in row-major order.", nameof(labels));
        var shape = exact.shape;
        string Label(int i)
        {
            if (labels is not null) return labels[i];
            var idx = new long[shape.Length];
            long rest = i;
            for (int d = shape.Length - 1; d >= 0; d--) { idx[d] = rest % shape[d]; rest /= shape[d]; }
            return "[" + string.Join(", ", idx) + "]";
        }
        var rows = Enumerable.Range(0, e.Length).Where(i => !double.IsNaN(e[i]) && !double.IsNaN(a[i]))
            .Select(i => new Row(Label(i), e[i] - corruptedMetric, a[i])).ToList();
        return new Comparison(Pearson(rows.Select(r => r.Exact).ToArray(), rows.Select(r => r.Attribution).ToArray()),
            rows.Count == 0 ? double.NaN : rows.Max(r => Math.Abs(r.Exact - r.Attribution)), rows);
    }

    /// <summary>Pearson correlation of two equally long series (NaN when either is constant).</summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count != y.Count) throw new ArgumentException($"Pearson: {x.Count} and {y.Count} values; pass series of equal length.");
        int n = x.Count;
        if (n < 2) return double.NaN;
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++) { sxy += (x[i] - mx) * (y[i] - my); sxx += (x[i] - mx) * (x[i] - mx); syy += (y[i] - my) * (y[i] - my); }
        return sxx == 0 || syy == 0 ? double.NaN : sxy / Math.Sqrt(sxx * syy);
    }
}
