using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>
/// LayerNorm without learned parameters: center, then divide by the scale. After
/// <see cref="HookedTransformer.FoldLayerNorm"/> the weight and bias live in the next layer's weights.
/// </summary>
public sealed class LayerNormPre : NormLayer
{
    /// <summary>Creates the layer.</summary>
    public LayerNormPre(string name, double eps) : base(name, eps) { }

    /// <inheritdoc/>
    public override bool Centers => true;

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override Tensor forward(Tensor x)
    {
        if (!hook_scale.HasHooks)
            return hook_normalized.forward(nn.functional.layer_norm(x, new[] { x.shape[^1] }, null, null, Eps));
        return Normalize(x, null, null);
    }
}
