using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

/// <summary>
/// Activations recorded by <see cref="HookedTransformer.RunWithCache"/>, keyed by full hook name, with
/// TransformerLens-style analysis helpers (residual decomposition, per-head results, logit attribution).
/// Dispose it to free the tensors it holds.
/// </summary>
/// <remarks>
/// Helpers that return a stack of residual-stream components return <c>(Tensor Stack, string[] Labels)</c>:
/// the stack is [components, batch, pos, d_model] and <c>Labels[i]</c> names component i
/// (<c>"embed"</c>, <c>"pos_embed"</c>, <c>"0_attn_out"</c>, <c>"2_mlp_out"</c>, <c>"L0H3"</c>, <c>"1_pre"</c>, ...).
/// Results are new tensors owned by the caller.
/// </remarks>
public sealed class ActivationCache : IDisposable
{
    readonly Dictionary<string, Tensor> _store;
    bool _disposed;

    /// <summary>Wraps recorded activations. The cache takes ownership of the tensors.</summary>
    public ActivationCache(Dictionary<string, Tensor> store, HookedTransformer model)
    {
        _store = store;
        Model = model;
    }

    /// <summary>The model that produced the activations.</summary>
    public HookedTransformer Model { get; }

    /// <summary>The cached hook names.</summary>
    public IReadOnlyCollection<string> Keys => _store.Keys;

    /// <summary>Number of cached activations.</summary>
    public int Count => _store.Count;

    /// <summary>Whether an activation is cached under this full name or shorthand.</summary>
    public bool Contains(string name) => _store.ContainsKey(name) || _store.ContainsKey(Utils.GetActName(name));

    /// <summary>Activation by full name (<c>blocks.0.attn.hook_pattern</c>) or shorthand (<c>pattern0</c>, <c>embed</c>).</summary>
    public Tensor this[string name] => Get(name);

    /// <summary>Activation by short name and layer: <c>cache["pattern", 0]</c>; a negative layer counts from the end (<c>cache["pattern", -1]</c> is the last layer), as in TransformerLens.</summary>
    public Tensor this[string name, int layer] => Get(Utils.GetActName(name, ResolveLayer(layer)));

    /// <summary>Activation by short name, layer and layer type: <c>cache["normalized", 1, "ln2"]</c> (negative layers count from the end).</summary>
    public Tensor this[string name, int layer, string layerType] => Get(Utils.GetActName(name, ResolveLayer(layer), layerType));

    int ResolveLayer(int layer)
    {
        int l = layer < 0 ? NLayers + layer : layer;
        if (l < 0 || l >= NLayers)
            throw new ArgumentOutOfRangeException(nameof(layer), $"Layer {layer} is out of range for a model with {NLayers} layers: use 0..{NLayers - 1}, or -1..-{NLayers} to count from the end.");
        return l;
    }

    /// <summary>
    /// A stack-end layer argument as TransformerLens reads it: null or -1 mean n_layers (the unembed input); other negative
    /// values count from the end; the result must lie in [<paramref name="min"/>, n_layers].
    /// </summary>
    int ResolveUpTo(int? layer, int min, string what)
    {
        int l = layer is null or -1 ? NLayers : layer.Value < 0 ? NLayers + 1 + layer.Value : layer.Value;
        if (l < min || l > NLayers)
            throw new ArgumentOutOfRangeException(nameof(layer), $"{what}: layer {layer} must be in [{min}, {NLayers}] (n_layers, -1 or null mean the final residual).");
        return l;
    }

