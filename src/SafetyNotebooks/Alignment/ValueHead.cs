using SafetyNotebooks.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// A scalar per token from the final residual stream: <c>V = x · w + b</c> with <c>x</c> [batch, pos, d_model] the
/// residual after the final normalization (what Hugging Face calls <c>hidden_states[-1]</c>), as TRL's <c>ValueHead</c>
/// (without its dropout). Starts at zero, so the first value estimates are 0 and the critic learns them from the returns.
/// </summary>
public sealed class ValueHead : nn.Module<Tensor, Tensor>
{
    readonly Parameter _w, _b;

    /// <summary>All parameters are registered explicitly.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates a zero-initialised head for residual width <paramref name="dModel"/>.</summary>
    public ValueHead(int dModel, ScalarType dtype = ScalarType.Float32) : base("v_head")
    {
        if (dModel < 1) throw new ArgumentOutOfRangeException(nameof(dModel), dModel, "The value head needs the model's d_model (≥ 1).");
        _w = new Parameter(zeros(dModel, dtype: dtype));
        _b = new Parameter(zeros(1, dtype: dtype));
        register_parameter("weight", _w);
        register_parameter("bias", _b);
    }

    /// <summary>The weight [d_model].</summary>
    public Parameter weight => _w;
    /// <summary>The bias [1].</summary>
    public Parameter bias => _b;

    /// <summary>[batch, pos, d_model] → [batch, pos].</summary>
    public override Tensor forward(Tensor x) => torch.matmul(x, _w) + _b;
}

/// <summary>
/// A <see cref="HookedTransformer"/> policy with a <see cref="ValueHead"/> on its final residual stream (TRL's
/// <c>AutoModelForCausalLMWithValueHead</c>: one trunk, two outputs). <see cref="Forward"/> returns the logits and a value
/// per position from one pass. The module's parameters are the policy's and the head's, so one optimizer trains both.
/// </summary>
public sealed class HookedTransformerWithValueHead : nn.Module<Tensor, Tensor>
{
    readonly HookedTransformer _policy;
    readonly ValueHead _vHead;
    readonly string _lastResidHook;

    /// <summary>All submodules are registered explicitly (as <c>pretrained_model</c> and <c>v_head</c>, TRL's names).</summary>
    protected override void RegisterComponents() { }

    /// <summary>Wraps <paramref name="policy"/> (trained in place) and adds a fresh value head.</summary>
    public HookedTransformerWithValueHead(HookedTransformer policy) : base("HookedTransformerWithValueHead")
    {
        _policy = policy ?? throw new ArgumentNullException(nameof(policy));
        _vHead = new ValueHead(policy.Cfg.DModel, policy.Cfg.DType);
        var device = policy.parameters().FirstOrDefault()?.device;
        if (device is not null) _vHead.to(device);
        _lastResidHook = $"blocks.{policy.Cfg.NLayers - 1}.hook_resid_post";
        register_module("pretrained_model", _policy);
        register_module("v_head", _vHead);
    }

    /// <summary>The language model (the policy).</summary>
    public HookedTransformer Policy => _policy;
    /// <summary>The value head.</summary>
    public ValueHead VHead => _vHead;

    /// <summary>The policy's logits (so the module can stand in for the language model, e.g. in generation).</summary>
    public override Tensor forward(Tensor tokens) => _policy.forward(tokens);

    /// <summary>
    /// Values only, <c>[batch, pos]</c>: the same numbers as <see cref="Forward"/>'s, without the unembedding when nothing
    /// is padded (the trunk runs to the final normalization and the head reads it; TRL's value pass).
    /// </summary>
    public Tensor Values(Tensor tokens, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (attentionMask is not null)
        {
            var (logits, values) = Forward(tokens, attentionMask);
            logits.Dispose();
            return values;
        }
        using var scope = torch.NewDisposeScope();
        return _vHead.forward(FinalResidual(_policy, tokens)).MoveToOuterDisposeScope();
    }

    /// <summary>The residual stream after the final normalization, <c>[batch, pos, d_model]</c> (the model's one
    /// <see cref="HookedTransformer.FinalResidual"/>: every block runs once, hooks fire, the unembedding does not run).</summary>
    internal static Tensor FinalResidual(HookedTransformer model, Tensor tokens) => model.FinalResidual(tokens);

    /// <summary>
    /// One pass: logits <c>[batch, pos, d_vocab]</c> and values <c>[batch, pos]</c> (the value at position i estimates
    /// the return after the tokens up to i). <paramref name="attentionMask"/>: 1 = real token, 0 = padding (null: all real).
    /// </summary>
    public (Tensor Logits, Tensor Values) Forward(Tensor tokens, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        Tensor? resid = null;
        Func<Tensor, HookPoint, Tensor?> capture = (x, _) =>
        {
            resid?.Dispose();
            resid = x.alias().DetachFromDisposeScope();
            return null;
        };
        Tensor logits;
        using (_policy.Hooks((_lastResidHook, capture)))
            logits = _policy.forward(tokens, attentionMask);
        if (resid is null)
            throw new InvalidOperationException($"The value head read nothing from '{_lastResidHook}'; a hook on that point must not stop the forward pass.");
        using (resid)
        {
            using var scope = torch.NewDisposeScope();
            var hidden = _policy.ln_final is { } ln ? ln.forward(resid) : resid;
            return (logits, _vHead.forward(hidden).MoveToOuterDisposeScope());
        }
    }
}
