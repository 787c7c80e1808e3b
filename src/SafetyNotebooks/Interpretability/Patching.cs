using SafetyNotebooks.Models;
using SafetyNotebooks.Models.Components;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>
/// Writes the clean activation into the corrupted one, in place, for one index (TransformerLens' <c>patch_setter</c>):
/// <paramref name="corruptedActivation"/> and <paramref name="cleanActivation"/> have the same shape; <paramref name="index"/>
/// starts with the layer (e.g. [layer, pos] or [layer, pos, head]).
/// </summary>
public delegate void PatchSetter(Tensor corruptedActivation, IReadOnlyList<int> index, Tensor cleanActivation);

/// <summary>Options of the activation-patching sweeps in <see cref="Patching"/>.</summary>
public sealed record PatchingOptions
{
    /// <summary>
    /// [batch, pos] attention mask of the corrupted tokens (1 = real, 0 = padding), or null when nothing is padded. Clean and
    /// corrupted prompts must have the same [batch, pos] shape: pad them to one length and pass the mask here.
    /// </summary>
    public Tensor? AttentionMask { get; init; }

    /// <summary>
    /// Run one forward pass per patched cell, as TransformerLens' <c>generic_activation_patch</c> does (slow; the reference the
    /// batched sweep is tested against). False (default): stack many patched copies of the corrupted batch into a few large passes.
    /// </summary>
    public bool Naive { get; init; }

    /// <summary>
    /// Batched sweeps: at most this many rows (copies × batch) per forward pass. Null: as many as keep the logits of one pass
    /// under about <see cref="LogitsBudgetBytes"/> (at least one copy of the batch).
    /// </summary>
    public int? MaxRowsPerPass { get; init; }

    /// <summary>Batched sweeps without <see cref="MaxRowsPerPass"/>: the memory budget for one pass's logits (default 256 MiB).</summary>
    public long LogitsBudgetBytes { get; init; } = 256L << 20;

    /// <summary>
    /// Batched sweeps: start each pass at the patched layer from the corrupted run's cached <c>resid_pre</c> (TransformerLens'
    /// <c>start_at_layer</c>) instead of re-running the earlier, unchanged layers (default true). The sweeps that run their own
    /// passes (positional ones without padding, or with <see cref="MetricPositions"/>) always do.
    /// </summary>
    public bool UseStartAtLayer { get; init; } = true;

    /// <summary>
    /// Batched [layer, pos] and [layer, pos, head] sweeps without padding: a patch at position p leaves every earlier position
    /// as in the corrupted run (attention is causal), so each pass computes only positions from the smallest patched one on,
    /// reading the earlier keys and values from the corrupted run (default true).
    /// </summary>
    public bool SkipUnchangedPrefix { get; init; } = true;

    /// <summary>
    /// With <see cref="SkipUnchangedPrefix"/>: the positions are split into this many groups of equal width, each run as its own
    /// passes from its first position (more groups skip more work but make smaller batches). 0 (default): one group per
    /// position, so every patched copy computes exactly the positions its patch can change. Copies of every layer share a
    /// pass: each enters the batch at its own layer.
    /// </summary>
    public int PositionGroups { get; init; }

    /// <summary>
    /// The positions the metric reads (negative counts from the end, e.g. [-1] for a last-token logit difference), or null
    /// (default) for all. Batched sweeps then unembed only these positions; the logits the metric gets hold the corrupted
    /// run's values elsewhere. Checked once: a metric that reads another position fails with an error. Ignored with an
    /// <see cref="AttentionMask"/> (padded batches always unembed every position). In a <c>resid_pre</c> sweep the last block
    /// then also computes only the queries at these positions (their keys and values still come from every position). The
    /// metric gets one logits buffer per pass, overwritten for each patched copy: read the number out, do not keep the tensor.
    /// </summary>
    public IReadOnlyList<int>? MetricPositions { get; init; }

    /// <summary>Reports progress (cells done, cells in all) after each forward pass; null: silent.</summary>
    public Action<int, int>? Progress { get; init; }
}

/// <summary>
/// Activation patching as TransformerLens' <c>transformer_lens.patching</c>: run the corrupted prompt, replace one activation
/// (a layer × position, a head, ...) with its value from the clean run, and record a metric of the patched logits. Every
/// <c>GetActPatch*</c> function mirrors the TransformerLens function of the same name and returns the same shape.
/// </summary>
/// <remarks>
/// <para>The metric maps logits [batch, pos, d_vocab] of one run of the corrupted batch to a single number (e.g. a logit
/// difference averaged over the batch). The results are raw metric values, as in TransformerLens; use
/// <see cref="Normalize"/> or <see cref="NormalizedMetric"/> for the 0 = corrupted, 1 = clean scale.</para>
/// <para>By default a sweep is batched: the cells of one layer are stacked as copies of the corrupted batch along the batch
/// dimension, a single hook patches copy i at cell i, and each pass starts at that layer from the corrupted run's cached
/// residual stream. <see cref="PatchingOptions.Naive"/> runs one full forward pass per cell instead (TransformerLens'
/// loop); both give the same numbers up to float rounding.</para>
/// </remarks>
public static class Patching
{
    // ----------------------------------------------------------------------------------------------- setters (TL names)

    /// <summary>TransformerLens' <c>layer_pos_patch_setter</c>: index [layer, pos]; activation [batch, pos, ...].</summary>
    public static void LayerPosPatchSetter(Tensor corrupted, IReadOnlyList<int> index, Tensor clean)
    {
        CheckIndex(index, 2, "[layer, pos]");
        Copy(corrupted, clean, (1, index[1]));
    }

