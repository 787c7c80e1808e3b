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
    nn.Module<Tensor, Tensor>? _inAdapter, _outAdapter;    // optional additive adapters (e.g. LoRA), registered when set

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

    /// <summary>
    /// Optional additive adapter on the input projection <c>W_in</c> (e.g. a LoRA adapter from <c>SafetyNotebooks.Training.Lora</c>):
    /// maps the flattened input [rows, d_model] to a delta [rows, d_mlp] added before <c>hook_pre</c> (in a gated MLP, before
    /// <c>hook_pre_linear</c>). Registered as the submodule <c>in_adapter</c>; null (the default) removes it.
    /// </summary>
    public nn.Module<Tensor, Tensor>? InAdapter
    {
        get => _inAdapter;
        set { register_module("in_adapter", null!); _inAdapter = value; if (value is not null) register_module("in_adapter", value); }
    }

    /// <summary>
    /// Optional additive adapter on the output projection <c>W_out</c>: maps the flattened activations [rows, d_mlp] to a delta
    /// [rows, d_model] added to the MLP's output. Registered as the submodule <c>out_adapter</c>; null (the default) removes it.
    /// </summary>
    public nn.Module<Tensor, Tensor>? OutAdapter
    {
        get => _outAdapter;
        set { register_module("out_adapter", null!); _outAdapter = value; if (value is not null) register_module("out_adapter", value); }
    }

    /// <summary>Adds <paramref name="adapter"/>'s delta for the flattened input <paramref name="flat"/> to <paramref name="output"/> (unchanged when null).</summary>
    protected static Tensor AddAdapter(Tensor output, nn.Module<Tensor, Tensor>? adapter, Tensor flat) =>
        adapter is null ? output : output + adapter.call(flat);

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
        var flat = x.reshape(batch * pos, dModel);
        var pre = AddAdapter(_b_in.addmm(flat, _W_in), _inAdapter, flat).view(batch, pos, -1); // [batch, pos, d_mlp]
        pre = hook_pre.forward(pre);
        var post = hook_post.forward(Activation(pre, _actFn)).reshape(batch * pos, -1);     // [batch·pos, d_mlp]
        return AddAdapter(_b_out.addmm(post, _W_out), _outAdapter, post).view(batch, pos, dModel); // [batch, pos, d_model]
    }
}
