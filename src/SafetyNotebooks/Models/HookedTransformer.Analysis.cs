using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

public sealed partial class HookedTransformer
{
    /// <summary>
    /// The sum of the biases written to the residual stream before <paramref name="layer"/>'s input: <c>b_O</c> of every earlier
    /// layer, plus <c>b_out</c> if <paramref name="includeMlpBiases"/>, plus this layer's <c>b_O</c> if <paramref name="mlpInput"/>.
    /// [d_model], a new tensor. As TransformerLens' <c>accumulated_bias</c>.
    /// </summary>
    public Tensor AccumulatedBias(int layer, bool mlpInput = false, bool includeMlpBiases = true)
    {
        if (layer < 0 || layer > Cfg.NLayers)
            throw new ArgumentOutOfRangeException(nameof(layer), $"AccumulatedBias: layer {layer} must be in [0, {Cfg.NLayers}].");
        if (mlpInput && layer == Cfg.NLayers)
            throw new ArgumentException("AccumulatedBias: mlpInput needs a layer below n_layers (there is no attention beyond the last layer).", nameof(mlpInput));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var acc = zeros(Cfg.DModel, dtype: _embed.W_E.dtype, device: _embed.W_E.device);
        for (int l = 0; l < layer; l++)
        {
            acc = acc + _blockArray[l].attn.b_O;
            if (includeMlpBiases && _blockArray[l].mlp is { } mlp) acc = acc + mlp.b_out;
        }
        if (mlpInput) acc = acc + _blockArray[layer].attn.b_O;
        return acc.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The QK circuit of every head, <c>W_Q · W_Kᵀ</c> [n_layers, n_heads, d_model, d_model], as a <see cref="FactoredMatrix"/>
    /// (never formed unless asked). As TransformerLens' <c>model.QK</c>.
    /// </summary>
    public FactoredMatrix QK => new(W_Q, W_K.transpose(-2, -1));

    /// <summary>
    /// The OV circuit of every head, <c>W_V · W_O</c> [n_layers, n_heads, d_model, d_model], as a <see cref="FactoredMatrix"/>.
    /// As TransformerLens' <c>model.OV</c>.
    /// </summary>
    public FactoredMatrix OV => new(W_V, W_O);
}
