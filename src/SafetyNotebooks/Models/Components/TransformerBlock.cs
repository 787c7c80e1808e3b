using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>
/// One pre-norm transformer block:
/// <c>resid_mid = resid_pre + attn(ln1(resid_pre))</c>, <c>resid_post = resid_mid + mlp(ln2(resid_mid))</c>
/// (attention-only blocks skip the MLP and have no <c>hook_resid_mid</c>).
/// With <see cref="HookedTransformerConfig.ParallelAttnMlp"/> (GPT-NeoX / Pythia), attention and MLP both read the block
/// input: <c>resid_post = resid_pre + attn(ln1(resid_pre)) + mlp(ln2(resid_pre))</c>, and there is no <c>hook_resid_mid</c>.
/// </summary>
public sealed class TransformerBlock : nn.Module<Tensor, Tensor>
{
    NormLayer? _ln1, _ln2;
    readonly Attention _attn;
    readonly Mlp? _mlp;
    readonly bool _parallel;

    /// <summary>Block input, [batch, pos, d_model].</summary>
    public readonly HookPoint hook_resid_pre = new("hook_resid_pre");
    /// <summary>Between attention and MLP, [batch, pos, d_model] (absent in attention-only models).</summary>
    public readonly HookPoint? hook_resid_mid;
    /// <summary>Block output, [batch, pos, d_model].</summary>
    public readonly HookPoint hook_resid_post = new("hook_resid_post");
    /// <summary>Attention output incl. b_O, [batch, pos, d_model].</summary>
    public readonly HookPoint hook_attn_out = new("hook_attn_out");
    /// <summary>MLP output, [batch, pos, d_model] (absent in attention-only models).</summary>
    public readonly HookPoint? hook_mlp_out;
    /// <summary>Per-head attention input before <c>ln1</c>, [batch, pos, head, d_model]; fires only with <see cref="HookedTransformerConfig.UseAttnIn"/>.</summary>
    public readonly HookPoint hook_attn_in = new("hook_attn_in");
    /// <summary>Per-head query input before <c>ln1</c>, [batch, pos, head, d_model]; fires only with <see cref="HookedTransformerConfig.UseSplitQkvInput"/>.</summary>
    public readonly HookPoint hook_q_input = new("hook_q_input");
    /// <summary>Per-head key input before <c>ln1</c>, [batch, pos, kv_head, d_model]; fires only with <see cref="HookedTransformerConfig.UseSplitQkvInput"/>.</summary>
    public readonly HookPoint hook_k_input = new("hook_k_input");
    /// <summary>Per-head value input before <c>ln1</c>, [batch, pos, kv_head, d_model]; fires only with <see cref="HookedTransformerConfig.UseSplitQkvInput"/>.</summary>
    public readonly HookPoint hook_v_input = new("hook_v_input");
    /// <summary>MLP input before <c>ln2</c> (a copy of the residual stream), [batch, pos, d_model]; fires only with <see cref="HookedTransformerConfig.UseHookMlpIn"/> (never in attention-only models).</summary>
    public readonly HookPoint hook_mlp_in = new("hook_mlp_in");
    bool _useAttnIn, _useSplitQkvInput, _useHookMlpIn;
    readonly int _nHeads, _nKvHeads;

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Builds block <paramref name="layer"/>.</summary>
    public TransformerBlock(HookedTransformerConfig cfg, int layer, Tensor causalMask) : base($"block{layer}")
    {
        Layer = layer;
        // Registered in forward order, so that HookNames lists hooks in the order they fire.
        _ln1 = NormLayer.Create(cfg, "ln1");
        _attn = new Attention(cfg, causalMask);
        if (!cfg.AttnOnly)
        {
            _parallel = cfg.ParallelAttnMlp;
            _ln2 = NormLayer.Create(cfg, "ln2");
            _mlp = cfg.GatedMlp ? new GatedMlp(cfg) : new Mlp(cfg);
            if (!_parallel) hook_resid_mid = new HookPoint("hook_resid_mid");
            hook_mlp_out = new HookPoint("hook_mlp_out");
        }
        _nHeads = cfg.NHeads; _nKvHeads = cfg.EffectiveNKeyValueHeads;
        _useAttnIn = cfg.UseAttnIn; _useSplitQkvInput = cfg.UseSplitQkvInput; _useHookMlpIn = cfg.UseHookMlpIn && _mlp is not null;
        RegisterInForwardOrder();
    }

    /// <summary>(Re-)registers submodules in forward order; the optional input hooks only when their flag is on.</summary>
    void RegisterInForwardOrder()
    {
        _internal_submodules.clear();
        register_module("hook_resid_pre", hook_resid_pre);
        if (_useAttnIn) register_module("hook_attn_in", hook_attn_in);
        if (_useSplitQkvInput)
        {
            register_module("hook_q_input", hook_q_input);
            register_module("hook_k_input", hook_k_input);
            register_module("hook_v_input", hook_v_input);
        }
        if (_ln1 is not null) register_module("ln1", _ln1);
        register_module("attn", _attn);
        register_module("hook_attn_out", hook_attn_out);
        if (hook_resid_mid is not null) register_module("hook_resid_mid", hook_resid_mid);
        if (_useHookMlpIn) register_module("hook_mlp_in", hook_mlp_in);
        if (_ln2 is not null) register_module("ln2", _ln2);
        if (_mlp is not null) register_module("mlp", _mlp);
        if (hook_mlp_out is not null) register_module("hook_mlp_out", hook_mlp_out);
        register_module("hook_resid_post", hook_resid_post);
    }

