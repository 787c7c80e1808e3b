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
    /// <c>start_at_layer</c>) instead of re-running the earlier, unchanged layers (default true).
    /// </summary>
    public bool UseStartAtLayer { get; init; } = true;

    /// <summary>
    /// Batched [layer, pos] and [layer, pos, head] sweeps without padding: a patch at position p leaves every earlier position
    /// as in the corrupted run (attention is causal), so each pass computes only positions from the smallest patched one on,
    /// reading the earlier keys and values from the corrupted run (default true).
    /// </summary>
    public bool SkipUnchangedPrefix { get; init; } = true;

    /// <summary>
    /// With <see cref="SkipUnchangedPrefix"/>: the positions of one layer are split into this many groups, each run from its
    /// first position (more groups skip more work but make smaller batches; default 4).
    /// </summary>
    public int PositionGroups { get; init; } = 4;

    /// <summary>
    /// The positions the metric reads (negative counts from the end, e.g. [-1] for a last-token logit difference), or null
    /// (default) for all. Batched sweeps then unembed only these positions; the logits the metric gets hold the corrupted
    /// run's values elsewhere. Checked once: a metric that reads another position fails with an error. Ignored with an
    /// <see cref="AttentionMask"/> (padded batches always unembed every position).
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
        foreach (var layer in layers)
        {
            var cellIds = Enumerable.Range(0, cells.Count).Where(i => cells[i][0] == layer).ToArray();
            var clean = cleanCache[names[layer]];
            if (ownRunner)
            {
                foreach (var chunk in PassChunks(cells, cellIds, suffix ? Math.Max(1, options.PositionGroups) : 1, (int)pos, copiesPerPass))
                {
                    using var scope = NewDisposeScope();
                    long p0 = suffix ? chunk.Min(c => cells[c][1]) : 0;
                    var logits = RunSuffix(model, corruptedCache, corruptedLogits, clean, setter, names[layer], layer, cells, chunk, p0, batch, keyName, metricPositions);
                    for (int i = 0; i < chunk.Length; i++) results[chunk[i]] = MetricValue(metric, logits[i]);
                    done += chunk.Length;
                    options.Progress?.Invoke(done, cells.Count);
                }
                continue;
            }
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

    /// <summary>Cells of one layer in passes: sorted by position, split into position groups, each at most <paramref name="copies"/> cells.</summary>
    static IEnumerable<int[]> PassChunks(IReadOnlyList<int[]> cells, int[] cellIds, int groups, int pos, int copies)
    {
        var sorted = cellIds.OrderBy(c => cells[c].Length > 1 ? cells[c][1] : 0).ToArray();
        int width = (pos + groups - 1) / groups;
        foreach (var group in sorted.GroupBy(c => groups == 1 ? 0 : cells[c][1] / width))
        {
            var ids = group.ToArray();
            for (int start = 0; start < ids.Length; start += copies) yield return ids.Skip(start).Take(copies).ToArray();
        }
    }

    /// <summary>
    /// One batched pass over copies of the corrupted batch from <paramref name="layer"/> on, computing positions
    /// <paramref name="p0"/>… only (earlier keys and values from the corrupted run), with copy i patched at cell
    /// <paramref name="chunk"/>[i]. Returns each copy's full logits [batch, pos, d_vocab]: the corrupted run's before
    /// <paramref name="p0"/> (and outside <paramref name="metricPositions"/> when given).
    /// </summary>
    static Tensor[] RunSuffix(HookedTransformer model, ActivationCache corrupted, Tensor corruptedLogits, Tensor clean, PatchSetter setter,
        string hookName, int layer, IReadOnlyList<int[]> cells, int[] chunk, long p0, long batch, string keyName, long[]? metricPositions)
    {
        int k = chunk.Length, nLayers = model.Cfg.NLayers;
        long pos = corruptedLogits.shape[1], len = pos - p0, rows = k * batch;
        var device = corruptedLogits.device;
        var entries = Enumerable.Range(0, nLayers).Select(_ => new KeyValueCacheEntry()).ToArray();
        try
        {
            AttentionContext context;
            if (p0 > 0)
            {
                for (int l = layer; l < nLayers; l++)
                    entries[l].Append(corrupted[$"blocks.{l}.attn.{keyName}"].narrow(1, 0, p0).repeat(k, 1, 1, 1),
                                      corrupted[$"blocks.{l}.attn.hook_v"].narrow(1, 0, p0).repeat(k, 1, 1, 1));
                var allowed = ones(len, p0 + len, dtype: ScalarType.Bool, device: device).tril(p0).unsqueeze(0).unsqueeze(0).expand(rows, 1, len, p0 + len);
                context = new AttentionContext
                {
                    Positions = arange(p0, pos, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(rows, len),
                    PastLength = p0, CacheEntries = entries, AllowedMask = allowed, KernelMask = allowed,
                };
            }
            else context = AttentionContext.Causal(rows, pos, device);
            var cleanPart = p0 == 0 ? clean : clean.narrow(1, p0, len);
            Func<Tensor, HookPoint, Tensor?> hook = (x, _) =>
            {
                var y = x.clone();
                for (int i = 0; i < k; i++)
                {
                    var index = (int[])cells[chunk[i]].Clone();
                    if (index.Length > 1) index[1] -= (int)p0;                 // positions relative to the computed suffix
                    setter(y.narrow(0, i * batch, batch), index, cleanPart);
                }
                return y;
            };
            var x = corrupted[Utils.GetActName("resid_pre", layer)].narrow(1, p0, len).repeat(k, 1, 1);
            using (model.Hooks((hookName, hook)))
                for (int l = layer; l < nLayers; l++) x = model.blocks[l].forward(x, context);
            if (model.ln_final is { } lnf) x = lnf.forward(x);
            var result = new Tensor[k];
            if (metricPositions is not null)
            {
                var wantedPositions = metricPositions.Where(p => p >= p0).ToArray();
                Tensor? picked = null;
                if (wantedPositions.Length > 0)
                {
                    using var idx = tensor(wantedPositions.Select(p => p - p0).ToArray(), device: device);
                    picked = model.unembed.forward(x.index_select(1, idx));         // [rows, wanted, d_vocab]
                }
                using var at = tensor(wantedPositions, device: device);
                for (int i = 0; i < k; i++)
                {
                    var logits = corruptedLogits.clone();
                    if (picked is not null) logits.index_copy_(1, at, picked.narrow(0, i * batch, batch));
                    result[i] = logits;
                }
                return result;
            }
            var suffixLogits = model.unembed.forward(x);                           // [rows, len, d_vocab]
            for (int i = 0; i < k; i++)
                result[i] = p0 == 0 ? suffixLogits.narrow(0, i * batch, batch)
                    : cat(new[] { corruptedLogits.narrow(1, 0, p0), suffixLogits.narrow(0, i * batch, batch) }, 1);
            return result;
        }
        finally
        {
            foreach (var e in entries) e.Dispose();
        }
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
