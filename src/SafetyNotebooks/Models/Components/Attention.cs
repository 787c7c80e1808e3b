using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>
/// Causal multi-head self-attention with TransformerLens hook points, key padding masks and a key/value cache (see <see cref="AttentionContext"/>).
/// </summary>
/// <remarks>
/// The per-head query/key/value weights are stored fused, as one parameter <c>W_QKV</c> [d_model, 3, n_heads, d_head]
/// (the same layout as GPT-2's <c>c_attn</c>), so all of q, k and v come out of a single matmul.
/// <see cref="W_Q"/>, <see cref="W_K"/>, <see cref="W_V"/> are views of it in TransformerLens' shape
/// [n_heads, d_model, d_head]: writing into them (under <c>no_grad</c>) writes the fused parameter.
/// <para>Grouped-query attention (<see cref="HookedTransformerConfig.NKeyValueHeads"/> &lt; n_heads) cannot use the fused
/// layout: then <c>W_Q</c> [n_heads, d_model, d_head], <c>W_K</c> and <c>W_V</c> [n_key_value_heads, d_model, d_head] (what
/// TransformerLens calls <c>_W_K</c>/<c>_W_V</c>; not repeated) and their biases are separate parameters, <see cref="W_QKV"/>
/// throws, and <c>hook_k</c>, <c>hook_v</c>, <c>hook_rot_k</c> have n_key_value_heads heads (as in TransformerLens). Keys and
/// values are repeated to the query heads after those hooks: query head h reads key/value head h / (n_heads / n_key_value_heads).</para>
/// <para>With rotary positional embeddings, queries and keys are rotated after <c>hook_q</c>/<c>hook_k</c>
/// (<see cref="RotaryEmbedding.Apply"/>) and the results hooked as <c>hook_rot_q</c>/<c>hook_rot_k</c>.</para>
/// When nothing hooks <c>hook_attn_scores</c> or <c>hook_pattern</c>, the fused scaled-dot-product kernel is used;
/// <c>hook_result</c> (per-head outputs, [batch, pos, head, d_model], memory-heavy) is only computed when hooked.
/// </remarks>
public sealed class Attention : nn.Module<Tensor, Tensor>
{
    readonly int _nHeads, _nKvHeads, _dHead, _dModel, _rotaryDim;
    readonly double _rotaryBase;
    readonly Parameter? _W_QKV, _b_QKV;                    // fused layout (n_key_value_heads == n_heads)
    readonly Parameter? _W_Q, _W_K, _W_V, _b_Q, _b_K, _b_V; // grouped-query layout
    readonly Parameter _W_O, _b_O;
    readonly Tensor _mask;
    nn.Module<Tensor, Tensor>? _qkvAdapter, _oAdapter;     // optional additive adapters (e.g. LoRA), registered when set

