namespace SafetyNotebooks.Tokenization;

/// <summary>
/// A tokenizer: text ↔ integer token ids, plus the per-token strings used to label plots.
/// Implementations: <see cref="Gpt2Tokenizer"/>, <see cref="CharTokenizer"/>, <see cref="SyntheticTokenizer"/>.
/// Tensor helpers (<c>ToTokens</c>, <c>ToStrTokens</c>, <c>ToString</c>) live in <see cref="TokenizerExtensions"/>.
/// </summary>
public interface ITokenizer
{
    /// <summary>Number of token ids; every id is in <c>[0, VocabSize)</c>.</summary>
    int VocabSize { get; }

    /// <summary>Id prepended by <c>ToTokens(..., prependBos: true)</c>, or null if this tokenizer has no BOS token.</summary>
    int? BosTokenId { get; }

    /// <summary>End-of-sequence id (used by generation to stop), or null if none.</summary>
    int? EosTokenId { get; }

    /// <summary>Id used to fill padded positions of a batch (their attention mask is 0).</summary>
    int PadTokenId { get; }

    /// <summary>Encodes text to ids. Never adds a BOS token; use <c>ToTokens</c> for that.</summary>
    int[] Encode(string text);

    /// <summary>Decodes ids back to text.</summary>
    string Decode(IEnumerable<int> ids);

    /// <summary>The string of each id on its own, one entry per id (for axis labels).</summary>
    string[] ToStrTokens(IEnumerable<int> ids);
}
