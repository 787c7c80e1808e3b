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
    /// <summary>The output of the layer, [batch, pos, d_model].</summary>
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
        _ => null,
    };

    /// <summary>
    /// Generic (hookable) computation: optionally center, divide by the hooked scale, then apply weight and bias.
    /// </summary>
    protected Tensor Normalize(Tensor x, Tensor? weight, Tensor? bias)
    {
        if (Centers) x = x - x.mean(new long[] { -1 }, keepdim: true);           // [batch, pos, d_model]
        var scale = hook_scale.forward((x.pow(2).mean(new long[] { -1 }, keepdim: true) + Eps).sqrt()); // [batch, pos, 1]
        x = x / scale;
        if (weight is not null) x = x * weight;
        if (bias is not null) x = x + bias;
        return hook_normalized.forward(x);
    }
}