    /// <summary>Queries, [batch, pos, head, d_head].</summary>
    public readonly HookPoint hook_q = new("hook_q");
    /// <summary>Keys, [batch, pos, head, d_head].</summary>
    public readonly HookPoint hook_k = new("hook_k");
    /// <summary>Values, [batch, pos, head, d_head].</summary>
    public readonly HookPoint hook_v = new("hook_v");
    /// <summary>Queries after the rotary embedding, [batch, pos, head, d_head] (only in models with rotary positional embeddings).</summary>
    public readonly HookPoint? hook_rot_q;
    /// <summary>Keys after the rotary embedding, [batch, pos, kv_head, d_head] (only in models with rotary positional embeddings).</summary>
    public readonly HookPoint? hook_rot_k;
    /// <summary>Scaled, causally masked (-inf) attention scores, [batch, head, query_pos, key_pos].</summary>
    public readonly HookPoint hook_attn_scores = new("hook_attn_scores");
    /// <summary>Attention probabilities, [batch, head, query_pos, key_pos].</summary>
    public readonly HookPoint hook_pattern = new("hook_pattern");
    /// <summary>Pattern-weighted values, [batch, pos, head, d_head].</summary>
    public readonly HookPoint hook_z = new("hook_z");
    /// <summary>Per-head output z @ W_O, [batch, pos, head, d_model]; computed only when hooked or cached.</summary>
    public readonly HookPoint hook_result = new("hook_result");

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the layer with zero weights (the model initialises them). <paramref name="causalMask"/> is a shared [n_ctx, n_ctx] bool buffer, true above the diagonal.</summary>
    public Attention(HookedTransformerConfig cfg, Tensor causalMask) : base("attn")
    {
        _nHeads = cfg.NHeads; _nKvHeads = cfg.EffectiveNKeyValueHeads; _dHead = cfg.DHead; _dModel = cfg.DModel;
        if (_nKvHeads == _nHeads)
        {
            _W_QKV = new Parameter(zeros(cfg.DModel, 3, cfg.NHeads, cfg.DHead, dtype: cfg.DType));
            _b_QKV = new Parameter(zeros(3, cfg.NHeads, cfg.DHead, dtype: cfg.DType));
            register_parameter("W_QKV", _W_QKV);
            register_parameter("b_QKV", _b_QKV);
        }
        else
        {
            _W_Q = new Parameter(zeros(cfg.NHeads, cfg.DModel, cfg.DHead, dtype: cfg.DType));
            _W_K = new Parameter(zeros(_nKvHeads, cfg.DModel, cfg.DHead, dtype: cfg.DType));
            _W_V = new Parameter(zeros(_nKvHeads, cfg.DModel, cfg.DHead, dtype: cfg.DType));
            _b_Q = new Parameter(zeros(cfg.NHeads, cfg.DHead, dtype: cfg.DType));
            _b_K = new Parameter(zeros(_nKvHeads, cfg.DHead, dtype: cfg.DType));
            _b_V = new Parameter(zeros(_nKvHeads, cfg.DHead, dtype: cfg.DType));
            register_parameter("W_Q", _W_Q); register_parameter("W_K", _W_K); register_parameter("W_V", _W_V);
            register_parameter("b_Q", _b_Q); register_parameter("b_K", _b_K); register_parameter("b_V", _b_V);
        }
        _W_O = new Parameter(zeros(cfg.NHeads, cfg.DHead, cfg.DModel, dtype: cfg.DType));
        _b_O = new Parameter(zeros(cfg.DModel, dtype: cfg.DType));
        _mask = causalMask;
        register_parameter("W_O", _W_O);
        register_parameter("b_O", _b_O);
        register_buffer("mask", _mask, persistent: false);
        if (cfg.PositionalEmbedding == PositionalEmbeddingType.Rotary)
        {
            _rotaryDim = cfg.EffectiveRotaryDim;
            _rotaryBase = cfg.RotaryBase;
            hook_rot_q = new HookPoint("hook_rot_q");
            hook_rot_k = new HookPoint("hook_rot_k");
        }
        foreach (var h in new[] { hook_q, hook_k, hook_v, hook_rot_q, hook_rot_k, hook_attn_scores, hook_pattern, hook_z, hook_result })
            if (h is not null) register_module(h.Name, h);
    }

    /// <summary>Number of key/value heads (equal to the number of query heads unless attention is grouped-query).</summary>
    public int NKeyValueHeads => _nKvHeads;
    /// <summary>True when keys and values have fewer heads than queries (then <see cref="W_QKV"/> does not exist).</summary>
    public bool IsGroupedQuery => _W_QKV is null;

