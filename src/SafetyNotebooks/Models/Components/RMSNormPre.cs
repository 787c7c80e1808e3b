using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>
/// RMSNorm without a learned weight (TransformerLens' <c>RMSNormPre</c>): x / sqrt(mean(x²) + eps). After
/// <see cref="HookedTransformer.FoldLayerNorm"/> on an RMSNorm model the weight lives in the next layer's weights.
/// </summary>
public sealed class RMSNormPre : NormLayer
{
    /// <summary>Creates the layer.</summary>
    public RMSNormPre(string name, double eps) : base(name, eps) { }

    /// <inheritdoc/>
    public override bool Centers => false;

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override Tensor forward(Tensor x) => Normalize(x, null, null);
}
