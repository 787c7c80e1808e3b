namespace SafetyNotebooks.Tokenization;

/// <summary>
/// A vocabulary of named tokens for toy tasks: by default <c>t0 .. t{N-1}</c>, or any names you give
/// (e.g. <c>"(" ")"</c>), followed by optional special tokens (e.g. <c>&lt;bos&gt;</c>, <c>=</c>).
/// Text is the token names separated by whitespace: <c>Encode("t3 t1 =")</c>.
/// </summary>
public sealed class SyntheticTokenizer : ITokenizer
{
    readonly string[] _names;
    readonly Dictionary<string, int> _ids;

    /// <summary><paramref name="count"/> ordinary tokens named <c>{prefix}0 .. {prefix}{count-1}</c> (ids 0..count-1), then <paramref name="specialTokens"/>.</summary>
    /// <param name="count">Number of ordinary tokens.</param>
    /// <param name="specialTokens">Extra tokens appended after the ordinary ones, in order.</param>
    /// <param name="bosToken">Name (among the tokens) to use as BOS, or null.</param>
    /// <param name="eosToken">Name to use as EOS, or null.</param>
    /// <param name="padToken">Name to use as padding; when null, BOS's id if any, else 0.</param>
    /// <param name="prefix">Prefix of ordinary token names.</param>
    public SyntheticTokenizer(int count, IEnumerable<string>? specialTokens = null, string? bosToken = null,
        string? eosToken = null, string? padToken = null, string prefix = "t")
        : this(Enumerable.Range(0, count >= 0 ? count : throw new ArgumentOutOfRangeException(nameof(count)))
                   .Select(i => prefix + i).Concat(specialTokens ?? Array.Empty<string>()),
               bosToken, eosToken, padToken) { }

    /// <summary>Tokens with the given names; name i has id i. Names must be distinct and contain no whitespace.</summary>
    public SyntheticTokenizer(IEnumerable<string> names, string? bosToken = null, string? eosToken = null, string? padToken = null)
    {
        _names = names.ToArray();
        _ids = new Dictionary<string, int>(_names.Length, StringComparer.Ordinal);
        for (int i = 0; i < _names.Length; i++)
        {
            var n = _names[i];
            if (string.IsNullOrEmpty(n) || n.Any(char.IsWhiteSpace))
                throw new ArgumentException($"Token name '{n}' is empty or contains whitespace.", nameof(names));
            if (!_ids.TryAdd(n, i)) throw new ArgumentException($"Duplicate token name '{n}'.", nameof(names));
        }
        BosTokenId = bosToken is null ? null : IdOf(bosToken);
        EosTokenId = eosToken is null ? null : IdOf(eosToken);
        PadTokenId = padToken is not null ? IdOf(padToken) : BosTokenId ?? 0;
    }

    /// <summary>Id of a token name; throws for unknown names.</summary>
    public int IdOf(string name) => _ids.TryGetValue(name, out var id)
        ? id : throw new ArgumentException($"Unknown token '{name}'.", nameof(name));

    /// <summary>Token names in id order.</summary>
    public IReadOnlyList<string> Vocabulary => _names;

    /// <inheritdoc/>
    public int VocabSize => _names.Length;
    /// <inheritdoc/>
    public int? BosTokenId { get; }
    /// <inheritdoc/>
    public int? EosTokenId { get; }
    /// <inheritdoc/>
    public int PadTokenId { get; }

    /// <summary>Splits on whitespace and maps each name to its id; unknown names throw.</summary>
    public int[] Encode(string text) =>
        text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Select(IdOf).ToArray();

    /// <summary>Token names joined by single spaces (so <c>Encode(Decode(ids))</c> round-trips).</summary>
    public string Decode(IEnumerable<int> ids) => string.Join(' ', ToStrTokens(ids));

    /// <inheritdoc/>
    public string[] ToStrTokens(IEnumerable<int> ids) =>
        TokenIds.CheckInVocab(ids, _names.Length, nameof(SyntheticTokenizer)).Select(id => _names[id]).ToArray();
}
