using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Data;

/// <summary>
/// nanoGPT-style batches from one long token stream (e.g. a tokenized corpus): each row is a contiguous window
/// starting at a uniformly random offset.
/// </summary>
public static class TokenWindows
{
    /// <summary>
    /// int64 <c>[batch, length]</c>: row r is <c>ids[s_r .. s_r + length)</c> with <c>s_r</c> drawn uniformly from
    /// <c>[0, ids.Length − length]</c> by <paramref name="rng"/> (so a seeded rng gives identical batches).
    /// Train with next-token loss on the whole row (the model sees <c>length</c> tokens and predicts <c>length − 1</c>).
    /// The tensor is created on <paramref name="device"/> (default CPU).
    /// </summary>
    public static Tensor Sample(IReadOnlyList<int> ids, int batch, int length, Random rng, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(rng);
        if (batch < 1 || length < 2) throw new ArgumentOutOfRangeException(nameof(length), "batch ≥ 1 and length ≥ 2 required.");
        if (ids.Count < length) throw new ArgumentException($"Stream has {ids.Count} tokens, fewer than the window length {length}.", nameof(ids));
        var d = new long[batch * length];
        for (int b = 0; b < batch; b++)
        {
            int start = rng.Next(ids.Count - length + 1);
            for (int i = 0; i < length; i++) d[b * length + i] = ids[start + i];
        }
        TorchRuntime.EnsureLoaded();
        return torch.tensor(d, new long[] { batch, length }, dtype: ScalarType.Int64, device: device);
    }
}
