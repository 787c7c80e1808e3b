using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>RMSNorm: x / sqrt(mean(x²) + eps) * w, with no centering and no bias. <c>hook_normalized</c> fires before <c>* w</c> (as in TransformerLens).</summary>
public sealed class RMSNorm : NormLayer
{
    readonly Parameter _w;

    /// <summary>Creates an RMSNorm with w = 1 (a parameter of <paramref name="dtype"/>, float32 by default).</summary>
    public RMSNorm(string name, int dModel, double eps, ScalarType dtype = ScalarType.Float32) : base(name, eps)
    {
        _w = new Parameter(ones(dModel, dtype: dtype));
        register_parameter("w", _w);
    }

    /// <inheritdoc/>
    public override Tensor w => _w;
    /// <inheritdoc/>
    public override bool Centers => false;

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override Tensor forward(Tensor x) => Normalize(x, _w, null);
}
