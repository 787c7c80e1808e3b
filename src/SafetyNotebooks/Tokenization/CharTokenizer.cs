using System.Text;

namespace SafetyNotebooks.Tokenization;

/// <summary>
/// Character-level tokenizer (one id per Unicode scalar value, as in nanoGPT's Shakespeare-char).
/// Ids <c>0..n-1</c> are the characters sorted by code point (so the same character set always gives
/// the same ids, whatever order the corpus lists them in); then, if special tokens are enabled,
/// <c>&lt;bos&gt;</c> = n (also EOS) and <c>&lt;pad&gt;</c> = n + 1.
/// <para>Unknown characters: <see cref="Encode"/> throws an <see cref="ArgumentException"/> naming the
/// character and its position (no silent <c>&lt;unk&gt;</c>).</para>
/// </summary>
public sealed class CharTokenizer : ITokenizer
{
    /// <summary>Name of the BOS/EOS special token.</summary>
    public const string BosToken = "<bos>";
    /// <summary>Name of the padding special token.</summary>
    public const string PadToken = "<pad>";

    readonly string[] _strings;
    readonly Dictionary<int, int> _idOfRune;
    readonly int _pad;

    CharTokenizer(IEnumerable<Rune> runes, bool specialTokens)
    {
        var chars = runes.Distinct().OrderBy(r => r.Value).ToArray();
        _idOfRune = new Dictionary<int, int>(chars.Length);
        for (int i = 0; i < chars.Length; i++) _idOfRune[chars[i].Value] = i;
        var strings = chars.Select(r => r.ToString()).ToList();
        if (specialTokens)
        {
            BosTokenId = strings.Count; strings.Add(BosToken);
            _pad = strings.Count; strings.Add(PadToken);
        }
        _strings = strings.ToArray();
    }

    /// <summary>Vocabulary of every distinct character in <paramref name="corpus"/>.</summary>
    public static CharTokenizer FromCorpus(string corpus, bool specialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        return new CharTokenizer(corpus.EnumerateRunes(), specialTokens);
    }

    /// <summary>Vocabulary of the given characters (duplicates ignored; order does not matter).</summary>
    public static CharTokenizer FromAlphabet(IEnumerable<char> alphabet, bool specialTokens = true) =>
        new(alphabet.Select(c => new Rune(c)), specialTokens);

    /// <summary>The characters (then special tokens) in id order.</summary>
    public IReadOnlyList<string> Vocabulary => _strings;

    /// <inheritdoc/>
    public int VocabSize => _strings.Length;
    /// <inheritdoc/>
    public int? BosTokenId { get; }
    /// <inheritdoc/>
    public int? EosTokenId => BosTokenId;
    /// <summary>The <c>&lt;pad&gt;</c> id; 0 when special tokens are disabled (then padded positions are only marked by the mask).</summary>
    public int PadTokenId => _pad;

    /// <inheritdoc/>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length);
        int pos = 0;
        foreach (var r in text.EnumerateRunes())
        {
            if (!_idOfRune.TryGetValue(r.Value, out var id))
                throw new ArgumentException(
                    $"Character '{r}' (U+{r.Value:X4}) at position {pos} is not in this CharTokenizer's vocabulary.", nameof(text));
            ids.Add(id);
            pos += r.Utf16SequenceLength;
        }
        return ids.ToArray();
    }

    /// <summary>Concatenates the characters; special tokens decode to their names (e.g. <c>&lt;bos&gt;</c>).</summary>
    public string Decode(IEnumerable<int> ids) => string.Concat(ToStrTokens(ids));

    /// <inheritdoc/>
    public string[] ToStrTokens(IEnumerable<int> ids) =>
        TokenIds.CheckInVocab(ids, _strings.Length, nameof(CharTokenizer)).Select(id => _strings[id]).ToArray();
}