    /// <summary>Fused q/k/v weights, [d_model, 3, n_heads, d_head]; throws for grouped-query attention (use W_Q, W_K, W_V).</summary>
    public Parameter W_QKV => _W_QKV ?? throw GroupedQueryHasNoFusedWeights("W_QKV");
    /// <summary>Fused q/k/v biases, [3, n_heads, d_head]; throws for grouped-query attention (use b_Q, b_K, b_V).</summary>
    public Parameter b_QKV => _b_QKV ?? throw GroupedQueryHasNoFusedWeights("b_QKV");
    /// <summary>Query weights, [n_heads, d_model, d_head] (a view of <see cref="W_QKV"/>, or its own parameter when grouped).</summary>
    public Tensor W_Q => _W_Q ?? _W_QKV!.select(1, 0).permute(1, 0, 2);
    /// <summary>Key weights, [n_heads, d_model, d_head] (a view of <see cref="W_QKV"/>); [n_key_value_heads, d_model, d_head] when grouped.</summary>
    public Tensor W_K => _W_K ?? _W_QKV!.select(1, 1).permute(1, 0, 2);
    /// <summary>Value weights, [n_heads, d_model, d_head] (a view of <see cref="W_QKV"/>); [n_key_value_heads, d_model, d_head] when grouped.</summary>
    public Tensor W_V => _W_V ?? _W_QKV!.select(1, 2).permute(1, 0, 2);
    /// <summary>Query biases, [n_heads, d_head] (a view of <see cref="b_QKV"/>, or its own parameter when grouped).</summary>
    public Tensor b_Q => _b_Q ?? _b_QKV!.select(0, 0);
    /// <summary>Key biases, [n_heads, d_head] (a view of <see cref="b_QKV"/>); [n_key_value_heads, d_head] when grouped.</summary>
    public Tensor b_K => _b_K ?? _b_QKV!.select(0, 1);
    /// <summary>Value biases, [n_heads, d_head] (a view of <see cref="b_QKV"/>); [n_key_value_heads, d_head] when grouped.</summary>
    public Tensor b_V => _b_V ?? _b_QKV!.select(0, 2);

    InvalidOperationException GroupedQueryHasNoFusedWeights(string name) => new(
        $"attn.{name} does not exist in a grouped-query model ({_nHeads} query heads, {_nKvHeads} key/value heads): " +
        "use W_Q [n_heads, d_model, d_head], W_K/W_V [n_key_value_heads, d_model, d_head] and b_Q/b_K/b_V instead.");
    /// <summary>
    /// Optional additive adapter on the q/k/v projection (e.g. a LoRA adapter from <c>SafetyNotebooks.Training.Lora</c>): maps the
    /// flattened, normalized input [rows, d_model] to a delta [rows, (n_heads + 2·n_key_value_heads)·d_head] laid out as
    /// (q | k | v, head, d_head), added to the projection's output before <c>hook_q</c>/<c>hook_k</c>/<c>hook_v</c>.
    /// Registered as the submodule <c>qkv_adapter</c> (so its parameters train with the model); null (the default) removes it.
    /// Not supported with per-head inputs (<see cref="HookedTransformerConfig.UseSplitQkvInput"/>, <see cref="HookedTransformerConfig.UseAttnIn"/>).
    /// </summary>
    public nn.Module<Tensor, Tensor>? QkvAdapter
    {
        get => _qkvAdapter;
        set { register_module("qkv_adapter", null!); _qkvAdapter = value; if (value is not null) register_module("qkv_adapter", value); }
    }

    /// <summary>
    /// Optional additive adapter on the output projection: maps the flattened head outputs z [rows, n_heads·d_head] to a delta
    /// [rows, d_model] added after <c>W_O</c> and <c>b_O</c> (not part of <c>hook_result</c>'s per-head terms). Registered as
    /// the submodule <c>o_adapter</c>; null (the default) removes it.
    /// </summary>
    public nn.Module<Tensor, Tensor>? OAdapter
    {
        get => _oAdapter;
        set { register_module("o_adapter", null!); _oAdapter = value; if (value is not null) register_module("o_adapter", value); }
    }

    /// <summary>Output weights, [n_heads, d_head, d_model].</summary>
    public Parameter W_O => _W_O;
    /// <summary>Output bias, [d_model].</summary>
    public Parameter b_O => _b_O;

    /// <summary>Residual-stream input [batch, pos, d_model] (already normalized) → attention output [batch, pos, d_model], causal, positions 0…pos−1.</summary>
    public override Tensor forward(Tensor x) => forward(x, null);

