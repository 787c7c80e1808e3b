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
        register_module("hook_resid_pre", hook_resid_pre);
        if (_ln1 is not null) register_module("ln1", _ln1);
        register_module("attn", _attn);
        register_module("hook_attn_out", hook_attn_out);
        if (hook_resid_mid is not null) register_module("hook_resid_mid", hook_resid_mid);
        if (_ln2 is not null) register_module("ln2", _ln2);
        if (_mlp is not null) register_module("mlp", _mlp);
        if (hook_mlp_out is not null) register_module("hook_mlp_out", hook_mlp_out);
        register_module("hook_resid_post", hook_resid_post);
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
        var attnOut = hook_attn_out.forward(_attn.forward(_ln1 is null ? residPre : _ln1.forward(residPre), context?.ForLayer(Layer)));
        if (_mlp is null)
            return hook_resid_post.forward(residPre + attnOut);
        if (_parallel)
        {
            var parallelMlpOut = hook_mlp_out!.forward(_mlp.forward(_ln2 is null ? residPre : _ln2.forward(residPre)));
            return hook_resid_post.forward(residPre + attnOut + parallelMlpOut);
        }
        var residMid = hook_resid_mid!.forward(residPre + attnOut);
        var mlpOut = hook_mlp_out!.forward(_mlp.forward(_ln2 is null ? residMid : _ln2.forward(residMid)));
        return hook_resid_post.forward(residMid + mlpOut);
    }
}
