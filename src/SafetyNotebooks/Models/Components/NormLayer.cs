using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>
/// Common shape of the normalization layers (<see cref="LayerNorm"/>, <see cref="LayerNormPre"/>, <see cref="RMSNorm"/>):
/// each exposes <c>hook_scale</c> [batch, pos, 1] and <c>hook_normalized</c> [batch, pos, d_model].
/// </summary>
public abstract class NormLayer : nn.Module<Tensor, Tensor>
{
    /// <summary>The divisor sqrt(mean(x²) + eps) (after centering for LayerNorm), [batch, pos, 1].</summary>
    public readonly HookPoint hook_scale = new("hook_scale");
    /// <summary>
    /// The normalized input before the learned affine map, [batch, pos, d_model]: <c>(x - mean) / scale</c> for LayerNorm,
    /// <c>x / scale</c> for RMSNorm. As in TransformerLens (LayerNorm since PR #770), the layer's output is
    /// <c>hook_normalized * w + b</c> (RMSNorm: <c>* w</c>); for <see cref="LayerNormPre"/> (no weights) it is the output itself.
    /// </summary>
    public readonly HookPoint hook_normalized = new("hook_normalized");

    /// <summary>Epsilon added inside the square root.</summary>
    public double Eps { get; }

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Base constructor: registers the two hook points.</summary>
    protected NormLayer(string name, double eps) : base(name)
    {
        Eps = eps;
        register_module("hook_scale", hook_scale);
        register_module("hook_normalized", hook_normalized);
    }

    /// <summary>Learned scale, or null for layers without one.</summary>
    public virtual Tensor? w => null;
    /// <summary>Learned bias, or null for layers without one.</summary>
    public virtual Tensor? b => null;

    /// <summary>Whether the layer subtracts the mean over d_model before scaling.</summary>
    public abstract bool Centers { get; }

    /// <summary>Creates the normalization layer the config asks for (null for <see cref="NormalizationType.None"/>).</summary>
    public static NormLayer? Create(HookedTransformerConfig cfg, string name) => cfg.Normalization switch
    {
        NormalizationType.LN => new LayerNorm(name, cfg.DModel, cfg.LayerNormEps, cfg.DType),
        NormalizationType.LNPre => new LayerNormPre(name, cfg.LayerNormEps),
        NormalizationType.RMS => new RMSNorm(name, cfg.DModel, cfg.LayerNormEps, cfg.DType),
        NormalizationType.RMSPre => new RMSNormPre(name, cfg.LayerNormEps),
        _ => null,
    };

    /// <summary>
    /// Generic (hookable) computation: optionally center, divide by the hooked scale, fire <c>hook_normalized</c>,
    /// then apply weight and bias (TransformerLens' order).
    /// </summary>
    protected Tensor Normalize(Tensor x, Tensor? weight, Tensor? bias)
    {
        if (Centers) x = x - x.mean(new long[] { -1 }, keepdim: true);           // [batch, pos, d_model]
        var scale = hook_scale.forward((x.pow(2).mean(new long[] { -1 }, keepdim: true) + Eps).sqrt()); // [batch, pos, 1]
        x = hook_normalized.forward(x / scale);
        if (weight is not null) x = x * weight;
        if (bias is not null) x = x + bias;
        return x;
    }

    /// <summary>
    /// The layer's full computation (centering, scale, weight, bias) on <paramref name="x"/> [..., d_model] with statistics
    /// computed from <paramref name="x"/> itself and without firing any hook; used by analysis code (logit lens).
    /// </summary>
    public Tensor Apply(Tensor x)
    {
        using var scope = NewDisposeScope();
        if (Centers) x = x - x.mean(new long[] { -1 }, keepdim: true);
        x = x / (x.pow(2).mean(new long[] { -1 }, keepdim: true) + Eps).sqrt();
        if (w is { } weight) x = x * weight;
        if (b is { } bias) x = x + bias;
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Moves every hook (temporary and permanent) from this layer's hook points to <paramref name="target"/>'s, in order.
    /// Used when weight processing swaps a norm layer for another: the hook points keep their names and meaning.
    /// </summary>
    internal void MoveHooksTo(NormLayer target)
    {
        hook_scale.MoveHooksTo(target.hook_scale);
        hook_normalized.MoveHooksTo(target.hook_normalized);
    }
}
