using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>
/// What every attention layer needs besides its (normalized) input, built once per forward pass by
/// <see cref="HookedTransformer"/>: the position of each query token, which keys each query may attend to, and the
/// layer's entry of a key/value cache.
/// </summary>
/// <remarks>
/// Positional schemes read <see cref="Positions"/> (absolute position ids, counted over real tokens only, as Hugging Face
/// computes them from the attention mask: <c>cumsum(mask) - 1</c>, 0 at left padding). Rotary embeddings rotate q and k by
/// these positions; the learned absolute embedding of GPT-2 indexes <c>W_pos</c> with them.
/// </remarks>
public sealed record AttentionContext
{
    /// <summary>int64 <c>[batch, pos]</c>: position id of every query token (in the whole sequence, cached prefix included).</summary>
    public required Tensor Positions { get; init; }

    /// <summary>Tokens already in the key/value cache before this pass (0 without a cache).</summary>
    public long PastLength { get; init; }

    /// <summary>
    /// bool <c>[batch, 1, pos, past + pos]</c>: true where a query may attend to a key (causal and the key is a real
    /// token). Null: every key before or at the query is real (plain causal attention, or a single new query with a
    /// cache and no padding, see <see cref="IsCausal"/>).
    /// </summary>
    public Tensor? AllowedMask { get; init; }

    /// <summary>
    /// <see cref="AllowedMask"/> with each fully masked row (a left-padding query that has no real key before it) opened on
    /// its own key, so the fused kernel never takes a softmax over nothing (NaN). Those rows' outputs are zeroed afterwards
    /// (<see cref="FullyMaskedQueries"/>), exactly as the explicit path's zero pattern gives.
    /// </summary>
    public Tensor? KernelMask { get; init; }

    /// <summary>bool <c>[batch, pos, 1, 1]</c>: queries with no key to attend to (their <c>hook_z</c> is 0); null when none can occur.</summary>
    public Tensor? FullyMaskedQueries { get; init; }

    /// <summary>When <see cref="AllowedMask"/> is null: true for the plain causal mask (no cache), false for "attend to every key".</summary>
    public bool IsCausal { get; init; } = true;

    /// <summary>Per-layer key/value cache entries (null: no cache).</summary>
    public IReadOnlyList<KeyValueCacheEntry>? CacheEntries { get; init; }

    /// <summary>The cache entry of the layer being run (set by <see cref="ForLayer"/>).</summary>
    public KeyValueCacheEntry? CacheEntry { get; init; }

    /// <summary>This context for layer <paramref name="layer"/> (picks its cache entry).</summary>
    public AttentionContext ForLayer(int layer) =>
        CacheEntries is null ? this : this with { CacheEntry = CacheEntries[layer] };

    /// <summary>Plain causal attention over <paramref name="pos"/> tokens per row, positions 0…pos−1 (what a bare <c>forward(x)</c> uses).</summary>
    public static AttentionContext Causal(long batch, long pos, Device? device = null) =>
        new() { Positions = arange(pos, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(batch, pos) };
}

/// <summary>
/// One layer's cached keys and values (TransformerLens' <c>HookedTransformerKeyValueCacheEntry</c>). Stored in a buffer
/// <c>[batch, head, capacity, d_head]</c> that grows by doubling, so appending one position copies one position, not the prefix.
/// </summary>
public sealed class KeyValueCacheEntry : IDisposable
{
    Tensor? _k, _v;
    readonly long _capacityHint;

    /// <summary>Creates an empty entry; <paramref name="capacityHint"/> positions are reserved on first use.</summary>
    public KeyValueCacheEntry(long capacityHint = 0) => _capacityHint = capacityHint;

    /// <summary>Number of cached positions.</summary>
    public long Length { get; private set; }

    /// <summary>Cached keys <c>[batch, head, Length, d_head]</c> (a view; null while empty).</summary>
    public Tensor? Keys => _k?.narrow(2, 0, Length);
    /// <summary>Cached values <c>[batch, head, Length, d_head]</c> (a view; null while empty).</summary>
    public Tensor? Values => _v?.narrow(2, 0, Length);

    /// <summary>
    /// Appends keys and values of the new positions (<c>[batch, pos, head, d_head]</c>, as <c>hook_k</c>/<c>hook_v</c> give them)
    /// and returns all keys and values so far, <c>[batch, head, Length, d_head]</c>.
    /// </summary>
    public (Tensor Keys, Tensor Values) Append(Tensor k, Tensor v)
    {
        long batch = k.shape[0], pos = k.shape[1], heads = k.shape[2], dHead = k.shape[3];
        if (_k is not null && (_k.shape[0] != batch || _k.shape[1] != heads || _k.shape[3] != dHead))
            throw new ArgumentException(
                $"The key/value cache holds [batch {_k.shape[0]}, heads {_k.shape[1]}, d_head {_k.shape[3]}] but this pass has [batch {batch}, heads {heads}, d_head {dHead}]. " +
                "Use one cache per batch of prompts (a new HookedTransformerKeyValueCache for a new batch).");
        long need = Length + pos;
        if (_k is null || need > _k.shape[2])
        {
            long cap = Math.Max(need, Math.Max(_capacityHint, (_k?.shape[2] ?? 0) * 2));
            var nk = zeros(new[] { batch, heads, cap, dHead }, dtype: k.dtype, device: k.device).DetachFromDisposeScope();
            var nv = zeros(new[] { batch, heads, cap, dHead }, dtype: v.dtype, device: v.device).DetachFromDisposeScope();
            if (_k is not null && Length > 0)
            {
                using (var d = nk.narrow(2, 0, Length)) using (var s = _k.narrow(2, 0, Length)) d.copy_(s);
                using (var d = nv.narrow(2, 0, Length)) using (var s = _v!.narrow(2, 0, Length)) d.copy_(s);
            }
            _k?.Dispose(); _v?.Dispose();
            _k = nk; _v = nv;
        }
        _k.narrow(2, Length, pos).copy_(k.transpose(1, 2));
        _v!.narrow(2, Length, pos).copy_(v.transpose(1, 2));
        Length = need;
        return (_k.narrow(2, 0, Length), _v.narrow(2, 0, Length));
    }

    /// <summary>Keeps the rows <paramref name="batchIndices"/> (int64 <c>[new_batch]</c>) in that order (beam search reorders beams this way).</summary>
    public void Reorder(Tensor batchIndices)
    {
        if (_k is null) return;
        var nk = _k.index_select(0, batchIndices).DetachFromDisposeScope();
        var nv = _v!.index_select(0, batchIndices).DetachFromDisposeScope();
        _k.Dispose(); _v.Dispose();
        _k = nk; _v = nv;
    }

    /// <summary>Drops the cached tensors.</summary>
    public void Dispose()
    {
        _k?.Dispose(); _v?.Dispose();
        _k = _v = null;
        Length = 0;
    }
}