    Tensor Get(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_store.TryGetValue(name, out var t)) return t;
        var full = Utils.GetActName(name);
        if (_store.TryGetValue(full, out t)) return t;
        var valid = full.EndsWith(".attn.hook_result", StringComparison.Ordinal) && Model.HookNames.Contains(full)
            ? $"'{full}' (per-head outputs) is cached only with UseAttnResult, as in TransformerLens: call model.SetUseAttnResult(true) " +
              "before RunWithCache, or name it in the namesFilter; StackHeadResults computes it from hook_z otherwise."
            : Model.HookNames.Contains(full)
            ? $"'{full}' is a valid hook name but was not cached: widen the namesFilter passed to RunWithCache."
            : $"Closest cached names: {string.Join(", ", SafetyNotebooks.Runtime.NameSuggestions.Closest(name, _store.Keys, 5))}.";
        throw new KeyNotFoundException($"Activation '{name}' is not in the cache. {valid}");
    }

    int NLayers => Model.Cfg.NLayers;

    /// <summary>
    /// Whether the activations have a leading batch dimension (true after <see cref="HookedTransformer.RunWithCache"/>;
    /// false after <see cref="RemoveBatchDim"/>).
    /// </summary>
    public bool HasBatchDim { get; private set; } = true;

    /// <summary>
    /// Drops the batch dimension of every activation (the cache must come from a batch of one), as TransformerLens'
    /// <c>remove_batch_dim</c>: residual stacks then are [components, pos, d_model]. Returns this cache.
    /// </summary>
    public ActivationCache RemoveBatchDim()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!HasBatchDim) throw new InvalidOperationException("RemoveBatchDim was already called on this cache: it has no batch dimension left.");
        var wide = _store.FirstOrDefault(kv => kv.Value.dim() == 0 || kv.Value.shape[0] != 1);
        if (wide.Key is not null)
            throw new InvalidOperationException($"RemoveBatchDim needs a batch of one, but '{wide.Key}' has shape [{string.Join(", ", wide.Value.shape)}]. " +
                "Run the model on a single sequence, or select one with e.g. cache[name][0].");
        foreach (var key in _store.Keys.ToList())
        {
            var old = _store[key];
            _store[key] = old.squeeze(0).DetachFromDisposeScope();
            old.Dispose();
        }
        HasBatchDim = false;
        return this;
    }

    /// <summary>Applies <paramref name="index"/> to dimension <paramref name="dim"/> (negative counts from the end); null leaves it.</summary>
    static Tensor IndexDim(Tensor t, TensorIndex? index, int dim)
    {
        if (index is null) return t;
        int d = dim < 0 ? (int)t.dim() + dim : dim;
        var ix = Enumerable.Repeat(TensorIndex.Colon, d).Append(index.Value).ToArray();
        return t.index(ix);
    }

    static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";

    /// <summary>
    /// The residual stream at the start of each layer up to <paramref name="layer"/> (default: all layers and the final
    /// residual), [components, batch, pos, d_model]. Labels: <c>"0_pre"</c>, <c>"0_mid"</c> (if <paramref name="inclMid"/>), ..., <c>"final_post"</c>.
    /// </summary>
    /// <param name="layer">Number of layers to include; <c>n_layers</c>, -1 or null (default) also add the final resid_post.</param>
    /// <param name="inclMid">Also include resid_mid of each layer.</param>
    /// <param name="applyLn">
    /// Normalize the stack as the layer it feeds would. For the final residual (logit lens) each component is normalized
    /// with its own statistics by the full <c>ln_final</c> (weight and bias included), as TransformerLens 3 does
    /// (<c>recompute_ln</c>); for an inner layer, <see cref="ApplyLnToStack"/> with the cached scale is used.
    /// </param>
    /// <param name="posSlice">Positions to keep (e.g. <c>TensorIndex.Single(-1)</c>); null keeps all.</param>
    /// <param name="mlpInput">Also include resid_mid of <paramref name="layer"/> (the MLP's input) and use ln2's scale.</param>
    public (Tensor Stack, string[] Labels) AccumulatedResid(int? layer = null, bool inclMid = false, bool applyLn = false, TensorIndex? posSlice = null, bool mlpInput = false)
    {
        int upTo = ResolveUpTo(layer, 0, nameof(AccumulatedResid));
        if (mlpInput && upTo == NLayers) throw new ArgumentException("mlpInput needs a layer below n_layers: the final residual feeds the unembed, not an MLP.", nameof(mlpInput));
        var parts = new List<Tensor>();
        var labels = new List<string>();
        for (int l = 0; l <= upTo; l++)
        {
            if (l == NLayers)
            {
                parts.Add(this["resid_post", NLayers - 1]); labels.Add("final_post");
                continue;
            }
            parts.Add(this["resid_pre", l]); labels.Add($"{l}_pre");
            if (!Model.Cfg.AttnOnly && ((inclMid && l < upTo) || (mlpInput && l == upTo)))
            {
                parts.Add(this["resid_mid", l]); labels.Add($"{l}_mid");
            }
        }
        using var scope = NewDisposeScope();
        var stackT = stack(parts.Select(p => IndexDim(p, posSlice, -2)).ToArray());   // [components, batch, pos, d_model]
        if (applyLn)
        {
            if (upTo == NLayers && Model.ln_final is { } lnf)
                using (no_grad()) stackT = lnf.Apply(stackT);
            else
                stackT = ApplyLnToStack(stackT, upTo, mlpInput, posSlice);
        }
        return (stackT.MoveToOuterDisposeScope(), labels.ToArray());
    }

    /// <summary>
    /// Splits the residual stream before <paramref name="layer"/> (default: the final residual) into the outputs of the
    /// components that wrote it: <c>"embed"</c>, <c>"pos_embed"</c>, then <c>"{l}_attn_out"</c> and <c>"{l}_mlp_out"</c>
    /// per layer. The components sum to <c>resid_pre</c> of <paramref name="layer"/> (or the final <c>resid_post</c>).
    /// </summary>
    /// <param name="layer">Decompose the input of this layer; null, -1 or n_layers means the final residual.</param>
    /// <param name="mode">"all", "attn" (only attention outputs) or "mlp" (only MLP outputs).</param>
    /// <param name="applyLn">Apply the cached normalization of the layer the stack feeds (see <see cref="ApplyLnToStack"/>).</param>
    /// <param name="inclEmbeds">Include the embedding components.</param>
    /// <param name="mlpInput">Decompose the MLP's input of <paramref name="layer"/> (adds that layer's attn_out; uses ln2).</param>
    /// <param name="posSlice">Positions to keep; null keeps all.</param>
    public (Tensor Stack, string[] Labels) DecomposeResid(int? layer = null, string mode = "all", bool applyLn = false, bool inclEmbeds = true,
        bool mlpInput = false, TensorIndex? posSlice = null)
    {
        int upTo = ResolveUpTo(layer, 0, nameof(DecomposeResid));
        if (mode is not ("all" or "attn" or "mlp")) throw new ArgumentException($"mode must be \"all\", \"attn\" or \"mlp\", not \"{mode}\".", nameof(mode));
        if (mlpInput && upTo == NLayers) throw new ArgumentException("mlpInput needs a layer below n_layers: the final residual feeds the unembed, not an MLP.", nameof(mlpInput));
        var parts = new List<Tensor>();
        var labels = new List<string>();
        if (inclEmbeds)
        {
            parts.Add(this["embed"]); labels.Add("embed");
            if (Model.hook_pos_embed is not null)
            {
                var pe = this["pos_embed"];
                parts.Add(pe.expand(this["embed"].shape)); labels.Add("pos_embed");
            }
        }
        for (int l = 0; l < upTo; l++)
        {
            if (mode != "mlp") { parts.Add(this["attn_out", l]); labels.Add($"{l}_attn_out"); }
            if (mode != "attn" && !Model.Cfg.AttnOnly) { parts.Add(this["mlp_out", l]); labels.Add($"{l}_mlp_out"); }
        }
        if (mlpInput && mode != "mlp") { parts.Add(this["attn_out", upTo]); labels.Add($"{upTo}_attn_out"); }
        if (parts.Count == 0) throw new InvalidOperationException("No components selected: include embeddings or at least one layer.");
        using var scope = NewDisposeScope();
        var stackT = stack(parts.Select(p => IndexDim(p, posSlice, -2)).ToArray());  // [components, batch, pos, d_model]
        if (applyLn) stackT = ApplyLnToStack(stackT, upTo, mlpInput, posSlice);
        return (stackT.MoveToOuterDisposeScope(), labels.ToArray());
    }

    /// <summary>
    /// Per-head outputs (<c>hook_result</c>) of every layer before <paramref name="layer"/> (default all), stacked as
    /// [layer·head, batch, pos, d_model] with labels <c>"L{l}H{h}"</c>. Uses cached <c>hook_result</c>, or computes
    /// it from cached <c>hook_z</c> and the model's <c>W_O</c>. The head results plus <c>b_O</c> sum to <c>attn_out</c>.
    /// </summary>
    /// <param name="layer">Heads of layers strictly before this one; null, -1 or n_layers mean all.</param>
    /// <param name="applyLn">Apply the cached normalization of the layer the stack feeds (see <see cref="ApplyLnToStack"/>).</param>
    /// <param name="posSlice">Positions to keep; null keeps all.</param>
    /// <param name="inclRemainder">Append a <c>"remainder"</c> component: resid_pre of <paramref name="layer"/> minus the heads.</param>
    public (Tensor Stack, string[] Labels) StackHeadResults(int? layer = null, bool applyLn = false, TensorIndex? posSlice = null, bool inclRemainder = false)
    {
        int upTo = ResolveUpTo(layer, 0, nameof(StackHeadResults));
        var parts = new List<Tensor>();
        var labels = new List<string>();
        using var scope = NewDisposeScope();
        for (int l = 0; l < upTo; l++)
        {
            Tensor result;                                                      // [batch, pos, head, d_model]
            var rName = Utils.GetActName("result", l);
            if (_store.TryGetValue(rName, out var r)) result = r;
            else if (_store.TryGetValue(Utils.GetActName("z", l), out var z))
                using (no_grad()) result = einsum("...hd,hdm->...hm", z, Model.blocks[l].attn.W_O);
            else
                throw new KeyNotFoundException($"StackHeadResults needs '{rName}' or '{Utils.GetActName("z", l)}' in the cache; include one in RunWithCache's namesFilter.");
            parts.Add(IndexDim(result, posSlice, -3).movedim(new long[] { -2 }, new long[] { 0 }));              // [head, batch, pos, d_model]
            for (int h = 0; h < Model.Cfg.NHeads; h++) labels.Add($"L{l}H{h}");
        }
        return FinishStack(parts, labels, upTo, inclRemainder, applyLn, posSlice);
    }

    /// <summary>
    /// Stacks one activation over the layers before <paramref name="layer"/> (default all): <c>StackActivation("pattern")</c>
    /// is [n_layers, batch, head, q, k]. As TransformerLens' <c>stack_activation</c>.
    /// </summary>
    /// <param name="activationName">Short activation name, e.g. <c>"resid_pre"</c>, <c>"pattern"</c>, <c>"scale"</c>.</param>
    /// <param name="layer">Layers strictly before this one; null, -1 or n_layers mean all.</param>
    /// <param name="sublayerType">Layer type for <see cref="Utils.GetActName"/> when the name alone is ambiguous (e.g. <c>"ln2"</c>).</param>
    public Tensor StackActivation(string activationName, int? layer = null, string? sublayerType = null)
    {
        int upTo = ResolveUpTo(layer, 1, nameof(StackActivation));
        var parts = Enumerable.Range(0, upTo).Select(l => Get(Utils.GetActName(activationName, l, sublayerType))).ToArray();
        return stack(parts);
    }

    /// <summary>
    /// Each neuron's contribution to the residual stream in layer <paramref name="layer"/>: <c>post[..., n] · W_out[n]</c>,
    /// [batch, pos, neuron, d_model] (memory-heavy: batch·pos·d_mlp·d_model floats). The neurons plus <c>b_out</c> sum to <c>mlp_out</c>.
    /// </summary>
    /// <param name="layer">The layer (negative counts from the end).</param>
    /// <param name="neuronSlice">Neurons to keep (e.g. <c>TensorIndex.Slice(0, 10)</c>); null keeps all.</param>
    /// <param name="posSlice">Positions to keep; null keeps all.</param>
    public Tensor GetNeuronResults(int layer, TensorIndex? neuronSlice = null, TensorIndex? posSlice = null)
    {
        int l = ResolveLayer(layer);
        var mlp = Model.blocks[l].mlp ?? throw new InvalidOperationException("This model is attention-only: it has no MLP neurons.");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var acts = IndexDim(IndexDim(this["post", l], posSlice, -2), neuronSlice, -1);   // [batch, pos, neuron]
        var wOut = IndexDim(mlp.W_out, neuronSlice, 0);                                  // [neuron, d_model]
        if (acts.shape[^1] != wOut.shape[0])
            throw new ArgumentException($"neuronSlice must keep the neuron dimension (use a slice or index tensor, not a single index); got activations {Shape(acts)} and W_out {Shape(wOut)}.", nameof(neuronSlice));
        return (acts.unsqueeze(-1) * wOut).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Every neuron's contribution (see <see cref="GetNeuronResults"/>) of the layers before <paramref name="layer"/>, stacked as
    /// [layer·neuron, batch, pos, d_model] with labels <c>"L{l}N{n}"</c>, as TransformerLens' <c>stack_neuron_results</c>.
    /// </summary>
    /// <param name="layer">Neurons of layers strictly before this one; null, -1 or n_layers mean all.</param>
    /// <param name="posSlice">Positions to keep; null keeps all.</param>
    /// <param name="neuronSlice">Neurons to keep in each layer (a slice or index tensor); null keeps all.</param>
    /// <param name="inclRemainder">Append a <c>"remainder"</c> component: resid_pre of <paramref name="layer"/> minus the neurons.</param>
    /// <param name="applyLn">Apply the cached normalization of the layer the stack feeds (see <see cref="ApplyLnToStack"/>).</param>
    public (Tensor Stack, string[] Labels) StackNeuronResults(int? layer = null, TensorIndex? posSlice = null, TensorIndex? neuronSlice = null,
        bool inclRemainder = false, bool applyLn = false)
    {
        int upTo = ResolveUpTo(layer, 0, nameof(StackNeuronResults));
        if (Model.Cfg.AttnOnly) throw new InvalidOperationException("StackNeuronResults: this model is attention-only and has no MLP neurons.");
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        var labels = new List<string>();
        var neuronIds = IndexDim(arange(Model.Cfg.DMlp, ScalarType.Int64), neuronSlice, 0).data<long>().ToArray();
        for (int l = 0; l < upTo; l++)
        {
            parts.Add(GetNeuronResults(l, neuronSlice, posSlice).movedim(new long[] { -2 }, new long[] { 0 }));          // [neuron, batch, pos, d_model]
            labels.AddRange(neuronIds.Select(n => $"L{l}N{n}"));
        }
        return FinishStack(parts, labels, upTo, inclRemainder, applyLn, posSlice);
    }

    /// <summary>
    /// The residual stream entering <paramref name="layer"/> (default: the unembed) split into every head, every neuron (or
    /// every MLP layer), the embeddings and the accumulated biases, as TransformerLens' <c>get_full_resid_decomposition</c>:
    /// heads (<c>"L0H0"</c>...), neurons (<c>"L0N0"</c>...) or <c>"{l}_mlp_out"</c>, <c>"embed"</c>, <c>"pos_embed"</c>, <c>"bias"</c>.
    /// The components sum to that residual stream.
    /// </summary>
    /// <param name="layer">The layer whose input is decomposed; null, -1 or n_layers mean the final residual.</param>
    /// <param name="mlpInput">Decompose the MLP's input of <paramref name="layer"/> (adds its heads and b_O).</param>
    /// <param name="expandNeurons">One component per neuron (true) or per MLP layer (false; its b_out then stays inside mlp_out).</param>
    /// <param name="applyLn">Apply the cached normalization of the layer the stack feeds (see <see cref="ApplyLnToStack"/>).</param>
    /// <param name="posSlice">Positions to keep; null keeps all.</param>
    public (Tensor Stack, string[] Labels) GetFullResidDecomposition(int? layer = null, bool mlpInput = false, bool expandNeurons = true,
        bool applyLn = false, TensorIndex? posSlice = null)
    {
        int upTo = ResolveUpTo(layer, 0, nameof(GetFullResidDecomposition));
        if (mlpInput && upTo == NLayers) throw new ArgumentException("mlpInput needs a layer below n_layers: the final residual feeds the unembed, not an MLP.", nameof(mlpInput));
        using var scope = NewDisposeScope();
        var (heads, labelsArr) = StackHeadResults(upTo + (mlpInput ? 1 : 0), posSlice: posSlice);
        var parts = new List<Tensor> { heads };
        var labels = labelsArr.ToList();
        if (!Model.Cfg.AttnOnly && upTo > 0)
        {
            var (mlps, mlpLabels) = expandNeurons
                ? StackNeuronResults(upTo, posSlice)
                : DecomposeResid(upTo, "mlp", inclEmbeds: false, posSlice: posSlice);
            parts.Add(mlps); labels.AddRange(mlpLabels);
        }
        var embed = IndexDim(this["embed"], posSlice, -2);
        parts.Add(embed.unsqueeze(0)); labels.Add("embed");
        if (Model.hook_pos_embed is not null)
        {
            parts.Add(IndexDim(this["pos_embed"], posSlice, -2).expand(embed.shape).unsqueeze(0)); labels.Add("pos_embed");
        }
        using (no_grad())
            parts.Add(Model.AccumulatedBias(upTo, mlpInput, includeMlpBiases: expandNeurons).expand(embed.shape).unsqueeze(0));
        labels.Add("bias");
        var stackT = cat(parts.ToArray(), 0);
        if (applyLn) stackT = ApplyLnToStack(stackT, upTo, mlpInput, posSlice);
        return (stackT.MoveToOuterDisposeScope(), labels.ToArray());
    }

    /// <summary>
    /// Treats a stack of residual components [components, batch, pos, d_model] as the input of layer <paramref name="layer"/>
    /// (null, -1 or n_layers: the final norm) and applies that layer's normalization linearly, with the cached
    /// <c>hook_scale</c> of the whole residual stream: centers each component (LayerNorm), divides by the scale and, when the
    /// norm still has its weight (a raw model, see <see cref="HookedTransformer.EnableCompatibilityMode"/>), multiplies by it.
    /// The norm's bias is not added (it belongs to no component): on a raw model
    /// <c>Σ components → ApplyLnToStack + b = the norm's output</c>; after compatibility mode the weight and bias live in
    /// the next weights (W_U/b_U, W_Q..., W_in/b_in) and the result equals TransformerLens' <c>apply_ln_to_stack</c>.
    /// </summary>
    /// <param name="residualStack">[components, batch, pos, d_model], or with positions/batch already selected (see <paramref name="posSlice"/>).</param>
    /// <param name="layer">The layer whose input the stack is; null, -1 or n_layers mean the final norm.</param>
    /// <param name="mlpInput">Use ln2 (the MLP's input) instead of ln1.</param>
    /// <param name="posSlice">
    /// The positions the stack holds, if not all (e.g. <c>TensorIndex.Single(-1)</c> for a [c, batch, d_model] stack of the last
    /// position): applied to the cached scale only, as in TransformerLens. The stack's batch/position shape must then equal the
    /// sliced scale's; anything else is an error rather than a silent broadcast.
    /// </param>
    /// <param name="batchSlice">Batch entries to keep: applied to the stack's dimension 1 and to the scale.</param>
    public Tensor ApplyLnToStack(Tensor residualStack, int? layer = null, bool mlpInput = false, TensorIndex? posSlice = null, TensorIndex? batchSlice = null)
    {
        int l = ResolveUpTo(layer, 0, nameof(ApplyLnToStack));
        bool final = l == NLayers;
        if (final && mlpInput) throw new ArgumentException("mlpInput must be false for the final norm (it feeds the unembed, not an MLP).", nameof(mlpInput));
        var norm = final ? Model.ln_final : mlpInput ? Model.blocks[l].ln2 : Model.blocks[l].ln1;
        if (norm is null) return residualStack.alias();
        var scaleName = final ? "ln_final.hook_scale" : Utils.GetActName("scale", l, mlpInput ? "ln2" : "ln1");
        if (!_store.TryGetValue(scaleName, out var scale))
            throw new KeyNotFoundException($"ApplyLnToStack needs '{scaleName}' in the cache; include it in RunWithCache's namesFilter.");
        using var scope = NewDisposeScope();
        if (!final && !mlpInput && scale.dim() == (HasBatchDim ? 4 : 3))            // ln1 ran on per-head inputs (split QKV / attn_in)
            scale = SplitInputScale(l, scale);                                     // [batch, pos, head, 1] → [batch, pos, 1]
        scale = IndexDim(scale, posSlice, -2);                                     // [batch, pos, 1] → e.g. [batch, 1]
        if (HasBatchDim && batchSlice is not null)
        {
            scale = IndexDim(scale, batchSlice, 0);
            residualStack = IndexDim(residualStack, batchSlice, 1);
        }
        var expected = scale.shape[..^1];
        if (residualStack.dim() < 2 || !residualStack.shape[1..^1].SequenceEqual(expected) || residualStack.shape[^1] != Model.Cfg.DModel)
            throw new ArgumentException(
                $"ApplyLnToStack: the stack has shape {Shape(residualStack)} but '{scaleName}' (after posSlice/batchSlice) is {Shape(scale)}, " +
                $"so the stack must be [components, {string.Join(", ", expected)}, {Model.Cfg.DModel}]. If the stack holds only some positions " +
                "(e.g. the last), pass the same selection as posSlice (e.g. posSlice: TensorIndex.Single(-1)).", nameof(residualStack));
        var x = norm.Centers ? residualStack - residualStack.mean(new long[] { -1 }, keepdim: true) : residualStack;
        x = x / scale;                                                              // scale [..., 1] broadcasts over d_model only
        if (norm.w is { } w) x = x * w;
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// With split attention inputs (<see cref="HookedTransformerConfig.UseSplitQkvInput"/> / <see cref="HookedTransformerConfig.UseAttnIn"/>)
    /// ln1 normalizes a per-head copy of the residual stream, so its cached <c>hook_scale</c> is [batch, pos, head, 1] and holds
    /// only the last of its firings (the values' input). It is the scale of the whole residual stream only when every per-head
    /// input still equals <c>hook_resid_pre</c>; this checks that on the cached inputs and returns head 0's scale [batch, pos, 1],
    /// and refuses (naming the hook) when an input is missing from the cache or was edited by a hook.
    /// (TransformerLens slices such a scale's head dimension as if it were positions.)
    /// </summary>
    Tensor SplitInputScale(int layer, Tensor scale)
    {
        bool attnIn = Model.Cfg.UseAttnIn || (_store.ContainsKey($"blocks.{layer}.hook_attn_in") && !_store.ContainsKey($"blocks.{layer}.hook_q_input"));
        string flag = attnIn ? "UseAttnIn" : "UseSplitQkvInput";
        string setter = attnIn ? "SetUseAttnIn(false)" : "SetUseSplitQkvInput(false)";
        var inputs = attnIn ? new[] { "hook_attn_in" } : new[] { "hook_q_input", "hook_k_input", "hook_v_input" };
        var residName = $"blocks.{layer}.hook_resid_pre";
        foreach (var name in inputs.Select(n => $"blocks.{layer}.{n}").Prepend(residName))
            if (!_store.ContainsKey(name))
                throw new KeyNotFoundException($"ApplyLnToStack: layer {layer}'s ln1 input is split per head ({flag}), so its cached scale is per head and " +
                    $"needs '{name}' in the cache to check that every head normalized the same residual stream: include it in RunWithCache's namesFilter, or call {setter} before RunWithCache.");
        var resid = _store[residName].unsqueeze(-2);                                // [batch, pos, 1, d_model]
        foreach (var name in inputs.Select(n => $"blocks.{layer}.{n}"))
        {
            var perHead = _store[name];                                             // [batch, pos, head, d_model]
            if (perHead.ne(resid).any().item<bool>())
                throw new InvalidOperationException($"ApplyLnToStack: '{name}' differs from '{residName}' (a hook edited a head's input), so layer {layer}'s ln1 " +
                    $"scale differs per head and no single scale applies to the stack: rerun RunWithCache without that edit (or with {setter}), or normalize each head's input yourself.");
        }
        return scale.select(-2, 0);                                                 // every head's scale is the stream's: [batch, pos, 1]
    }

    /// <summary>
    /// Logit attribution (TransformerLens' <c>logit_attrs</c>): applies the final norm to the stack with
    /// <see cref="ApplyLnToStack"/> (cached scale, and the norm's weight on a raw model), then takes the dot product of
    /// each component with the unembedding direction of <paramref name="tokens"/> (minus that of
    /// <paramref name="incorrectTokens"/> if given). Pass the raw components (e.g. <see cref="DecomposeResid"/> without applyLn).
    /// <paramref name="residual"/>.Stack is [components, *tokens.shape, d_model] (e.g. [c, batch, pos, d] with tokens
    /// [batch, pos], or [c, batch, d] with tokens [batch] and <paramref name="posSlice"/> naming the position); the result
    /// is [components, *tokens.shape]. Summed over components it is the logit (difference) minus the constant terms
    /// <c>b_U</c> and (raw model) <c>ln_final.b @ W_U</c>.
    /// </summary>
    /// <param name="residual">The stack and its labels (from <see cref="DecomposeResid"/>, <see cref="StackHeadResults"/>, ...).</param>
    /// <param name="tokens">Token ids whose logits to attribute; shape = the stack's batch/position shape.</param>
    /// <param name="incorrectTokens">If given (same shape as <paramref name="tokens"/>), attribute the logit difference.</param>
    /// <param name="posSlice">Positions the stack holds (see <see cref="ApplyLnToStack"/>).</param>
    /// <param name="batchSlice">Batch entries to keep (see <see cref="ApplyLnToStack"/>).</param>
    public (Tensor Attrs, string[] Labels) LogitAttrs((Tensor Stack, string[] Labels) residual, Tensor tokens, Tensor? incorrectTokens = null,
        TensorIndex? posSlice = null, TensorIndex? batchSlice = null)
    {
        if (incorrectTokens is not null && !incorrectTokens.shape.SequenceEqual(tokens.shape))
            throw new ArgumentException($"LogitAttrs: tokens {Shape(tokens)} and incorrectTokens {Shape(incorrectTokens)} must have the same shape.", nameof(incorrectTokens));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var scaled = ApplyLnToStack(residual.Stack, null, false, posSlice, batchSlice);
        if (!scaled.shape[1..^1].SequenceEqual(tokens.shape))
            throw new ArgumentException($"LogitAttrs: tokens have shape {Shape(tokens)} but the stack's components are {Shape(scaled.select(0, 0))}: " +
                "pass one token per batch entry/position of the stack (e.g. tokens [batch] for a stack of one position).", nameof(tokens));
        var wuT = Model.W_U.t();                                                    // [d_vocab, d_model]
        var directions = wuT[tokens.to_type(ScalarType.Int64)];                     // [*tokens.shape, d_model]
        if (incorrectTokens is not null) directions = directions - wuT[incorrectTokens.to_type(ScalarType.Int64)];
        var attrs = (scaled * directions).sum(-1);                                  // [components, *tokens.shape]
        return (attrs.MoveToOuterDisposeScope(), residual.Labels);
    }

    /// <summary>Removes and returns an activation (the caller then owns it).</summary>
    public Tensor Take(string name)
    {
        var t = Get(name);
        _store.Remove(_store.First(kv => ReferenceEquals(kv.Value, t)).Key);
        return t;
    }

    /// <summary>Disposes every cached tensor.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _store.Values) t.Dispose();
        _store.Clear();
    }

    /// <summary>
    /// The common end of the Stack* decompositions: optionally adds the remainder (the residual stream at
    /// <paramref name="upTo"/> minus the stacked components, label <c>"remainder"</c>), stacks the parts, and optionally
    /// applies the final norm's scale (<see cref="ApplyLnToStack"/>).
    /// </summary>
    (Tensor Stack, string[] Labels) FinishStack(List<Tensor> parts, List<string> labels, int upTo, bool inclRemainder, bool applyLn, TensorIndex? posSlice)
    {
        if (inclRemainder)
        {
            var resid = IndexDim(upTo == 0 ? this["resid_pre", 0] : this["resid_post", upTo - 1], posSlice, -2);
            parts.Add((parts.Count == 0 ? resid : resid - cat(parts.ToArray(), 0).sum(new long[] { 0 })).unsqueeze(0));
            labels.Add("remainder");
        }
        var stackT = parts.Count > 0 ? cat(parts.ToArray(), 0) : zeros(IndexDim(this["embed"], posSlice, -2).shape.Prepend(0L).ToArray());
        if (applyLn) stackT = ApplyLnToStack(stackT, upTo, false, posSlice);
        return (stackT.MoveToOuterDisposeScope(), labels.ToArray());
    }
}