    /// <summary>TransformerLens' <c>layer_pos_head_vector_patch_setter</c>: index [layer, pos, head]; activation [batch, pos, head, ...].</summary>
    public static void LayerPosHeadVectorPatchSetter(Tensor corrupted, IReadOnlyList<int> index, Tensor clean)
    {
        CheckIndex(index, 3, "[layer, pos, head]");
        Copy(corrupted, clean, (1, index[1]), (2, index[2]));
    }

    /// <summary>TransformerLens' <c>layer_head_vector_patch_setter</c>: index [layer, head]; activation [batch, pos, head, ...].</summary>
    public static void LayerHeadVectorPatchSetter(Tensor corrupted, IReadOnlyList<int> index, Tensor clean)
    {
        CheckIndex(index, 2, "[layer, head]");
        Copy(corrupted, clean, (2, index[1]));
    }

    /// <summary>TransformerLens' <c>layer_head_pattern_patch_setter</c>: index [layer, head]; activation [batch, head, dest_pos, src_pos].</summary>
    public static void LayerHeadPatternPatchSetter(Tensor corrupted, IReadOnlyList<int> index, Tensor clean)
    {
        CheckIndex(index, 2, "[layer, head]");
        Copy(corrupted, clean, (1, index[1]));
    }

    /// <summary>TransformerLens' <c>layer_head_pos_pattern_patch_setter</c>: index [layer, head, dest_pos]; activation [batch, head, dest_pos, src_pos].</summary>
    public static void LayerHeadPosPatternPatchSetter(Tensor corrupted, IReadOnlyList<int> index, Tensor clean)
    {
        CheckIndex(index, 3, "[layer, head, dest_pos]");
        Copy(corrupted, clean, (1, index[1]), (2, index[2]));
    }

    /// <summary>TransformerLens' <c>layer_head_dest_src_pos_pattern_patch_setter</c>: index [layer, head, dest_pos, src_pos].</summary>
    public static void LayerHeadDestSrcPosPatternPatchSetter(Tensor corrupted, IReadOnlyList<int> index, Tensor clean)
    {
        CheckIndex(index, 4, "[layer, head, dest_pos, src_pos]");
        Copy(corrupted, clean, (1, index[1]), (2, index[2]), (3, index[3]));
    }

    static void CheckIndex(IReadOnlyList<int> index, int n, string what)
    {
        if (index.Count != n)
            throw new ArgumentException($"This patch setter takes an index {what} ({n} numbers) but got {index.Count}: [{string.Join(", ", index)}]; " +
                "pick the setter that matches the index axes (e.g. LayerPosHeadVectorPatchSetter for [layer, pos, head]).", nameof(index));
    }

    static void Copy(Tensor corrupted, Tensor clean, params (int Dim, int At)[] at)
    {
        Tensor dst = corrupted, src = clean;
        foreach (var (dim, i) in at)
        {
            if (dim >= dst.dim() || i < 0 || i >= dst.shape[dim])
                throw new ArgumentException($"Patch index {i} on dimension {dim} is outside the activation's shape [{string.Join(", ", corrupted.shape)}]; " +
                    "check the index axes against the activation (heads: [batch, pos, head, d_head]; patterns: [batch, head, dest_pos, src_pos]).");
            dst = dst.narrow(dim, i, 1);
            src = src.narrow(dim, i, 1);
        }
        dst.copy_(src);
    }

    // ----------------------------------------------------------------------------------------------- generic sweep

    /// <summary>
    /// TransformerLens' <c>generic_activation_patch</c> with <c>index_axis_names</c>: patches every combination of the named axes
    /// (the first is always "layer") and returns the metric for each, shape [size of axis 0, size of axis 1, ...].
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="corruptedTokens">int64 [batch, pos], the run that is patched.</param>
    /// <param name="cleanCache">Activations of the clean run (same [batch, pos]); must contain <paramref name="activationName"/> at every layer.</param>
    /// <param name="patchingMetric">Logits [batch, pos, d_vocab] → a single-element float tensor.</param>
    /// <param name="patchSetter">Writes the clean values at one index into the corrupted activation.</param>
    /// <param name="activationName">Short activation name ("resid_pre", "z", "pattern", ...), completed per layer with <see cref="Utils.GetActName"/>.</param>
    /// <param name="indexAxisNames">Axes to sweep: "layer" first, then any of "pos", "head_index"/"head", "dest_pos", "src_pos".</param>
    /// <param name="options">Batching, attention mask, progress.</param>
    public static Tensor GenericActivationPatch(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache,
        Func<Tensor, Tensor> patchingMetric, PatchSetter patchSetter, string activationName, IReadOnlyList<string> indexAxisNames,
        PatchingOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(corruptedTokens);
        ArgumentNullException.ThrowIfNull(indexAxisNames);
        if (indexAxisNames.Count == 0 || indexAxisNames[0] != "layer")
            throw new ArgumentException($"indexAxisNames must start with \"layer\" (as in TransformerLens), got [{string.Join(", ", indexAxisNames)}]; e.g. [\"layer\", \"pos\"].", nameof(indexAxisNames));
        long pos = corruptedTokens.shape[^1];
        int heads = activationName is "k" or "v" ? model.Cfg.EffectiveNKeyValueHeads : model.Cfg.NHeads;
        var sizes = indexAxisNames.Select(a => a switch
        {
            "layer" => model.Cfg.NLayers,
            "pos" or "src_pos" or "dest_pos" => (int)pos,
            "head_index" or "head" => heads,
            _ => throw new ArgumentException($"Unknown index axis '{a}'; use \"layer\", \"pos\", \"head_index\" (or \"head\"), \"src_pos\" or \"dest_pos\".", nameof(indexAxisNames)),
        }).ToArray();
        var cells = CartesianProduct(sizes);
        var values = Sweep(model, corruptedTokens, cleanCache, patchingMetric, patchSetter, activationName, cells, options);
        return tensor(values, sizes.Select(s => (long)s).ToArray());
    }

