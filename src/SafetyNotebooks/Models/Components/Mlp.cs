using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>
/// The MLP: <c>post = act(x @ W_in + b_in)</c>, <c>out = post @ W_out + b_out</c>, with hooks
/// <c>hook_pre</c> and <c>hook_post</c> ([batch, pos, d_mlp]).
/// </summary>
public class Mlp : nn.Module<Tensor, Tensor>
{
    readonly Parameter _W_in, _b_in, _W_out, _b_out;
    readonly string _actFn;

    /// <summary>Pre-activation, [batch, pos, d_mlp].</summary>
    public readonly HookPoint hook_pre = new("hook_pre");
    /// <summary>Post-activation, [batch, pos, d_mlp].</summary>
    public readonly HookPoint hook_post = new("hook_post");

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the MLP with zero weights (the model initialises them).</summary>
    public Mlp(HookedTransformerConfig cfg) : base("mlp")
    {
        _actFn = cfg.ActFn;
        _W_in = new Parameter(zeros(cfg.DModel, cfg.DMlp, dtype: cfg.DType));
        _b_in = new Parameter(zeros(cfg.DMlp, dtype: cfg.DType));
        _W_out = new Parameter(zeros(cfg.DMlp, cfg.DModel, dtype: cfg.DType));
        _b_out = new Parameter(zeros(cfg.DModel, dtype: cfg.DType));
        register_parameter("W_in", _W_in);
        register_parameter("b_in", _b_in);
        register_parameter("W_out", _W_out);
        register_parameter("b_out", _b_out);
        register_module("hook_pre", hook_pre);
        RegisterBetweenHooks(cfg);
        register_module("hook_post", hook_post);
    }

    /// <summary>
    /// For subclasses (<see cref="GatedMlp"/>): called by the constructor between registering <c>hook_pre</c> and
    /// <c>hook_post</c>, so that extra parameters and hooks are registered in the order they fire.
    /// </summary>
    protected virtual void RegisterBetweenHooks(HookedTransformerConfig cfg) { }

    /// <summary>[d_model, d_mlp]</summary>
    public Parameter W_in => _W_in;
    /// <summary>[d_mlp]</summary>
    public Parameter b_in => _b_in;
    /// <summary>[d_mlp, d_model]</summary>
    public Parameter W_out => _W_out;
    /// <summary>[d_model]</summary>
    public Parameter b_out => _b_out;

    /// <summary>The configured activation function's name.</summary>
    protected string ActFn => _actFn;

    /// <summary>Applies the configured activation function.</summary>
    public static Tensor Activation(Tensor x, string actFn) => actFn switch
    {
        "gelu_new" => nn.functional.gelu(x, GELU.Approximate.tanh),
        "gelu" => nn.functional.gelu(x),
        "relu" => nn.functional.relu(x),
        "solu" => x * x.softmax(-1),
        "silu" => nn.functional.silu(x),
        _ => throw new ArgumentException($"Unknown activation '{actFn}'. Use one of: {string.Join(", ", HookedTransformerConfig.ActFns)}."),
    };

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override Tensor forward(Tensor x)
    {
        long batch = x.shape[0], pos = x.shape[1], dModel = x.shape[2];
        var pre = _b_in.addmm(x.reshape(batch * pos, dModel), _W_in).view(batch, pos, -1); // [batch, pos, d_mlp]
        pre = hook_pre.forward(pre);
        var post = hook_post.forward(Activation(pre, _actFn));                              // [batch, pos, d_mlp]
        return _b_out.addmm(post.reshape(batch * pos, -1), _W_out).view(batch, pos, dModel); // [batch, pos, d_model]
    }
}
