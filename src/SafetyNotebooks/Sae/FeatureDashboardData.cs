using System.Globalization;
using System.Text.RegularExpressions;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>Settings of <see cref="FeatureDashboards"/> (names after sae_vis' <c>SaeVisConfig</c> where one exists).</summary>
public sealed record FeatureDashboardOptions
{
    /// <summary>Top-activating examples per feature (sae_vis' <c>n_top_ex</c>). Default 10.</summary>
    public int TopExamples { get; init; } = 10;
    /// <summary>Tokens shown before the example's token (sae_vis' <c>buffer</c>, left). Default 8.</summary>
    public int ContextBefore { get; init; } = 8;
    /// <summary>Tokens shown after the example's token (sae_vis' <c>buffer</c>, right). Default 3.</summary>
    public int ContextAfter { get; init; } = 3;
    /// <summary>Equal-width activation bands over (0, max] for the quantile samples (sae_vis' interval groups); 0 = none. Default 4.</summary>
    public int QuantileGroups { get; init; } = 4;
    /// <summary>Examples shown per band (sae_vis' <c>n_ex_per_interval</c>), evenly spread over the band's tokens by activation. Default 3.</summary>
    public int ExamplesPerQuantile { get; init; } = 3;
    /// <summary>Boosted and suppressed tokens listed each (sae_vis' <c>n_top_logits</c>). Default 10.</summary>
    public int TopLogits { get; init; } = 10;
    /// <summary>Bins of the histogram of nonzero activations. Default 40.</summary>
    public int HistogramBins { get; init; } = 40;
    /// <summary>Nearest features by decoder cosine similarity (sae_vis' feature table). Default 3.</summary>
    public int Neighbors { get; init; } = 3;
    /// <summary>Token ids whose positions are not scored (e.g. BOS), as <see cref="ActivationStoreConfig.ExcludeTokenIds"/>. They
    /// count for no statistic and show activation 0 in contexts.</summary>
    public IReadOnlyList<long> ExcludeTokenIds { get; init; } = Array.Empty<long>();
    /// <summary>Sequences per forward pass of the model. Default 64.</summary>
    public int BatchSize { get; init; } = 64;

    internal void Validate()
    {
        static void AtLeast(int v, int min, string name, string what)
        {
            if (v < min) throw new ArgumentOutOfRangeException(name, $"FeatureDashboardOptions.{name} is {v}; set it to {min} or more ({what}).");
        }
        AtLeast(TopExamples, 0, nameof(TopExamples), "examples per feature");
        AtLeast(ContextBefore, 0, nameof(ContextBefore), "tokens before the example token");
        AtLeast(ContextAfter, 0, nameof(ContextAfter), "tokens after the example token");
        AtLeast(QuantileGroups, 0, nameof(QuantileGroups), "activation bands; 0 turns them off");
        AtLeast(ExamplesPerQuantile, 0, nameof(ExamplesPerQuantile), "examples per band");
        AtLeast(TopLogits, 0, nameof(TopLogits), "tokens per logit table");
        AtLeast(HistogramBins, 1, nameof(HistogramBins), "histogram bins");
        AtLeast(Neighbors, 0, nameof(Neighbors), "neighbouring features");
        AtLeast(BatchSize, 1, nameof(BatchSize), "sequences per forward pass");
    }
}

/// <summary>One example of a feature firing: a window of tokens around the token where it fired, with the feature's activation
/// on every token of the window.</summary>
/// <param name="Sequence">Row of the token set.</param>
/// <param name="Position">Position of the example token in its row.</param>
/// <param name="Activation">The feature's activation on that token.</param>
/// <param name="TokenIds">The window's token ids (positions <c>Position − before .. Position + after</c>, clipped to the row).</param>
/// <param name="Activations">The feature's activation on each token of the window (0 where not scored: padding, excluded ids).</param>
/// <param name="FocusIndex">Index of the example token within the window.</param>
public sealed record FeatureExample(int Sequence, int Position, double Activation, long[] TokenIds, double[] Activations, int FocusIndex);

/// <summary>A band of activations (<paramref name="Lower"/>, <paramref name="Upper"/>] with how many tokens fall in it and a few examples.</summary>
public sealed record FeatureQuantileGroup(double Lower, double Upper, long Count, IReadOnlyList<FeatureExample> Examples);

/// <summary>A token and the feature's direct effect on its logit (W_dec[f] in the residual stream, times W_U's column).</summary>
public sealed record LogitEffect(long TokenId, double Value);

/// <summary>Another feature and the cosine similarity of its decoder row with this feature's.</summary>
public sealed record FeatureNeighbor(int Feature, double Cosine);

/// <summary>
/// Everything a feature dashboard shows for one SAE feature (sae_vis' / Neuronpedia's panels): activation statistics, a histogram
/// of nonzero activations, top-activating contexts, quantile samples, the logit effects of the feature's decoder direction and its
/// nearest features. Computed by <see cref="FeatureDashboards"/>; rendered by <c>SafetyNotebooks.Plotting.FeatureDashboard</c>.
/// </summary>
public sealed record FeatureDashboardData
{
    /// <summary>The feature's index (row of W_dec).</summary>
    public required int Feature { get; init; }
    /// <summary>The SAE's hook point, if known.</summary>
    public string? HookName { get; init; }
    /// <summary>Tokens scored (padding and excluded ids not counted).</summary>
    public required long TokensScored { get; init; }
    /// <summary>Tokens on which the feature is &gt; 0.</summary>
    public required long ActiveTokens { get; init; }
    /// <summary>Fraction of scored tokens on which the feature fires (SAELens' <c>feature_density</c>).</summary>
    public double Density => TokensScored == 0 ? 0 : (double)ActiveTokens / TokensScored;
    /// <summary>log10(density + 1e-10), SAELens' scale for density histograms.</summary>
    public double Log10Density => Math.Log10(Density + 1e-10);
    /// <summary>The largest activation.</summary>
    public required double MaxActivation { get; init; }
    /// <summary>Mean activation over the tokens where the feature fires (0 when it never does).</summary>
    public required double MeanActiveActivation { get; init; }
    /// <summary>HistogramBins + 1 edges from 0 to <see cref="MaxActivation"/>.</summary>
    public required double[] HistogramEdges { get; init; }
    /// <summary>Nonzero activations per bin (the first bin includes its lower edge's neighbourhood above 0; the last its upper edge).</summary>
    public required long[] HistogramCounts { get; init; }
    /// <summary>The top-activating examples, highest first.</summary>
    public required IReadOnlyList<FeatureExample> TopExamples { get; init; }
    /// <summary>Samples from equal-width activation bands, highest band first.</summary>
    public required IReadOnlyList<FeatureQuantileGroup> Quantiles { get; init; }
    /// <summary>Tokens whose logits the feature raises most, highest first (empty if the logit effects were not computed).</summary>
    public required IReadOnlyList<LogitEffect> TopLogits { get; init; }
    /// <summary>Tokens whose logits the feature lowers most, lowest first.</summary>
    public required IReadOnlyList<LogitEffect> BottomLogits { get; init; }
    /// <summary>‖W_dec[f]‖.</summary>
    public double DecoderNorm { get; init; }
    /// <summary>Cosine similarity of the encoder column W_enc[:, f] with the decoder row W_dec[f].</summary>
    public double EncoderDecoderCosine { get; init; }
    /// <summary>The features with the most similar decoder rows.</summary>
    public IReadOnlyList<FeatureNeighbor> Neighbors { get; init; } = Array.Empty<FeatureNeighbor>();
}

/// <summary>
/// The data behind feature dashboards (sae_vis / Neuronpedia): runs a <see cref="HookedTransformer"/> over a token set, encodes the
/// activations at the SAE's hook, and gathers per feature the top-activating contexts, quantile samples, density and an activation
/// histogram; adds the feature's logit effects (its decoder direction mapped into the residual stream, times W_U) and its nearest
/// features by decoder cosine. Contexts need token positions, which an <see cref="ActivationStore"/>'s shuffled batches drop: pass
/// the token set you fed the store (or a held-out one) as <c>[n, pos]</c> tokens.
/// <code>
/// var data = FeatureDashboards.Compute(model, sae, tokens, new[] { 3, 17 }, new FeatureDashboardOptions { ExcludeTokenIds = new long[] { bos } });
/// FeatureDashboard.Create(data, tokenizer)      // SafetyNotebooks.Plotting: offline HTML
/// </code>
/// </summary>
public static class FeatureDashboards
{
    /// <summary>
    /// Dashboard data for <paramref name="features"/> of <paramref name="sae"/> on <paramref name="tokens"/> <c>[n, pos]</c> (int64),
    /// with an optional attention mask (0 = padding, not scored). The model runs in eval mode without gradients,
    /// <see cref="FeatureDashboardOptions.BatchSize"/> rows at a time, up to the SAE's layer. Memory: n · pos floats per feature.
    /// Logit effects come from <see cref="FeatureResidualDirection"/> (empty when the hook has no residual-stream direction).
    /// </summary>
    public static IReadOnlyList<FeatureDashboardData> Compute(HookedTransformer model, SparseAutoencoder sae, Tensor tokens, IReadOnlyList<int> features,
        FeatureDashboardOptions? options = null, Tensor? attentionMask = null, string? hookName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sae);
        ArgumentNullException.ThrowIfNull(features);
        options ??= new FeatureDashboardOptions();
        options.Validate();
        var hook = SaeSplicing.ResolveHook(sae, hookName);
        using var acts = FeatureActivations(model, sae, tokens, features, options.BatchSize, attentionMask, hook);
        Tensor? effects = null;
        try
        {
            effects = TryLogitEffects(model, sae, features, hook);
            using var scope = NewDisposeScope();
            var keep = ScoredMask(tokens, attentionMask, options.ExcludeTokenIds);
            var result = new List<FeatureDashboardData>(features.Count);
            for (int i = 0; i < features.Count; i++)
            {
                var d = FromActivations(features[i], acts.select(-1, i), tokens, effects?[i], options, keep);
                result.Add(d with { HookName = hook });
            }
            return result.Select(d => WithDecoderStats(d, sae, options.Neighbors)).ToList();
        }
        finally { effects?.Dispose(); }
    }

    /// <summary>
    /// The activations of <paramref name="features"/> on every token: float32 <c>[n, pos, features.Count]</c> on the CPU (the model runs
    /// in eval mode without gradients, <paramref name="batchSize"/> rows at a time, up to the hook's layer). Positions are not masked.
    /// </summary>
    public static Tensor FeatureActivations(HookedTransformer model, SparseAutoencoder sae, Tensor tokens, IReadOnlyList<int> features,
        int batchSize = 64, Tensor? attentionMask = null, string? hookName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sae);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(features);
        CheckTokens(tokens, attentionMask);
        if (features.Count == 0) throw new ArgumentException("No features given; pass the indices of the features to show, e.g. new[] { 0, 5 }.", nameof(features));
        foreach (var f in features)
            if (f < 0 || f >= sae.Cfg.DSae)
                throw new ArgumentOutOfRangeException(nameof(features), $"Feature {f} does not exist; the SAE has {sae.Cfg.DSae} features (0..{sae.Cfg.DSae - 1}).");
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), $"batchSize is {batchSize}; set it to 1 or more rows per forward pass.");
        var hook = SaeSplicing.ResolveHook(sae, hookName);
        model.GetHookPoint(hook);                                            // throws with the closest names if unknown
        using var noGrad = no_grad();
        bool wasModel = model.training, wasSae = sae.training;
        model.eval(); sae.eval();
        var parts = new List<Tensor>();
        try
        {
            var dev = model.parameters().First().device;
            var saeDev = sae.W_enc.device;
            using var idx = tensor(features.Select(f => (long)f).ToArray(), dtype: ScalarType.Int64, device: saeDev);
            long n = tokens.shape[0];
            int? stop = StopLayer(hook, model.Cfg.NLayers);
            for (long start = 0; start < n; start += batchSize)
            {
                using var scope = NewDisposeScope();
                long len = Math.Min(batchSize, n - start);
                var t = tokens.narrow(0, start, len).to(dev);
                var m = attentionMask?.narrow(0, start, len).to(dev);
                var (_, cache) = model.RunWithCache(t, name => name == hook, attentionMask: m, stopAtLayer: stop);
                using (cache)
                {
                    var a = cache[hook];
                    if (a.dim() >= 4) a = a.flatten(2);                      // [batch, pos, n_heads, d_head] → [batch, pos, n_heads·d_head]
                    if (sae.Cfg.HookHeadIndex is { } head && a.shape[^1] != sae.Cfg.DIn) a = a.view(a.shape[0], a.shape[1], -1, sae.Cfg.DIn).select(2, head);
                    if (a.shape[^1] != sae.Cfg.DIn)
                        throw new ArgumentException($"Hook '{hook}' gives activations of width {a.shape[^1]} but the SAE has d_in = {sae.Cfg.DIn}; use the hook the SAE was trained on ({sae.Cfg.HookName ?? "its hook_name"}).");
                    var f = sae.Encode(a.to(saeDev).to_type(sae.Cfg.DType)).index_select(-1, idx);
                    parts.Add(f.to_type(ScalarType.Float32).cpu().DetachFromDisposeScope());
                }
            }
            using var all = cat(parts.ToArray(), 0);
            return all.contiguous().clone();
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
            model.train(wasModel); sae.train(wasSae);
        }
    }

    /// <summary>
    /// Dashboard data for one feature from its activations <paramref name="featureActs"/> <c>[n, pos]</c> on <paramref name="tokens"/>
    /// <c>[n, pos]</c> (no model needed). Only positions where <paramref name="scored"/> (bool <c>[n, pos]</c>, default all) is true
    /// count; the others show activation 0. <paramref name="logitEffects"/> <c>[d_vocab]</c> (from <see cref="LogitEffects(Tensor, Tensor)"/>)
    /// fills the logit tables when given. Decoder statistics and neighbours are left empty (see <see cref="Compute"/>).
    /// </summary>
    public static FeatureDashboardData FromActivations(int feature, Tensor featureActs, Tensor tokens, Tensor? logitEffects = null,
        FeatureDashboardOptions? options = null, Tensor? scored = null)
    {
        ArgumentNullException.ThrowIfNull(featureActs);
        ArgumentNullException.ThrowIfNull(tokens);
        options ??= new FeatureDashboardOptions();
        options.Validate();
        var (acts, ids, n, pos) = ReadGrid(featureActs, tokens, scored);
        long scoredCount = 0, active = 0;
        double max = 0, sum = 0;
        var activeIdx = new List<int>();
        for (int i = 0; i < acts.Length; i++)
        {
            if (double.IsNaN(acts[i])) continue;
            scoredCount++;
            if (acts[i] > 0) { active++; sum += acts[i]; activeIdx.Add(i); if (acts[i] > max) max = acts[i]; }
        }
        // Highest first; ties by (row, position) so the order is deterministic.
        activeIdx.Sort((a, b) => acts[b].CompareTo(acts[a]) is var c && c != 0 ? c : a.CompareTo(b));
        FeatureExample Example(int flat) => Window(acts, ids, pos, flat / pos, flat % pos, options.ContextBefore, options.ContextAfter);
        var top = activeIdx.Take(options.TopExamples).Select(Example).ToList();

        int bins = options.HistogramBins;
        var edges = Enumerable.Range(0, bins + 1).Select(i => max * i / bins).ToArray();
        var counts = new long[bins];
        if (max > 0)
            foreach (var i in activeIdx) counts[Math.Clamp((int)Math.Floor(acts[i] / max * bins), 0, bins - 1)]++;

        var groups = new List<FeatureQuantileGroup>();
        if (options.QuantileGroups > 0 && max > 0)
        {
            int g = options.QuantileGroups;
            for (int band = g - 1; band >= 0; band--)
            {
                double lo = max * band / g, hi = max * (band + 1) / g;
                // activeIdx is sorted high → low, so the band's members are a contiguous run.
                var members = activeIdx.Where(i => acts[i] > lo && (acts[i] <= hi || band == g - 1)).ToList();
                groups.Add(new FeatureQuantileGroup(lo, hi, members.Count, Spread(members, options.ExamplesPerQuantile).Select(Example).ToList()));
            }
        }

        var (topLogits, bottomLogits) = logitEffects is null
            ? (Array.Empty<LogitEffect>(), Array.Empty<LogitEffect>())
            : TopLogitEffects(logitEffects, options.TopLogits);
        return new FeatureDashboardData
        {
            Feature = feature,
            TokensScored = scoredCount,
            ActiveTokens = active,
            MaxActivation = max,
            MeanActiveActivation = active == 0 ? 0 : sum / active,
            HistogramEdges = edges,
            HistogramCounts = counts,
            TopExamples = top,
            Quantiles = groups,
            TopLogits = topLogits,
            BottomLogits = bottomLogits,
        };
    }

    /// <summary>
    /// The top-activating contexts of one feature: the <paramref name="k"/> scored positions with the largest activation &gt; 0 in
    /// <paramref name="featureActs"/> <c>[n, pos]</c> (ties in row-then-position order), each with <paramref name="before"/> tokens
    /// before and <paramref name="after"/> after (clipped to the row).
    /// </summary>
    public static IReadOnlyList<FeatureExample> TopActivatingContexts(Tensor featureActs, Tensor tokens, int k, int before = 8, int after = 3, Tensor? scored = null) =>
        FromActivations(-1, featureActs, tokens, null, new FeatureDashboardOptions
        {
            TopExamples = k, ContextBefore = before, ContextAfter = after, QuantileGroups = 0, TopLogits = 0,
        }, scored).TopExamples;

    /// <summary>
    /// The direction feature <paramref name="feature"/> writes into the residual stream (<c>[d_model]</c>, float32 CPU): W_dec[f] for
    /// residual-width hooks (<c>hook_resid_pre/mid/post</c>, <c>hook_mlp_out</c>, <c>hook_attn_out</c>, …), W_dec[f] · W_out[L] for
    /// <c>blocks.L.mlp.hook_post</c>, and Σ_h W_dec[f]_h · W_O[L, h] for <c>blocks.L.attn.hook_z</c> (one head with
    /// <see cref="SaeConfig.HookHeadIndex"/>). Other hooks have no direct path to the logits and throw.
    /// </summary>
    public static Tensor FeatureResidualDirection(HookedTransformer model, SparseAutoencoder sae, int feature, string? hookName = null) =>
        ResidualDirections(model, sae, new[] { feature }, SaeSplicing.ResolveHook(sae, hookName))[0].clone();

    /// <summary>
    /// Logit effects of a residual-stream direction <paramref name="direction"/> <c>[d_model]</c> (or several, <c>[k, d_model]</c>):
    /// <c>direction · W_U</c>, float32 <c>[d_vocab]</c> (<c>[k, d_vocab]</c>). As sae_vis and Neuronpedia, the final LayerNorm is not
    /// applied: the values rank tokens, their scale is the unnormalised logit change per unit of activation.
    /// </summary>
    public static Tensor LogitEffects(Tensor direction, Tensor W_U)
    {
        ArgumentNullException.ThrowIfNull(direction);
        ArgumentNullException.ThrowIfNull(W_U);
        if (W_U.dim() != 2 || direction.shape[^1] != W_U.shape[0])
            throw new ArgumentException($"A direction of width {direction.shape[^1]} cannot be multiplied with W_U [{string.Join(", ", W_U.shape)}]; pass a residual-stream direction [d_model] and the model's W_U [d_model, d_vocab].", nameof(direction));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return direction.detach().to_type(ScalarType.Float32).cpu().matmul(W_U.detach().to_type(ScalarType.Float32).cpu()).MoveToOuterDisposeScope();
    }

    /// <summary>The logit effects of feature <paramref name="feature"/>: <see cref="FeatureResidualDirection"/> · W_U, float32 <c>[d_vocab]</c>.</summary>
    public static Tensor LogitEffects(HookedTransformer model, SparseAutoencoder sae, int feature, string? hookName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var dir = FeatureResidualDirection(model, sae, feature, hookName);
        return LogitEffects(dir, model.W_U);
    }

    /// <summary>
    /// The <paramref name="k"/> tokens with the largest values of <paramref name="logitEffects"/> <c>[d_vocab]</c> (highest first) and
    /// the <paramref name="k"/> with the smallest (lowest first); ties by token id.
    /// </summary>
    public static (IReadOnlyList<LogitEffect> Top, IReadOnlyList<LogitEffect> Bottom) TopLogitEffects(Tensor logitEffects, int k)
    {
        ArgumentNullException.ThrowIfNull(logitEffects);
        if (logitEffects.dim() != 1) throw new ArgumentException($"Logit effects must be one value per token [d_vocab]; got [{string.Join(", ", logitEffects.shape)}]. Select one feature's row first.", nameof(logitEffects));
        if (k < 0) throw new ArgumentOutOfRangeException(nameof(k), $"k is {k}; ask for 0 or more tokens.");
        double[] v;
        using (var scope = NewDisposeScope()) v = logitEffects.detach().to_type(ScalarType.Float64).cpu().data<double>().ToArray();
        var order = Enumerable.Range(0, v.Length).ToArray();
        var top = order.OrderByDescending(i => v[i]).ThenBy(i => i).Take(k).Select(i => new LogitEffect(i, v[i])).ToList();
        var bottom = order.OrderBy(i => v[i]).ThenBy(i => i).Take(k).Select(i => new LogitEffect(i, v[i])).ToList();
        return (top, bottom);
    }

    // ---- helpers ---------------------------------------------------------------------------------------------

    static FeatureDashboardData WithDecoderStats(FeatureDashboardData d, SparseAutoencoder sae, int neighbors)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var wDec = sae.W_dec.detach().to_type(ScalarType.Float64).cpu();
        var row = wDec[d.Feature];
        double norm = row.norm().item<double>();
        var enc = sae.W_enc.detach().to_type(ScalarType.Float64).cpu()[.., d.Feature];
        double encCos = (enc.dot(row) / (enc.norm() * row.norm()).clamp_min(1e-12)).item<double>();
        var cos = (wDec.matmul(row) / (wDec.norm(1) * row.norm()).clamp_min(1e-12)).data<double>().ToArray();
        var near = Enumerable.Range(0, cos.Length).Where(j => j != d.Feature).OrderByDescending(j => cos[j]).ThenBy(j => j)
            .Take(neighbors).Select(j => new FeatureNeighbor(j, cos[j])).ToList();
        return d with { DecoderNorm = norm, EncoderDecoderCosine = encCos, Neighbors = near };
    }

    static Tensor? TryLogitEffects(HookedTransformer model, SparseAutoencoder sae, IReadOnlyList<int> features, string hook)
    {
        if (!HasResidualDirection(model, sae, hook)) return null;
        using var dirs = ResidualDirections(model, sae, features, hook);
        return LogitEffects(dirs, model.W_U);
    }

    static bool HasResidualDirection(HookedTransformer model, SparseAutoencoder sae, string hook)
    {
        var cfg = model.Cfg;
        if (MlpPost.IsMatch(hook)) return !cfg.AttnOnly && sae.Cfg.DIn == cfg.DMlp;
        if (AttnZ.IsMatch(hook)) return sae.Cfg.DIn == (sae.Cfg.HookHeadIndex is null ? cfg.NHeads * cfg.DHead : cfg.DHead);
        return sae.Cfg.DIn == cfg.DModel && ResidualWidth.IsMatch(hook);
    }

    static readonly Regex MlpPost = new(@"^blocks\.(\d+)\.mlp\.hook_post$", RegexOptions.CultureInvariant);
    static readonly Regex AttnZ = new(@"^blocks\.(\d+)\.attn\.hook_z$", RegexOptions.CultureInvariant);
    static readonly Regex ResidualWidth = new(@"(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_mlp_out|hook_attn_out|hook_embed|hook_pos_embed)$|^ln_final\.hook_normalized$", RegexOptions.CultureInvariant);

    // [features.Count, d_model] float32 CPU.
    static Tensor ResidualDirections(HookedTransformer model, SparseAutoencoder sae, IReadOnlyList<int> features, string hook)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sae);
        foreach (var f in features)
            if (f < 0 || f >= sae.Cfg.DSae)
                throw new ArgumentOutOfRangeException(nameof(features), $"Feature {f} does not exist; the SAE has {sae.Cfg.DSae} features (0..{sae.Cfg.DSae - 1}).");
        if (!HasResidualDirection(model, sae, hook))
            throw new ArgumentException($"SAE features at '{hook}' (d_in {sae.Cfg.DIn}) have no direct path to the logits that this library maps: " +
                "train the SAE on a residual-width hook (hook_resid_pre/mid/post, hook_mlp_out, hook_attn_out), blocks.L.mlp.hook_post or blocks.L.attn.hook_z, " +
                "or map the direction yourself and call FeatureDashboards.LogitEffects(direction, model.W_U).", nameof(hook));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var idx = tensor(features.Select(f => (long)f).ToArray(), dtype: ScalarType.Int64);
        var rows = sae.W_dec.detach().to_type(ScalarType.Float32).cpu().index_select(0, idx);     // [k, d_in]
        Tensor dirs;
        if (MlpPost.Match(hook) is { Success: true } mm)
        {
            int layer = int.Parse(mm.Groups[1].Value, CultureInfo.InvariantCulture);
            dirs = rows.matmul(model.W_out[layer].to_type(ScalarType.Float32).cpu());
        }
        else if (AttnZ.Match(hook) is { Success: true } zm)
        {
            int layer = int.Parse(zm.Groups[1].Value, CultureInfo.InvariantCulture);
            var wO = model.W_O[layer].to_type(ScalarType.Float32).cpu();                        // [n_heads, d_head, d_model]
            dirs = sae.Cfg.HookHeadIndex is { } h
                ? rows.matmul(wO[h])
                : einsum("khd,hdm->km", rows.view(rows.shape[0], model.Cfg.NHeads, model.Cfg.DHead), wO);
        }
        else dirs = rows;
        return dirs.contiguous().MoveToOuterDisposeScope();
    }

    static void CheckTokens(Tensor tokens, Tensor? mask)
    {
        if (tokens.dim() != 2)
            throw new ArgumentException($"Tokens have shape [{string.Join(", ", tokens.shape)}]; pass int64 [n, pos] (unsqueeze(0) a single sequence).", nameof(tokens));
        if (mask is not null && !mask.shape.SequenceEqual(tokens.shape))
            throw new ArgumentException($"Attention mask [{string.Join(", ", mask.shape)}] does not match tokens [{string.Join(", ", tokens.shape)}]; pass one 1/0 per token.", nameof(mask));
    }

    // bool [n, pos]: true where a position counts (mask ≠ 0 and the token not excluded).
    static Tensor ScoredMask(Tensor tokens, Tensor? mask, IReadOnlyList<long> exclude)
    {
        var keep = ones(tokens.shape, dtype: ScalarType.Bool);
        var t = tokens.cpu();
        if (mask is not null) keep = keep.logical_and(mask.cpu().ne(0));
        foreach (var id in exclude) keep = keep.logical_and(t.ne(id));
        return keep;
    }

    // Activations as float64 with NaN where not scored, token ids, n, pos.
    static (double[] Acts, long[] Ids, int N, int Pos) ReadGrid(Tensor featureActs, Tensor tokens, Tensor? scored)
    {
        CheckTokens(tokens, null);
        if (!featureActs.shape.SequenceEqual(tokens.shape))
            throw new ArgumentException($"Feature activations [{string.Join(", ", featureActs.shape)}] do not match tokens [{string.Join(", ", tokens.shape)}]; pass one feature's activations [n, pos] (e.g. acts.select(-1, i)).", nameof(featureActs));
        if (scored is not null && !scored.shape.SequenceEqual(tokens.shape))
            throw new ArgumentException($"The scored mask [{string.Join(", ", scored.shape)}] does not match tokens [{string.Join(", ", tokens.shape)}]; pass one bool per token.", nameof(scored));
        using var scope = NewDisposeScope();
        var a = featureActs.detach().to_type(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
        var ids = tokens.to_type(ScalarType.Int64).cpu().contiguous().data<long>().ToArray();
        if (scored is not null)
        {
            var s = scored.to_type(ScalarType.Bool).cpu().contiguous().data<bool>().ToArray();
            for (int i = 0; i < a.Length; i++) if (!s[i]) a[i] = double.NaN;
        }
        return (a, ids, (int)tokens.shape[0], (int)tokens.shape[1]);
    }

    static FeatureExample Window(double[] acts, long[] ids, int pos, int row, int p, int before, int after)
    {
        int lo = Math.Max(0, p - before), hi = Math.Min(pos - 1, p + after);
        var wIds = new long[hi - lo + 1];
        var wActs = new double[hi - lo + 1];
        for (int j = lo; j <= hi; j++)
        {
            wIds[j - lo] = ids[row * pos + j];
            var v = acts[row * pos + j];
            wActs[j - lo] = double.IsNaN(v) ? 0 : v;
        }
        return new FeatureExample(row, p, acts[row * pos + p], wIds, wActs, p - lo);
    }

    // m items evenly spread over a list (first, …, last), in list order.
    static IEnumerable<int> Spread(List<int> items, int m)
    {
        if (m <= 0 || items.Count == 0) yield break;
        if (items.Count <= m) { foreach (var i in items) yield return i; yield break; }
        if (m == 1) { yield return items[0]; yield break; }
        for (int j = 0; j < m; j++) yield return items[(int)Math.Round((double)j * (items.Count - 1) / (m - 1))];
    }

    static int? StopLayer(string hook, int nLayers)
    {
        var m = Regex.Match(hook, @"^blocks\.(\d+)\.");
        if (m.Success && int.TryParse(m.Groups[1].Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var layer) && layer + 1 < nLayers) return layer + 1;
        return null;
    }
}
