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

    /// <summary>Activation by short name and layer: <c>cache["pattern", 0]</c>.</summary>
    public Tensor this[string name, int layer] => Get(Utils.GetActName(name, layer));

    /// <summary>Activation by short name, layer and layer type: <c>cache["normalized", 1, "ln2"]</c>.</summary>
    public Tensor this[string name, int layer, string layerType] => Get(Utils.GetActName(name, layer, layerType));

    Tensor Get(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_store.TryGetValue(name, out var t)) return t;
        var full = Utils.GetActName(name);
        if (_store.TryGetValue(full, out t)) return t;
        var valid = Model.HookNames.Contains(full)
            ? $"'{full}' is a valid hook name but was not cached: widen the namesFilter passed to RunWithCache."
            : $"Closest cached names: {string.Join(", ", SafetyNotebooks.Runtime.NameSuggestions.Closest(name, _store.Keys, 5))}.";
        throw new KeyNotFoundException($"Activation '{name}' is not in the cache. {valid}");
    }

    int NLayers => Model.Cfg.NLayers;

    /// <summary>
    /// The residual stream at the start of each layer up to <paramref name="layer"/> (default: all layers and the final
    /// residual), [components, batch, pos, d_model]. Labels: <c>"0_pre"</c>, <c>"0_mid"</c> (if <paramref name="inclMid"/>), ..., <c>"final_post"</c>.
    /// </summary>
    /// <param name="layer">Number of layers to include; <c>n_layers</c> (default) also adds the final resid_post.</param>
    /// <param name="inclMid">Also include resid_mid of each layer.</param>
    /// <param name="applyLn">Apply the cached normalization scale of the final layer norm (see <see cref="ApplyLnToStack"/>).</param>
    public (Tensor Stack, string[] Labels) AccumulatedResid(int? layer = null, bool inclMid = false, bool applyLn = false)
    {
        int upTo = layer ?? NLayers;
        if (upTo < 0 || upTo > NLayers) throw new ArgumentOutOfRangeException(nameof(layer), $"layer must be in [0, {NLayers}].");
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
            if (inclMid && l < upTo && !Model.Cfg.AttnOnly)
            {
                parts.Add(this["resid_mid", l]); labels.Add($"{l}_mid");
            }
        }
        using var scope = NewDisposeScope();
        var stackT = stack(parts.ToArray());                                      // [components, batch, pos, d_model]
        if (applyLn) stackT = ApplyLnToStack(stackT, upTo == NLayers ? null : upTo);
        return (stackT.MoveToOuterDisposeScope(), labels.ToArray());
    }

    /// <summary>
    /// Splits the residual stream before <paramref name="layer"/> (default: the final residual) into the outputs of the
    /// components that wrote it: <c>"embed"</c>, <c>"pos_embed"</c>, then <c>"{l}_attn_out"</c> and <c>"{l}_mlp_out"</c>
    /// per layer. The components sum to <c>resid_pre</c> of <paramref name="layer"/> (or the final <c>resid_post</c>).
    /// </summary>
    /// <param name="layer">Decompose the input of this layer; null or n_layers means the final residual.</param>
    /// <param name="mode">"all", "attn" (only attention outputs) or "mlp" (only MLP outputs).</param>
    /// <param name="applyLn">Apply the cached normalization scale (see <see cref="ApplyLnToStack"/>).</param>
    /// <param name="inclEmbeds">Include the embedding components.</param>
    public (Tensor Stack, string[] Labels) DecomposeResid(int? layer = null, string mode = "all", bool applyLn = false, bool inclEmbeds = true)
    {
        int upTo = layer ?? NLayers;
        if (upTo < 0 || upTo > NLayers) throw new ArgumentOutOfRangeException(nameof(layer), $"layer must be in [0, {NLayers}].");
        if (mode is not ("all" or "attn" or "mlp")) throw new ArgumentException($"mode must be \"all\", \"attn\" or \"mlp\", not \"{mode}\".", nameof(mode));
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
        if (parts.Count == 0) throw new InvalidOperationException("No components selected: include embeddings or at least one layer.");
        using var scope = NewDisposeScope();
        var stackT = stack(parts.ToArray());                                      // [components, batch, pos, d_model]
        if (applyLn) stackT = ApplyLnToStack(stackT, upTo == NLayers ? null : upTo);
        return (stackT.MoveToOuterDisposeScope(), labels.ToArray());
    }

    /// <summary>
    /// Per-head outputs (<c>hook_result</c>) of every layer before <paramref name="layer"/> (default all), stacked as
    /// [layer·head, batch, pos, d_model] with labels <c>"L{l}H{h}"</c>. Uses cached <c>hook_result</c>, or computes
    /// it from cached <c>hook_z</c> and the model's <c>W_O</c>. The head results plus <c>b_O</c> sum to <c>attn_out</c>.
    /// </summary>
    public (Tensor Stack, string[] Labels) StackHeadResults(int? layer = null, bool applyLn = false)
    {
        int upTo = layer ?? NLayers;
        if (upTo < 1 || upTo > NLayers) throw new ArgumentOutOfRangeException(nameof(layer), $"layer must be in [1, {NLayers}].");
        var parts = new List<Tensor>();
        var labels = new List<string>();
        using (var scope = NewDisposeScope())
        {
            for (int l = 0; l < upTo; l++)
            {
                Tensor result;                                                      // [batch, pos, head, d_model]
                var rName = Utils.GetActName("result", l);
                if (_store.TryGetValue(rName, out var r)) result = r;
                else if (_store.TryGetValue(Utils.GetActName("z", l), out var z))
                    using (no_grad()) result = einsum("bphd,hdm->bphm", z, Model.blocks[l].attn.W_O);
                else
                    throw new KeyNotFoundException($"StackHeadResults needs '{rName}' or '{Utils.GetActName("z", l)}' in the cache; include one in RunWithCache's namesFilter.");
                parts.Add(result.permute(2, 0, 1, 3));                              // [head, batch, pos, d_model]
                for (int h = 0; h < Model.Cfg.NHeads; h++) labels.Add($"L{l}H{h}");
            }
            var stackT = cat(parts.ToArray(), 0);
            if (applyLn) stackT = ApplyLnToStack(stackT, upTo == NLayers ? null : upTo);
            return (stackT.MoveToOuterDisposeScope(), labels.ToArray());
        }
    }

    /// <summary>
    /// Applies the cached normalization of layer <paramref name="layer"/> (null: the final layer norm) to a stack of
    /// residual components [..., batch, pos, d_model]: centers each component (for LayerNorm) and divides by the cached
    /// <c>hook_scale</c> of the whole residual stream. Weights and biases are not applied (fold them first with
    /// <see cref="HookedTransformer.ProcessWeights"/>), so the result is linear in the components, as in TransformerLens.
    /// </summary>
    /// <param name="mlpInput">Use ln2 (the MLP's input) instead of ln1.</param>
    public Tensor ApplyLnToStack(Tensor residualStack, int? layer = null, bool mlpInput = false)
    {
        var norm = layer is null || layer == NLayers ? Model.ln_final : mlpInput ? Model.blocks[layer.Value].ln2 : Model.blocks[layer.Value].ln1;
        if (norm is null) return residualStack.alias();
        var scaleName = layer is null || layer == NLayers ? "ln_final.hook_scale" : Utils.GetActName("scale", layer, mlpInput ? "ln2" : "ln1");
        if (!_store.TryGetValue(scaleName, out var scale))
            throw new KeyNotFoundException($"ApplyLnToStack needs '{scaleName}' in the cache; include it in RunWithCache's namesFilter.");
        using var scope = NewDisposeScope();
        var x = norm.Centers ? residualStack - residualStack.mean(new long[] { -1 }, keepdim: true) : residualStack;
        return (x / scale).MoveToOuterDisposeScope();                              // scale [batch, pos, 1] broadcasts
    }

    /// <summary>
    /// Logit attribution: the dot product of each residual component with the unembedding direction of
    /// <paramref name="tokens"/> (minus that of <paramref name="incorrectTokens"/> if given).
    /// <paramref name="residual"/>.Stack is [components, *tokens.shape, d_model] (e.g. [c, batch, pos, d] with tokens
    /// [batch, pos], or [c, batch, d] with tokens [batch]); the result is [components, *tokens.shape].
    /// </summary>
    public (Tensor Attrs, string[] Labels) LogitAttrs((Tensor Stack, string[] Labels) residual, Tensor tokens, Tensor? incorrectTokens = null)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var wuT = Model.W_U.t();                                                    // [d_vocab, d_model]
        var directions = wuT[tokens.to_type(ScalarType.Int64)];                     // [*tokens.shape, d_model]
        if (incorrectTokens is not null) directions = directions - wuT[incorrectTokens.to_type(ScalarType.Int64)];
        var attrs = (residual.Stack * directions).sum(-1);                          // [components, *tokens.shape]
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
}
