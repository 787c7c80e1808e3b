using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>LayerNorm with learned weight <c>w</c> and bias <c>b</c> (both [d_model]), as in GPT-2.</summary>
public sealed class LayerNorm : NormLayer
{
    readonly Parameter _w, _b;
    readonly long[] _shape;

    /// <summary>Creates a LayerNorm with w = 1, b = 0 (parameters of <paramref name="dtype"/>, float32 by default).</summary>
    public LayerNorm(string name, int dModel, double eps, ScalarType dtype = ScalarType.Float32) : base(name, eps)
    {
        _w = new Parameter(ones(dModel, dtype: dtype));
        _b = new Parameter(zeros(dModel, dtype: dtype));
        _shape = new long[] { dModel };
        register_parameter("w", _w);
        register_parameter("b", _b);
    }

    /// <inheritdoc/>
    public override Tensor w => _w;
    /// <inheritdoc/>
    public override Tensor b => _b;
    /// <inheritdoc/>
    public override bool Centers => true;

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override Tensor forward(Tensor x)
    {
        // One fused kernel unless someone hooks the scale or the normalized (pre-affine) activation.
        if (!hook_scale.HasHooks && !hook_normalized.HasHooks)
            return nn.functional.layer_norm(x, _shape, _w, _b, Eps);
        if (!hook_scale.HasHooks)
            return hook_normalized.forward(nn.functional.layer_norm(x, _shape, null, null, Eps)) * _w + _b;
        return Normalize(x, _w, _b);
    }
}