    /// <summary>
    /// TransformerLens' <c>generic_activation_patch</c> with an explicit <c>index_df</c>: patches each listed index
    /// (layer first) and returns a flat tensor [indices.Count] in the same order.
    /// </summary>
    public static Tensor GenericActivationPatch(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache,
        Func<Tensor, Tensor> patchingMetric, PatchSetter patchSetter, string activationName, IReadOnlyList<int[]> indices,
        PatchingOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(indices);
        var values = Sweep(model, corruptedTokens, cleanCache, patchingMetric, patchSetter, activationName, indices, options);
        return tensor(values, new long[] { values.Length });
    }

    static List<int[]> CartesianProduct(int[] sizes)
    {
        var rows = new List<int[]> { Array.Empty<int>() };
        foreach (var n in sizes)
            rows = rows.SelectMany(r => Enumerable.Range(0, n).Select(i => r.Append(i).ToArray())).ToList();
        return rows;                                                             // last axis fastest, as itertools.product
    }

    /// <summary>Evaluates a metric on logits and checks it returned a single floating-point number.</summary>
    /// <param name="patchingMetric">Logits [batch, pos, d_vocab] → single-element float tensor.</param>
    /// <param name="logits">Logits of one run of the batch.</param>
    public static double MetricValue(Func<Tensor, Tensor> patchingMetric, Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(patchingMetric);
        using var scope = NewDisposeScope();
        var m = patchingMetric(logits);
        if (m is null || m.numel() != 1 || !m.is_floating_point())
            throw new ArgumentException(m is null
                ? "The patching metric returned null; return a single-element float tensor (e.g. a logit difference .mean() over the batch)."
                : $"The patching metric must return one number per run but returned shape [{string.Join(", ", m.shape)}] {m.dtype}; " +
                  "reduce it over the batch and positions (e.g. .mean()) and return a float tensor.", nameof(patchingMetric));
        return m.to_type(ScalarType.Float64).item<double>();
    }

