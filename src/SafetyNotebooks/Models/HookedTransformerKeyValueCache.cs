using SafetyNotebooks.Models.Components;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

/// <summary>
/// Keys and values of every layer for the tokens a <see cref="HookedTransformer"/> has already seen, so that the next
/// forward pass only computes the new positions (TransformerLens' <c>HookedTransformerKeyValueCache</c>). Pass the same
/// cache to successive <c>forward(tokens, attentionMask, pastKvCache: cache)</c> calls with only the new tokens; the
/// cache also remembers the attention mask of the tokens it holds.
/// </summary>
/// <remarks>
/// A cache belongs to one batch of sequences. If a forward pass with the cache throws, the cache is left inconsistent and
/// the next pass refuses it: start a new one. Dispose it to free the tensors.
/// </remarks>
public sealed class HookedTransformerKeyValueCache : IDisposable
{
    readonly KeyValueCacheEntry[] _entries;
    Tensor? _mask;

    /// <summary>An empty cache for <paramref name="model"/>; <paramref name="capacity"/> positions are reserved per layer (it grows as needed).</summary>
    public HookedTransformerKeyValueCache(HookedTransformer model, long capacity = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        _entries = Enumerable.Range(0, model.Cfg.NLayers).Select(_ => new KeyValueCacheEntry(capacity)).ToArray();
    }

    /// <summary>Per-layer entries.</summary>
    public IReadOnlyList<KeyValueCacheEntry> Entries => _entries;

    /// <summary>Number of positions cached (0 when empty).</summary>
    public long Length => _mask?.shape[1] ?? 0;

    /// <summary>bool <c>[batch, Length]</c>: which cached positions are real tokens (null while empty).</summary>
    public Tensor? AttentionMask => _mask;

    /// <summary>True when some cached position is padding (known once, when the positions were added).</summary>
    public bool HasPadding { get; private set; }

    internal void CheckConsistent()
    {
        foreach (var e in _entries)
            if (e.Length != Length)
                throw new InvalidOperationException(
                    $"This HookedTransformerKeyValueCache holds {Length} positions but a layer holds {e.Length}: an earlier forward pass with it failed midway. Start a new cache.");
    }

    /// <summary>Records the mask of the positions a successful forward pass appended.</summary>
    internal void Commit(Tensor fullMask, bool newHasPadding)
    {
        var m = fullMask.detach().DetachFromDisposeScope();
        _mask?.Dispose();
        _mask = m;
        HasPadding |= newHasPadding;
    }

    /// <summary>Keeps the rows <paramref name="batchIndices"/> (int64) in that order, in every layer and in the mask (beam search).</summary>
    public void Reorder(Tensor batchIndices)
    {
        foreach (var e in _entries) e.Reorder(batchIndices);
        if (_mask is not null)
        {
            var m = _mask.index_select(0, batchIndices).DetachFromDisposeScope();
            _mask.Dispose();
            _mask = m;
        }
    }

    /// <summary>Frees every layer's tensors.</summary>
    public void Dispose()
    {
        foreach (var e in _entries) e.Dispose();
        _mask?.Dispose();
        _mask = null;
    }
}