    /// <summary>
    /// Switches the optional input hooks to <paramref name="cfg"/>'s <see cref="HookedTransformerConfig.UseAttnIn"/>,
    /// <see cref="HookedTransformerConfig.UseSplitQkvInput"/> and <see cref="HookedTransformerConfig.UseHookMlpIn"/>.
    /// Throws if a hook point being switched off still has hooks (they would silently stop firing).
    /// </summary>
    internal void SetInputHooks(HookedTransformerConfig cfg)
    {
        void Check(bool turningOff, HookPoint hp, string flag)
        {
            if (turningOff && hp.HasHooks)
                throw new InvalidOperationException($"blocks.{Layer}.{hp.Name.Split('.')[^1]} still has hooks, and switching {flag} off would make them " +
                    "silently stop firing: remove them first (ResetHooks, or end their Hooks(...) scope).");
        }
        Check(_useAttnIn && !cfg.UseAttnIn, hook_attn_in, "UseAttnIn");
        foreach (var hp in new[] { hook_q_input, hook_k_input, hook_v_input })
            Check(_useSplitQkvInput && !cfg.UseSplitQkvInput, hp, "UseSplitQkvInput");
        Check(_useHookMlpIn && !cfg.UseHookMlpIn, hook_mlp_in, "UseHookMlpIn");
        _useAttnIn = cfg.UseAttnIn; _useSplitQkvInput = cfg.UseSplitQkvInput; _useHookMlpIn = cfg.UseHookMlpIn && _mlp is not null;
        RegisterInForwardOrder();
    }

    /// <summary>Index of this block.</summary>
    public int Layer { get; }
    /// <summary>Normalization before attention (null when the model has none).</summary>
    public NormLayer? ln1 => _ln1;
    /// <summary>Normalization before the MLP (null when the model has none or is attention-only).</summary>
    public NormLayer? ln2 => _ln2;
    /// <summary>The attention layer.</summary>
    public Attention attn => _attn;
    /// <summary>The MLP (null in attention-only models); a <see cref="GatedMlp"/> when the config asks for one.</summary>
    public Mlp? mlp => _mlp;

    /// <summary>Swaps the normalization layers (used when folding LayerNorm weights turns LN into LNPre).</summary>
    internal void ReplaceNorms(NormLayer? ln1, NormLayer? ln2)
    {
        if (_ln1 is not null && ln1 is not null) { _internal_submodules["ln1"] = ln1; _ln1 = ln1; }
        if (_ln2 is not null && ln2 is not null) { _internal_submodules["ln2"] = ln2; _ln2 = ln2; }
    }

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override Tensor forward(Tensor x) => forward(x, null);

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model], attending with <paramref name="context"/> (positions, padding mask, KV cache; null: plain causal).</summary>
    public Tensor forward(Tensor x, AttentionContext? context)
    {
        var residPre = hook_resid_pre.forward(x);
        var layerContext = context?.ForLayer(Layer);
        Tensor attnOut;
        if (_useSplitQkvInput)
        {
            // TransformerLens' use_split_qkv_input: per-head copies of the residual stream (k/v: n_key_value_heads heads),
            // each normalized by ln1 on its own, so one head's query input can be patched alone.
            var qIn = hook_q_input.forward(RepeatAlongHeads(residPre, _nHeads));   // [batch, pos, head, d_model]
            var kIn = hook_k_input.forward(RepeatAlongHeads(residPre, _nKvHeads)); // [batch, pos, kv_head, d_model]
            var vIn = hook_v_input.forward(RepeatAlongHeads(residPre, _nKvHeads)); // [batch, pos, kv_head, d_model]
            attnOut = _attn.forward(Ln1(qIn), Ln1(kIn), Ln1(vIn), layerContext);
        }
        else if (_useAttnIn)
        {
            // TransformerLens' use_attn_in: one per-head copy read by the head's queries, keys and values (ln1 applied for each, as TL).
            var attnIn = hook_attn_in.forward(RepeatAlongHeads(residPre, _nHeads)); // [batch, pos, head, d_model]
            attnOut = _attn.forward(Ln1(attnIn), Ln1(attnIn), Ln1(attnIn), layerContext);
        }
        else attnOut = _attn.forward(Ln1(residPre), layerContext);
        attnOut = hook_attn_out.forward(attnOut);
        if (_mlp is null)
            return hook_resid_post.forward(residPre + attnOut);
        if (_parallel)
        {
            var parallelMlpIn = _useHookMlpIn ? hook_mlp_in.forward(residPre.clone()) : residPre;
            var parallelMlpOut = hook_mlp_out!.forward(_mlp.forward(_ln2 is null ? parallelMlpIn : _ln2.forward(parallelMlpIn)));
            return hook_resid_post.forward(residPre + attnOut + parallelMlpOut);
        }
        var residMid = hook_resid_mid!.forward(residPre + attnOut);
        var mlpIn = _useHookMlpIn ? hook_mlp_in.forward(residMid.clone()) : residMid;
        var mlpOut = hook_mlp_out!.forward(_mlp.forward(_ln2 is null ? mlpIn : _ln2.forward(mlpIn)));
        return hook_resid_post.forward(residMid + mlpOut);
    }

    Tensor Ln1(Tensor x) => _ln1 is null ? x : _ln1.forward(x);

    /// <summary>[batch, pos, d_model] → a copy [batch, pos, heads, d_model] (TransformerLens' <c>repeat_along_head_dimension</c>; a copy, so hooks may edit it in place).</summary>
    static Tensor RepeatAlongHeads(Tensor x, int heads) => x.unsqueeze(2).expand(x.shape[0], x.shape[1], heads, x.shape[2]).clone();
}