    static double[] Sweep(HookedTransformer model, Tensor tokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric,
        PatchSetter setter, string activationName, IReadOnlyList<int[]> cells, PatchingOptions? options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(cleanCache);
        ArgumentNullException.ThrowIfNull(metric);
        ArgumentNullException.ThrowIfNull(setter);
        ArgumentNullException.ThrowIfNull(activationName);
        options ??= new PatchingOptions();
        if (tokens.dim() == 1) tokens = tokens.unsqueeze(0);
        if (tokens.dim() != 2)
            throw new ArgumentException($"Corrupted tokens must be int64 [batch, pos] but have shape [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        var mask = options.AttentionMask;
        if (mask is not null && mask.dim() == 1) mask = mask.unsqueeze(0);
        int nLayers = model.Cfg.NLayers;
        foreach (var cell in cells)
            if (cell.Length == 0 || cell[0] < 0 || cell[0] >= nLayers)
                throw new ArgumentException($"Patch index [{string.Join(", ", cell)}] must start with a layer in 0…{nLayers - 1}.", nameof(cells));
        var layers = cells.Select(c => c[0]).Distinct().OrderBy(l => l).ToArray();
        var names = layers.ToDictionary(l => l, l => Utils.GetActName(activationName, l));
        foreach (var name in names.Values) model.GetHookPoint(name);              // unknown names throw with suggestions
        foreach (var (l, name) in names)
            if (!cleanCache.Contains(name))
                throw new ArgumentException($"The clean cache has no '{name}'. Cache it: model.RunWithCache(cleanTokens) without a namesFilter, or with one that keeps \"{activationName}\".", nameof(cleanCache));

        var results = new double[cells.Count];
        using var noGrad = no_grad();
        // The corrupted run: its activations check the clean ones' shapes, and its resid_pre seeds start_at_layer.
        var wanted = new HashSet<string>(names.Values);
        bool startAt = !options.Naive && options.UseStartAtLayer;
        bool positional = setter.Method.DeclaringType == typeof(Patching) &&
            setter.Method.Name is nameof(LayerPosPatchSetter) or nameof(LayerPosHeadVectorPatchSetter);
        bool suffix = !options.Naive && options.SkipUnchangedPrefix && positional && mask is null;
        bool ownRunner = suffix || (!options.Naive && options.MetricPositions is not null && mask is null);
        string keyName = model.Cfg.PositionalEmbedding == PositionalEmbeddingType.Rotary ? "hook_rot_k" : "hook_k";
        var (corruptedLogits, corruptedCache) = model.RunWithCache(tokens,
            n => wanted.Contains(n) || ((startAt || ownRunner) && n.EndsWith(".hook_resid_pre", StringComparison.Ordinal)) ||
                 (suffix && (n.EndsWith(".attn." + keyName, StringComparison.Ordinal) || n.EndsWith(".attn.hook_v", StringComparison.Ordinal))), attentionMask: mask);
        using var _c = corruptedCache;
        using var _l = corruptedLogits;
        long[]? metricPositions = null;
        if (options.MetricPositions is { } mp && ownRunner)
        {
            metricPositions = mp.Select(p => (long)(p < 0 ? p + tokens.shape[1] : p)).Distinct().OrderBy(p => p).ToArray();
            if (metricPositions.Length == 0 || metricPositions.Any(p => p < 0 || p >= tokens.shape[1]))
                throw new ArgumentException($"PatchingOptions.MetricPositions = [{string.Join(", ", mp)}] must list positions in 0…{tokens.shape[1] - 1} (or −1 for the last).", nameof(options));
            using var check = corruptedLogits.clone();
            var others = Enumerable.Range(0, (int)tokens.shape[1]).Where(p => !metricPositions.Contains(p)).Select(p => (long)p).ToArray();
            if (others.Length > 0)
                using (var idx = tensor(others)) check.index_fill_(1, idx, double.NaN);
            if (double.IsNaN(MetricValue(metric, check)))
                throw new ArgumentException($"PatchingOptions.MetricPositions = [{string.Join(", ", mp)}] but the metric reads other positions too (it returned NaN when only those were kept); " +
                    "list every position it reads, or leave MetricPositions null.", nameof(options));
        }
        foreach (var name in names.Values)
        {
            var clean = cleanCache[name];
            var corr = corruptedCache[name];
            if (!clean.shape.SequenceEqual(corr.shape))
                throw new ArgumentException(
                    $"The clean cache's '{name}' has shape [{string.Join(", ", clean.shape)}] but the corrupted run's is [{string.Join(", ", corr.shape)}]: " +
                    "clean and corrupted prompts need the same batch size and length; pad both to one length and pass PatchingOptions.AttentionMask.", nameof(cleanCache));
        }

        int done = 0;
        if (options.Naive)
        {
            for (int c = 0; c < cells.Count; c++)
            {
                var cell = cells[c];
                var clean = cleanCache[names[cell[0]]];
                Func<Tensor, HookPoint, Tensor?> hook = (x, _) =>
                {
                    var y = x.clone();
                    setter(y, cell, clean);
                    return y;
                };
                using var scope = NewDisposeScope();
                var logits = model.RunWithHooks(tokens, mask, (names[cell[0]], hook));
                results[c] = MetricValue(metric, logits);
                options.Progress?.Invoke(++done, cells.Count);
            }
            return results;
        }

        long batch = tokens.shape[0], pos = tokens.shape[1];
        int maxRows = options.MaxRowsPerPass ?? (int)Math.Clamp(options.LogitsBudgetBytes / Math.Max(1L, pos * model.Cfg.DVocab * 4L), 1, int.MaxValue);
        if (maxRows <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"PatchingOptions.MaxRowsPerPass = {maxRows}; use a positive number of rows (or null for automatic).");
        int copiesPerPass = (int)Math.Max(1, maxRows / batch);
        if (ownRunner)
        {
            // Cells of every layer together: one pass per position group (and row budget), each copy entering the batch at its layer.
            int groups = suffix ? (options.PositionGroups > 0 ? options.PositionGroups : (int)pos) : 1;
            bool inputPatch = activationName == "resid_pre";
            foreach (var chunk in PassChunks(cells, groups, (int)pos, copiesPerPass))
            {
                using var scope = NewDisposeScope();
                long p0 = suffix ? chunk.Min(c => cells[c][1]) : 0;
                RunStaggered(model, corruptedCache, corruptedLogits, cleanCache, names, setter, metric, cells, chunk, p0, batch, keyName,
                    metricPositions, inputPatch, results);
                done += chunk.Length;
                options.Progress?.Invoke(done, cells.Count);
            }
            return results;
        }
        foreach (var layer in layers)
        {
            var cellIds = Enumerable.Range(0, cells.Count).Where(i => cells[i][0] == layer).ToArray();
            var clean = cleanCache[names[layer]];
            for (int start = 0; start < cellIds.Length; start += copiesPerPass)
            {
                var chunk = cellIds.Skip(start).Take(copiesPerPass).ToArray();
                int k = chunk.Length;
                using var scope = NewDisposeScope();
                Func<Tensor, HookPoint, Tensor?> hook = (x, _) =>
                {
                    var y = x.clone();
                    for (int i = 0; i < k; i++) setter(y.narrow(0, i * batch, batch), cells[chunk[i]], clean);
                    return y;
                };
                var stackedMask = mask?.repeat(k, 1);
                Tensor logits;
                using (model.Hooks((names[layer], hook)))
                {
                    if (startAt && layer > 0)
                        logits = model.forward(corruptedCache["resid_pre", layer].repeat(k, 1, 1), stackedMask, startAtLayer: layer);
                    else
                        logits = model.forward(tokens.repeat(k, 1), stackedMask);
                }
                for (int i = 0; i < k; i++) results[chunk[i]] = MetricValue(metric, logits.narrow(0, i * batch, batch));
                done += k;
                options.Progress?.Invoke(done, cells.Count);
            }
        }
        return results;
    }

    /// <summary>
    /// Cells in passes: split into position groups (by the cell's position, <paramref name="groups"/> groups of equal width),
    /// each sorted by layer and cut into passes of at most <paramref name="copies"/> cells.
    /// </summary>
    static IEnumerable<int[]> PassChunks(IReadOnlyList<int[]> cells, int groups, int pos, int copies)
    {
        int width = (pos + groups - 1) / groups;
        var byGroup = Enumerable.Range(0, cells.Count)
            .GroupBy(c => groups == 1 || cells[c].Length < 2 ? 0 : cells[c][1] / width)
            .OrderBy(g => g.Key);
        foreach (var group in byGroup)
        {
            var ids = group.OrderBy(c => cells[c][0]).ThenBy(c => cells[c].Length > 1 ? cells[c][1] : 0).ToArray();
            for (int start = 0; start < ids.Length; start += copies) yield return ids.Skip(start).Take(copies).ToArray();
        }
    }

    /// <summary>
    /// One batched pass over copies of the corrupted batch, computing positions <paramref name="p0"/>… only (earlier keys and
    /// values from the corrupted run). The copies of <paramref name="chunk"/> (sorted by layer) enter the batch at their own
    /// layer, from the corrupted run's <c>resid_pre</c> there, so a pass costs what each copy needs from its layer on and no more;
    /// copy i is patched at cell <paramref name="chunk"/>[i] (directly on the block input for <c>resid_pre</c>, by a hook that
    /// touches only its rows otherwise). Writes each copy's metric into <paramref name="results"/>; the logits the metric sees
    /// are the corrupted run's before <paramref name="p0"/> (and outside <paramref name="metricPositions"/> when given).
    /// </summary>
    static void RunStaggered(HookedTransformer model, ActivationCache corrupted, Tensor corruptedLogits, ActivationCache cleanCache,
        IReadOnlyDictionary<int, string> names, PatchSetter setter, Func<Tensor, Tensor> metric, IReadOnlyList<int[]> cells, int[] chunk,
        long p0, long batch, string keyName, long[]? metricPositions, bool inputPatch, double[] results)
    {
        int nLayers = model.Cfg.NLayers;
        long pos = corruptedLogits.shape[1], len = pos - p0;
        var device = corruptedLogits.device;
        var wantedPositions = metricPositions?.Where(p => p >= p0).ToArray();
        if (wantedPositions is { Length: 0 })
        {
            // The metric reads only positions before every patch: each copy's logits there are the corrupted ones.
            double unchanged = MetricValue(metric, corruptedLogits);
            foreach (var c in chunk) results[c] = unchanged;
            return;
        }
        int[] Relative(int c)
        {
            var index = (int[])cells[c].Clone();
            if (index.Length > 1) index[1] -= (int)p0;                           // positions relative to the computed suffix
            return index;
        }
        Tensor CleanPart(int layer) => p0 == 0 ? cleanCache[names[layer]] : cleanCache[names[layer]].narrow(1, p0, len);
        var order = chunk.OrderBy(c => cells[c][0]).ToArray();                   // copy i of the batch is cell order[i]
        int first = cells[order[0]][0];
        // Rows [From, From + cells) of the batch enter at each layer.
        var entering = new Dictionary<int, (int From, int[] Cells)>();
        for (int i = 0; i < order.Length;)
        {
            int l = cells[order[i]][0], j = i;
            while (j < order.Length && cells[order[j]][0] == l) j++;
            entering[l] = (i, order[i..j]);
            i = j;
        }
        var hooks = new List<(string, Func<Tensor, HookPoint, Tensor?>)>();
        if (!inputPatch)
            foreach (var (l, (from, ids)) in entering)
            {
                var cleanPart = CleanPart(l);
                hooks.Add((names[l], (a, _) =>
                {
                    var y = a.clone();
                    for (int i = 0; i < ids.Length; i++) setter(y.narrow(0, (from + i) * batch, batch), Relative(ids[i]), cleanPart);
                    return y;
                }));
            }
        // The last block computes only the queries the metric reads (keys and values still at every position) when nothing hooks
        // inside it and positions do not rotate keys (absolute or no positional embedding); then x holds just those positions.
        var cfg = model.Cfg;
        bool lastQueriesOnly = inputPatch && wantedPositions is not null && wantedPositions.Length < len &&
            cfg.PositionalEmbedding != PositionalEmbeddingType.Rotary && !cfg.UseSplitQkvInput && !cfg.UseAttnIn;
        var entries = Enumerable.Range(0, nLayers).Select(_ => new KeyValueCacheEntry()).ToArray();
        try
        {
            Tensor? x = null;
            int copies = 0;
            var allowed = p0 > 0 ? ones(len, pos, dtype: ScalarType.Bool, device: device).tril(p0).unsqueeze(0).unsqueeze(0) : null;   // [1, 1, len, pos]
            var positions = arange(p0, pos, dtype: ScalarType.Int64, device: device).unsqueeze(0);                                       // [1, len]
            using var scope = model.Hooks(hooks.ToArray());
            for (int l = first; l < nLayers; l++)
            {
                if (entering.TryGetValue(l, out var e))
                {
                    var fresh = corrupted[Utils.GetActName("resid_pre", l)].narrow(1, p0, len).repeat(e.Cells.Length, 1, 1);
                    if (inputPatch)
                    {
                        var cleanPart = CleanPart(l);
                        for (int i = 0; i < e.Cells.Length; i++) setter(fresh.narrow(0, i * batch, batch), Relative(e.Cells[i]), cleanPart);
                    }
                    x = x is null ? fresh : cat(new[] { x, fresh }, 0);
                    copies += e.Cells.Length;
                }
                long rows = copies * batch;
                if (p0 > 0)
                    entries[l].Append(corrupted[$"blocks.{l}.attn.{keyName}"].narrow(1, 0, p0).repeat(copies, 1, 1, 1),
                                      corrupted[$"blocks.{l}.attn.hook_v"].narrow(1, 0, p0).repeat(copies, 1, 1, 1));
                if (lastQueriesOnly && l == nLayers - 1)
                {
                    x = LastBlockQueries(model, x!, wantedPositions!, p0, rows, p0 > 0 ? entries[l] : null);
                    break;
                }
                var context = p0 > 0
                    ? new AttentionContext
                    {
                        Positions = positions.expand(rows, len), PastLength = p0, CacheEntries = entries,
                        AllowedMask = allowed!.expand(rows, 1, len, pos), KernelMask = allowed.expand(rows, 1, len, pos),
                    }
                    : AttentionContext.Causal(rows, pos, device);
                x = model.blocks[l].forward(x!, context);
            }
            if (model.ln_final is { } lnf) x = lnf.forward(x!);
            if (wantedPositions is not null)
            {
                Tensor picked;                                                   // [rows, wanted, d_vocab]
                if (lastQueriesOnly) picked = model.unembed.forward(x!);
                else
                {
                    using var idx = tensor(wantedPositions.Select(p => p - p0).ToArray(), device: device);
                    picked = model.unembed.forward(x!.index_select(1, idx));
                }
                // One buffer per pass: the corrupted logits with the metric's positions overwritten for each copy in turn
                // (every copy writes the same positions, and the metric is read out before the next copy).
                using var logits = corruptedLogits.clone();
                using var at = tensor(wantedPositions, device: device);
                for (int i = 0; i < order.Length; i++)
                {
                    logits.index_copy_(1, at, picked.narrow(0, i * batch, batch));
                    results[order[i]] = MetricValue(metric, logits);
                }
                return;
            }
            var suffixLogits = model.unembed.forward(x!);                          // [rows, len, d_vocab]
            for (int i = 0; i < order.Length; i++)
            {
                var copyLogits = p0 == 0 ? suffixLogits.narrow(0, i * batch, batch)
                    : cat(new[] { corruptedLogits.narrow(1, 0, p0), suffixLogits.narrow(0, i * batch, batch) }, 1);
                results[order[i]] = MetricValue(metric, copyLogits);
            }
        }
        finally
        {
            foreach (var e in entries) e.Dispose();
        }
    }

    /// <summary>
    /// The last block for queries at <paramref name="wanted"/> (absolute positions ≥ <paramref name="p0"/>) only: keys and values
    /// from every computed position of <paramref name="x"/> [rows, pos − p0, d_model] (and the cached prefix in
    /// <paramref name="entry"/>), attention, output and MLP at the wanted positions → [rows, wanted, d_model]. The same numbers
    /// as the full block at those positions; no hooks fire.
    /// </summary>
    static Tensor LastBlockQueries(HookedTransformer model, Tensor x, long[] wanted, long p0, long rows, KeyValueCacheEntry? entry)
    {
        var cfg = model.Cfg;
        var block = model.blocks[cfg.NLayers - 1];
        var device = x.device;
        long pos = p0 + x.shape[1], d = cfg.DModel;
        int w = wanted.Length;
        using var idx = tensor(wanted.Select(p => p - p0).ToArray(), device: device);
        using var abs = tensor(wanted, device: device);
        var xq = x.index_select(1, idx);                                           // [rows, w, d_model]
        var normed = block.ln1 is null ? x : block.ln1.forward(x);
        var qIn = normed.index_select(1, idx).unsqueeze(2).expand(rows, w, cfg.NHeads, d);
        var kvIn = normed.unsqueeze(2).expand(rows, x.shape[1], cfg.EffectiveNKeyValueHeads, d);
        var allowed = (arange(pos, dtype: ScalarType.Int64, device: device).unsqueeze(0) <= abs.unsqueeze(1))   // [w, pos]: key ≤ query
            .unsqueeze(0).unsqueeze(0).expand(rows, 1, w, pos);
        var context = new AttentionContext
        {
            Positions = abs.unsqueeze(0).expand(rows, w), PastLength = p0, CacheEntry = entry, AllowedMask = allowed, KernelMask = allowed,
        };
        var attnOut = block.attn.forward(qIn, kvIn, kvIn, context);                // [rows, w, d_model]
        if (block.mlp is not { } mlp) return xq + attnOut;
        Tensor Ln2(Tensor t) => block.ln2 is null ? t : block.ln2.forward(t);
        if (cfg.ParallelAttnMlp) return xq + attnOut + mlp.forward(Ln2(xq));
        var mid = xq + attnOut;
        return mid + mlp.forward(Ln2(mid));
    }


    // ----------------------------------------------------------------------------------------------- TL's named sweeps

    static readonly string[] LayerPos = ["layer", "pos"];
    static readonly string[] LayerPosHead = ["layer", "pos", "head"];
    static readonly string[] LayerHead = ["layer", "head"];

    /// <summary>TransformerLens' <c>get_act_patch_resid_pre</c>: the residual stream at the start of each block, by position → [n_layers, pos].</summary>
    public static Tensor GetActPatchResidPre(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerPosPatchSetter, "resid_pre", LayerPos, options);

    /// <summary>TransformerLens' <c>get_act_patch_resid_mid</c>: the residual stream between attention and MLP, by position → [n_layers, pos].</summary>
    public static Tensor GetActPatchResidMid(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerPosPatchSetter, "resid_mid", LayerPos, options);

    /// <summary>The residual stream at the end of each block, by position → [n_layers, pos] (TransformerLens has no named function for it).</summary>
    public static Tensor GetActPatchResidPost(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerPosPatchSetter, "resid_post", LayerPos, options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_out</c>: each attention layer's output, by position → [n_layers, pos].</summary>
    public static Tensor GetActPatchAttnOut(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerPosPatchSetter, "attn_out", LayerPos, options);

    /// <summary>TransformerLens' <c>get_act_patch_mlp_out</c>: each MLP's output, by position → [n_layers, pos].</summary>
    public static Tensor GetActPatchMlpOut(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null)
    {
        if (model.Cfg.AttnOnly)
            throw new ArgumentException("GetActPatchMlpOut: the model is attention-only (HookedTransformerConfig.AttnOnly) and has no mlp_out; patch attn_out or resid_pre instead.", nameof(model));
        return GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerPosPatchSetter, "mlp_out", LayerPos, options);
    }

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_out_by_pos</c>: each head's output z, by position → [n_layers, pos, n_heads].</summary>
    public static Tensor GetActPatchAttnHeadOutByPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerPosHeadVectorPatchSetter, "z", LayerPosHead, options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_q_by_pos</c>: each head's queries, by position → [n_layers, pos, n_heads].</summary>
    public static Tensor GetActPatchAttnHeadQByPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerPosHeadVectorPatchSetter, "q", LayerPosHead, options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_k_by_pos</c>: each key head, by position → [n_layers, pos, n_key_value_heads].</summary>
    public static Tensor GetActPatchAttnHeadKByPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerPosHeadVectorPatchSetter, "k", LayerPosHead, options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_v_by_pos</c>: each value head, by position → [n_layers, pos, n_key_value_heads].</summary>
    public static Tensor GetActPatchAttnHeadVByPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerPosHeadVectorPatchSetter, "v", LayerPosHead, options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_pattern_by_pos</c>: each head's pattern row, by destination position → [n_layers, n_heads, dest_pos].</summary>
    public static Tensor GetActPatchAttnHeadPatternByPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerHeadPosPatternPatchSetter, "pattern", ["layer", "head_index", "dest_pos"], options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_pattern_dest_src_pos</c>: every pattern entry → [n_layers, n_heads, dest_pos, src_pos].</summary>
    public static Tensor GetActPatchAttnHeadPatternDestSrcPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerHeadDestSrcPosPatternPatchSetter, "pattern", ["layer", "head_index", "dest_pos", "src_pos"], options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_out_all_pos</c>: each head's output z at every position at once → [n_layers, n_heads].</summary>
    public static Tensor GetActPatchAttnHeadOutAllPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerHeadVectorPatchSetter, "z", LayerHead, options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_q_all_pos</c> → [n_layers, n_heads].</summary>
    public static Tensor GetActPatchAttnHeadQAllPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerHeadVectorPatchSetter, "q", LayerHead, options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_k_all_pos</c> → [n_layers, n_key_value_heads].</summary>
    public static Tensor GetActPatchAttnHeadKAllPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerHeadVectorPatchSetter, "k", LayerHead, options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_v_all_pos</c> → [n_layers, n_key_value_heads].</summary>
    public static Tensor GetActPatchAttnHeadVAllPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerHeadVectorPatchSetter, "v", LayerHead, options);

