using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>
/// The gated MLP of Llama-style models (SwiGLU with <c>silu</c>), as TransformerLens' <c>GatedMLP</c>:
/// <c>pre = x @ W_gate</c> (<c>hook_pre</c>), <c>pre_linear = x @ W_in + b_in</c> (<c>hook_pre_linear</c>),
/// <c>post = act(pre) * pre_linear</c> (<c>hook_post</c>), <c>out = post @ W_out + b_out</c>.
/// </summary>
/// <remarks>
/// Hugging Face's <c>gate_proj</c> is <c>W_gate</c>, <c>up_proj</c> is <c>W_in</c>, <c>down_proj</c> is <c>W_out</c> (transposed
/// to TransformerLens' [in, out] layout). <c>b_in</c> and <c>b_out</c> exist for uniformity with <see cref="Mlp"/> and are zero
/// for Llama checkpoints (which have no MLP biases).
/// </remarks>
public sealed class GatedMlp : Mlp
{
    Parameter? _W_gate;
    nn.Module<Tensor, Tensor>? _gateAdapter;               // optional additive adapter (e.g. LoRA), registered when set

    /// <summary>The linear (ungated) branch, x @ W_in + b_in, [batch, pos, d_mlp].</summary>
    public readonly HookPoint hook_pre_linear = new("hook_pre_linear");

    /// <summary>Creates the gated MLP with zero weights (the model initialises them).</summary>
    public GatedMlp(HookedTransformerConfig cfg) : base(cfg) { }

    /// <summary>Registers <c>W_gate</c> and <c>hook_pre_linear</c> between <c>hook_pre</c> and <c>hook_post</c> (their forward order).</summary>
    protected override void RegisterBetweenHooks(HookedTransformerConfig cfg)
    {
        _W_gate = new Parameter(zeros(cfg.DModel, cfg.DMlp, dtype: cfg.DType));
        register_parameter("W_gate", _W_gate);
        register_module("hook_pre_linear", hook_pre_linear);
    }

    /// <summary>Gate weights, [d_model, d_mlp] (Hugging Face's <c>gate_proj.weight</c> transposed).</summary>
    public Parameter W_gate => _W_gate!;

    /// <summary>
    /// Optional additive adapter on the gate projection <c>W_gate</c> (e.g. LoRA on Llama's <c>gate_proj</c>): maps the flattened
    /// input [rows, d_model] to a delta [rows, d_mlp] added before <c>hook_pre</c>. Registered as the submodule
    /// <c>gate_adapter</c>; null (the default) removes it.
    /// </summary>
    public nn.Module<Tensor, Tensor>? GateAdapter
    {
        get => _gateAdapter;
        set { register_module("gate_adapter", null!); _gateAdapter = value; if (value is not null) register_module("gate_adapter", value); }
    }

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override Tensor forward(Tensor x)
    {
        long batch = x.shape[0], pos = x.shape[1], dModel = x.shape[2];
        var flat = x.reshape(batch * pos, dModel);
        var pre = hook_pre.forward(AddAdapter(flat.matmul(_W_gate!), _gateAdapter, flat).view(batch, pos, -1));   // [batch, pos, d_mlp]
        var preLinear = hook_pre_linear.forward(AddAdapter(b_in.addmm(flat, W_in), InAdapter, flat).view(batch, pos, -1)); // [batch, pos, d_mlp]
        var post = hook_post.forward(Activation(pre, ActFn) * preLinear).reshape(batch * pos, -1);             // [batch·pos, d_mlp]
        return AddAdapter(b_out.addmm(post, W_out), OutAdapter, post).view(batch, pos, dModel);                 // [batch, pos, d_model]
    }
}