    /// <summary>
    /// Residual-stream input [batch, pos, d_model] (already normalized) → attention output [batch, pos, d_model], with the
    /// key padding mask, positions and cache entry of <paramref name="context"/> (null: plain causal attention).
    /// With a cache entry, the new keys and values are appended to it and the queries attend to everything cached;
    /// <c>hook_q</c>/<c>hook_k</c>/<c>hook_v</c>/<c>hook_z</c> see only the new positions, the scores and pattern
    /// [batch, head, pos, cached + pos].
    /// </summary>
    public Tensor forward(Tensor x, AttentionContext? context)
    {
        long batch = x.shape[0], pos = x.shape[1];
        int H = _nHeads, Dh = _dHead, D = _dModel;

        Tensor q, k, v;
        if (_W_QKV is not null)
        {
            // One matmul for q, k and v of every head.
            var flat = x.reshape(batch * pos, D);
            var qkvFlat = _b_QKV!.view(-1).addmm(flat, _W_QKV.view(D, 3 * H * Dh));
            if (_qkvAdapter is not null) qkvFlat = qkvFlat + _qkvAdapter.call(flat);
            var qkv = qkvFlat.view(batch, pos, 3, H, Dh);                  // [batch, pos, 3, head, d_head]
            q = hook_q.forward(qkv.select(2, 0));                          // [batch, pos, head, d_head]
            k = hook_k.forward(qkv.select(2, 1));                          // [batch, pos, head, d_head]
            v = hook_v.forward(qkv.select(2, 2));                          // [batch, pos, head, d_head]
        }
        else
        {
            q = einsum("bpd,hde->bphe", x, _W_Q!) + _b_Q!;                 // [batch, pos, head, d_head]
            k = einsum("bpd,hde->bphe", x, _W_K!) + _b_K!;                 // [batch, pos, kv_head, d_head]
            v = einsum("bpd,hde->bphe", x, _W_V!) + _b_V!;                 // [batch, pos, kv_head, d_head]
            if (_qkvAdapter is not null)
            {
                var delta = _qkvAdapter.call(x.reshape(batch * pos, D)).split([H * Dh, _nKvHeads * Dh, _nKvHeads * Dh], 1);
                q = q + delta[0].view(batch, pos, H, Dh);
                k = k + delta[1].view(batch, pos, _nKvHeads, Dh);
                v = v + delta[2].view(batch, pos, _nKvHeads, Dh);
            }
            q = hook_q.forward(q); k = hook_k.forward(k); v = hook_v.forward(v);
        }
        return Attend(q, k, v, context, x.device);
    }

    /// <summary>
    /// Per-head inputs (already normalized; TransformerLens' split q/k/v inputs or <c>attn_in</c>): query input
    /// [batch, pos, head, d_model], key and value inputs [batch, pos, kv_head, d_model] (kv_head = n_key_value_heads) → attention
    /// output [batch, pos, d_model]. Head h's queries read only query input h, so patching one head's input changes only that head.
    /// </summary>
    public Tensor forward(Tensor queryInput, Tensor keyInput, Tensor valueInput, AttentionContext? context)
    {
        void CheckHeads(Tensor t, int heads, string name)
        {
            if (t.dim() != 4 || t.shape[2] != heads || t.shape[3] != _dModel)
                throw new ArgumentException($"attn {name} has shape [{string.Join(", ", t.shape)}] but must be [batch, pos, {heads}, {_dModel}] " +
                    "(one d_model vector per head; key/value inputs have n_key_value_heads heads).", name);
        }
        if (_qkvAdapter is not null)
            throw new InvalidOperationException("attn.qkv_adapter (e.g. LoRA on the q/k/v projection) does not support per-head inputs: " +
                "turn UseSplitQkvInput/UseAttnIn off, or merge the adapter into the weights first.");
        CheckHeads(queryInput, _nHeads, nameof(queryInput));
        CheckHeads(keyInput, _nKvHeads, nameof(keyInput));
        CheckHeads(valueInput, _nKvHeads, nameof(valueInput));
        var q = hook_q.forward(einsum("bphd,hde->bphe", queryInput, W_Q) + b_Q); // [batch, pos, head, d_head]
        var k = hook_k.forward(einsum("bphd,hde->bphe", keyInput, W_K) + b_K);   // [batch, pos, kv_head, d_head]
        var v = hook_v.forward(einsum("bphd,hde->bphe", valueInput, W_V) + b_V); // [batch, pos, kv_head, d_head]
        return Attend(q, k, v, context, queryInput.device);
    }