    /// <summary>TransformerLens' <c>get_act_patch_attn_head_pattern_all_pos</c>: each head's whole pattern → [n_layers, n_heads].</summary>
    public static Tensor GetActPatchAttnHeadPatternAllPos(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null) =>
        GenericActivationPatch(model, corruptedTokens, cleanCache, metric, LayerHeadPatternPatchSetter, "pattern", ["layer", "head_index"], options);

    /// <summary>Row names of the "every" results, in order: <see cref="GetActPatchBlockEvery"/>.</summary>
    public static readonly string[] BlockEveryLabels = ["resid_pre", "attn_out", "mlp_out"];

    /// <summary>Row names of <see cref="GetActPatchAttnHeadAllPosEvery"/> and <see cref="GetActPatchAttnHeadByPosEvery"/>.</summary>
    public static readonly string[] AttnHeadEveryLabels = ["output", "query", "key", "value", "pattern"];

    /// <summary>
    /// TransformerLens' <c>get_act_patch_block_every</c>: resid_pre, attn_out and mlp_out by [layer, pos] stacked → [3, n_layers, pos]
    /// (rows named by <see cref="BlockEveryLabels"/>).
    /// </summary>
    public static Tensor GetActPatchBlockEvery(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null)
    {
        using var scope = NewDisposeScope();
        return stack(new[]
        {
            GetActPatchResidPre(model, corruptedTokens, cleanCache, metric, options),
            GetActPatchAttnOut(model, corruptedTokens, cleanCache, metric, options),
            GetActPatchMlpOut(model, corruptedTokens, cleanCache, metric, options),
        }).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// TransformerLens' <c>get_act_patch_attn_head_all_pos_every</c>: z, q, k, v, pattern per head → [5, n_layers, n_heads]
    /// (rows named by <see cref="AttnHeadEveryLabels"/>). With grouped-query attention, k and v have fewer heads: their
    /// missing heads are NaN (TransformerLens pads with 0, which reads as "no effect").
    /// </summary>
    public static Tensor GetActPatchAttnHeadAllPosEvery(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null)
    {
        using var scope = NewDisposeScope();
        int h = model.Cfg.NHeads;
        return stack(new[]
        {
            GetActPatchAttnHeadOutAllPos(model, corruptedTokens, cleanCache, metric, options),
            GetActPatchAttnHeadQAllPos(model, corruptedTokens, cleanCache, metric, options),
            PadHeads(GetActPatchAttnHeadKAllPos(model, corruptedTokens, cleanCache, metric, options), h),
            PadHeads(GetActPatchAttnHeadVAllPos(model, corruptedTokens, cleanCache, metric, options), h),
            GetActPatchAttnHeadPatternAllPos(model, corruptedTokens, cleanCache, metric, options),
        }).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// TransformerLens' <c>get_act_patch_attn_head_by_pos_every</c>: z, q, k, v, pattern per head and position → [5, n_layers, pos, n_heads]
    /// (the pattern's [layer, head, dest_pos] result is transposed to [layer, pos, head], as TransformerLens does).
    /// </summary>
    public static Tensor GetActPatchAttnHeadByPosEvery(HookedTransformer model, Tensor corruptedTokens, ActivationCache cleanCache, Func<Tensor, Tensor> metric, PatchingOptions? options = null)
    {
        using var scope = NewDisposeScope();
        int h = model.Cfg.NHeads;
        return stack(new[]
        {
            GetActPatchAttnHeadOutByPos(model, corruptedTokens, cleanCache, metric, options),
            GetActPatchAttnHeadQByPos(model, corruptedTokens, cleanCache, metric, options),
            PadHeads(GetActPatchAttnHeadKByPos(model, corruptedTokens, cleanCache, metric, options), h),
            PadHeads(GetActPatchAttnHeadVByPos(model, corruptedTokens, cleanCache, metric, options), h),
            GetActPatchAttnHeadPatternByPos(model, corruptedTokens, cleanCache, metric, options).transpose(1, 2),
        }).MoveToOuterDisposeScope();
    }

    static Tensor PadHeads(Tensor t, int heads)
    {
        long have = t.shape[^1];
        if (have == heads) return t;
        var shape = t.shape.ToArray();
        shape[^1] = heads - have;
        return cat(new[] { t, full(shape, double.NaN, dtype: t.dtype) }, -1);
    }

    // ----------------------------------------------------------------------------------------------- normalization and labels

    /// <summary>
    /// (m − m_corrupted) / (m_clean − m_corrupted): 0 = as the corrupted run, 1 = as the clean run. A new tensor.
    /// </summary>
    /// <param name="results">Raw metric values from a sweep.</param>
    /// <param name="cleanMetric">The metric of the unpatched clean run.</param>
    /// <param name="corruptedMetric">The metric of the unpatched corrupted run.</param>
    public static Tensor Normalize(Tensor results, double cleanMetric, double corruptedMetric)
    {
        ArgumentNullException.ThrowIfNull(results);
        CheckSpread(cleanMetric, corruptedMetric);
        return (results - corruptedMetric) / (cleanMetric - corruptedMetric);
    }

    /// <summary>
    /// Wraps a metric so that it returns (m − m_corrupted) / (m_clean − m_corrupted) (0 = corrupted, 1 = clean), as the
    /// <c>ioi_metric</c> of TransformerLens' demos. Pass it to any sweep.
    /// </summary>
    public static Func<Tensor, Tensor> NormalizedMetric(Func<Tensor, Tensor> metric, double cleanMetric, double corruptedMetric)
    {
        ArgumentNullException.ThrowIfNull(metric);
        CheckSpread(cleanMetric, corruptedMetric);
        return logits => (metric(logits) - corruptedMetric) / (cleanMetric - corruptedMetric);
    }

    static void CheckSpread(double clean, double corrupted)
    {
        if (!double.IsFinite(clean) || !double.IsFinite(corrupted) || clean == corrupted)
            throw new ArgumentException($"Normalizing needs different, finite clean and corrupted metrics, got clean = {clean}, corrupted = {corrupted}; " +
                "choose prompts whose answers differ (the metric must tell the two runs apart).");
    }

    /// <summary>Head labels "L{layer}H{head}" in layer-major order (TransformerLens' demos), n_layers × n_heads of them.</summary>
    public static string[] HeadLabels(int nLayers, int nHeads) =>
        Enumerable.Range(0, nLayers).SelectMany(l => Enumerable.Range(0, nHeads).Select(h => $"L{l}H{h}")).ToArray();

    /// <summary>Layer labels "L0", "L1", ...</summary>
    public static string[] LayerLabels(int nLayers) => Enumerable.Range(0, nLayers).Select(l => $"L{l}").ToArray();

    /// <summary>
    /// Position labels for a [.., pos] plot: "{token}_{index}" from the string tokens of one prompt (as TransformerLens'
    /// patching demo), or "0", "1", ... when <paramref name="strTokens"/> is null (give <paramref name="pos"/> then).
    /// </summary>
    public static string[] PositionLabels(IReadOnlyList<string>? strTokens, int pos = -1)
    {
        if (strTokens is not null) return strTokens.Select((t, i) => $"{t}_{i}").ToArray();
        if (pos < 0) throw new ArgumentException("PositionLabels: pass the prompt's string tokens, or the number of positions when there are none.", nameof(pos));
        return Enumerable.Range(0, pos).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
    }
}
