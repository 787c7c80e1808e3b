using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>
/// Rotary position embeddings (RoPE) in Hugging Face's "rotate_half" convention (Llama, GPT-NeoX, Mistral, Qwen2):
/// dimension i of the rotated part is paired with dimension i + rotary_dim/2, and the pair at frequency
/// θ_i = base^(-2i / rotary_dim) is rotated by the angle position · θ_i. With a partial rotary dimension (GPT-NeoX's
/// <c>rotary_pct</c>), only the first <c>rotary_dim</c> dimensions of each head are rotated; the rest pass unchanged.
/// </summary>
/// <remarks>
/// A pure function of (queries or keys, positions): it holds no state and no cached tables, so any position ids
/// (left padding, a KV cache's offset) can be passed. Angles are computed in float32 as Hugging Face does
/// (<c>inv_freq</c> in float32, <c>freqs = positions · inv_freq</c>, then cos/sin).
/// </remarks>
public static class RotaryEmbedding
{
    /// <summary>
    /// Rotates <paramref name="x"/> [batch, pos, head, d_head] by the angles of <paramref name="positions"/> [batch, pos] (int64)
    /// over its first <paramref name="rotaryDim"/> dimensions.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes do not fit, or <paramref name="rotaryDim"/> is odd or larger than d_head.</exception>
    public static Tensor Apply(Tensor x, Tensor positions, int rotaryDim, double rotaryBase)
    {
        if (x.dim() != 4)
            throw new ArgumentException($"Rotary embeddings need queries/keys of shape [batch, pos, head, d_head] but got [{string.Join(", ", x.shape)}].", nameof(x));
        long batch = x.shape[0], pos = x.shape[1], dHead = x.shape[3];
        if (rotaryDim <= 0 || rotaryDim % 2 != 0 || rotaryDim > dHead)
            throw new ArgumentException($"Rotary dimension {rotaryDim} must be even and in [2, d_head = {dHead}]; fix HookedTransformerConfig.RotaryDim.", nameof(rotaryDim));
        if (positions.dim() != 2 || positions.shape[1] != pos || (positions.shape[0] != batch && positions.shape[0] != 1))
            throw new ArgumentException($"Rotary positions must have shape [batch, pos] = [{batch}, {pos}] (or [1, {pos}]) but have [{string.Join(", ", positions.shape)}].", nameof(positions));

        var (cos, sin) = CosSin(positions, rotaryDim, rotaryBase, x.device);           // [batch, pos, 1, rotary_dim], float32
        var rot = rotaryDim == dHead ? x : x.narrow(-1, 0, rotaryDim);                  // [batch, pos, head, rotary_dim]
        var rotated = (rot.to_type(ScalarType.Float32) * cos + RotateHalf(rot.to_type(ScalarType.Float32)) * sin).to_type(x.dtype);
        return rotaryDim == dHead ? rotated : cat(new[] { rotated, x.narrow(-1, rotaryDim, dHead - rotaryDim) }, -1);
    }

    /// <summary>
    /// cos and sin of the rotation angles, each [batch, pos, 1, rotary_dim] (float32): the angle of dimension j is
    /// position · θ_(j mod rotary_dim/2), i.e. the frequencies are repeated for the two halves (Hugging Face's
    /// <c>emb = cat(freqs, freqs)</c>).
    /// </summary>
    public static (Tensor Cos, Tensor Sin) CosSin(Tensor positions, int rotaryDim, double rotaryBase, Device? device = null)
    {
        // inv_freq = 1 / base^(arange(0, r, 2) / r), computed in float32 like transformers' _compute_default_rope_parameters.
        var exponent = arange(0, rotaryDim, 2, dtype: ScalarType.Int64, device: device).to_type(ScalarType.Float32) / rotaryDim;
        var invFreq = 1.0f / pow(tensor((float)rotaryBase, device: device), exponent);  // [rotary_dim/2]
        var freqs = positions.to(device ?? positions.device).to_type(ScalarType.Float32).unsqueeze(-1) * invFreq; // [batch, pos, rotary_dim/2]
        var emb = cat(new[] { freqs, freqs }, -1).unsqueeze(2);                         // [batch, pos, 1, rotary_dim]
        return (emb.cos(), emb.sin());
    }

    /// <summary>[..., d] → [..., d]: (x1, x2) ↦ (-x2, x1), with x1 the first half of the last dimension and x2 the second.</summary>
    public static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        return cat(new[] { -x.narrow(-1, half, half), x.narrow(-1, 0, half) }, -1);
    }
}