    /// <summary>From hooked q [batch, pos, head, d_head] and k, v [batch, pos, kv_head, d_head]: rotary, cache, attention, output.</summary>
    Tensor Attend(Tensor q, Tensor k, Tensor v, AttentionContext? context, Device device)
    {
        long batch = q.shape[0], pos = q.shape[1];
        int H = _nHeads, Dh = _dHead, D = _dModel;
        if (hook_rot_q is not null)
        {
            // Position ids from the forward pass (real tokens counted from each row's first, cached prefix included);
            // a bare forward(x) rotates by 0…pos−1.
            var positions = context?.Positions ?? arange(pos, dtype: ScalarType.Int64, device: device).unsqueeze(0); // [batch or 1, pos]
            q = hook_rot_q.forward(RotaryEmbedding.Apply(q, positions, _rotaryDim, _rotaryBase));
            k = hook_rot_k!.forward(RotaryEmbedding.Apply(k, positions, _rotaryDim, _rotaryBase));
        }
        // Keys and values as [batch, kv_head, key_pos, d_head]: the cached prefix (if any) and the new positions. The cache
        // holds the key/value heads as computed (n_key_value_heads of them when grouped), like Hugging Face's.
        Tensor keys, values;
        if (context?.CacheEntry is { } entry) (keys, values) = entry.Append(k, v);
        else { keys = k.transpose(1, 2); values = v.transpose(1, 2); }
        if (_nKvHeads != H)
        {
            // Grouped-query attention: query heads g·j … g·j+g-1 read key/value head j (Hugging Face's repeat_kv).
            keys = keys.repeat_interleave(H / _nKvHeads, 1);               // [batch, head, key_pos, d_head]
            values = values.repeat_interleave(H / _nKvHeads, 1);           // [batch, head, key_pos, d_head]
        }
        long keyPos = keys.shape[2];
        bool causal = context?.IsCausal ?? true;
        var allowed = context?.AllowedMask;                                // [batch, 1, pos, key_pos] or null

        Tensor z;                                                          // [batch, pos, head, d_head]
        if (!hook_attn_scores.HasHooks && !hook_pattern.HasHooks)
        {
            // Fast path: fused attention kernel (scale 1/sqrt(d_head)); a boolean mask marks the keys each query may see.
            z = nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), keys, values, allowed is null ? null : context!.KernelMask, 0.0, allowed is null && causal) // [batch, head, pos, d_head]
                .transpose(1, 2);
            if (context?.FullyMaskedQueries is { } none) z = z.masked_fill(none, 0.0); // as the explicit path's zero pattern
        }
        else
        {
            // Scale the queries (d_head wide) rather than the scores (key_pos wide), and mask the fresh scores in place.
            var scores = matmul(q.transpose(1, 2) * (1.0 / Math.Sqrt(Dh)), keys.transpose(2, 3)); // [batch, head, query_pos, key_pos]
            if (allowed is not null) scores.masked_fill_(allowed.logical_not(), double.NegativeInfinity);
            else if (causal) scores.masked_fill_(_mask.narrow(0, keyPos - pos, pos).narrow(1, 0, keyPos), double.NegativeInfinity);
            scores = hook_attn_scores.forward(scores);
            var pattern = scores.softmax(-1);
            // A fully masked row (left padding, or a scores hook) gives NaNs: make them zeros. Plain causal rows always see themselves.
            if (allowed is not null || hook_attn_scores.HasHooks) pattern = pattern.nan_to_num(0.0);
            pattern = hook_pattern.forward(pattern);
            z = matmul(pattern, values).transpose(1, 2);                   // [batch, pos, head, d_head]
        }
        z = hook_z.forward(z);

        if (hook_result.HasHooks)
        {
            var result = hook_result.forward(einsum("bphd,hdm->bphm", z, _W_O)); // [batch, pos, head, d_model]
            var summed = result.sum(2) + _b_O;                             // [batch, pos, d_model]
            return _oAdapter is null ? summed : summed + _oAdapter.call(z.reshape(batch * pos, H * Dh)).view(batch, pos, D);
        }
        var zFlat = z.reshape(batch * pos, H * Dh);
        var outFlat = _b_O.addmm(zFlat, _W_O.view(H * Dh, D));
        if (_oAdapter is not null) outFlat = outFlat + _oAdapter.call(zFlat);
        return outFlat.view(batch, pos, D);
    }
}
