using TorchSharp;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tokenization;

/// <summary>Which end of a row padding goes to when texts of different lengths are batched.</summary>
public enum PaddingSide
{
    /// <summary>Pads after the text (the default; positions of real tokens start at 0 in every row).</summary>
    Right,
    /// <summary>Pads before the text (last real token sits in the last column; convenient for generation).</summary>
    Left,
}

/// <summary>A padded batch of token ids.</summary>
/// <param name="Tokens">int64 <c>[batch, pos]</c>; padded positions hold the tokenizer's <see cref="ITokenizer.PadTokenId"/>.</param>
/// <param name="AttentionMask">int64 <c>[batch, pos]</c>: 1 for real tokens (including BOS), 0 for padding.</param>
/// <param name="Lengths">Number of real tokens in each row.</param>
public sealed record TokenBatch(Tensor Tokens, Tensor AttentionMask, int[] Lengths) : IDisposable
{
    /// <summary>Disposes both tensors.</summary>
    public void Dispose() { Tokens.Dispose(); AttentionMask.Dispose(); }
}

/// <summary>TransformerLens-style tensor helpers over any <see cref="ITokenizer"/>.</summary>
public static class TokenizerExtensions
{
    /// <summary>Encodes one text as int64 <c>[1, pos]</c>, with the BOS id first when <paramref name="prependBos"/>.</summary>
    /// <exception cref="InvalidOperationException">prependBos is true but the tokenizer has no BOS token.</exception>
    public static Tensor ToTokens(this ITokenizer tokenizer, string text, bool prependBos = true)
    {
        var ids = EncodeLong(tokenizer, text, prependBos);
        TorchRuntime.EnsureLoaded();
        return torch.tensor(ids, new long[] { 1, ids.Length }, dtype: ScalarType.Int64);
    }

    /// <summary>
    /// Encodes several texts into one padded batch (<c>[batch, maxLen]</c>) with its attention mask.
    /// </summary>
    public static TokenBatch ToTokens(this ITokenizer tokenizer, IEnumerable<string> texts, bool prependBos = true,
        PaddingSide paddingSide = PaddingSide.Right)
    {
        var rows = texts.Select(t => EncodeLong(tokenizer, t, prependBos)).ToArray();
        if (rows.Length == 0) throw new ArgumentException("No texts given.", nameof(texts));
        int width = rows.Max(r => r.Length);
        var tok = new long[rows.Length * width];
        var mask = new long[rows.Length * width];
        Array.Fill(tok, tokenizer.PadTokenId);
        for (int b = 0; b < rows.Length; b++)
        {
            int start = b * width + (paddingSide == PaddingSide.Left ? width - rows[b].Length : 0);
            Array.Copy(rows[b], 0, tok, start, rows[b].Length);
            Array.Fill(mask, 1L, start, rows[b].Length);
        }
        TorchRuntime.EnsureLoaded();
        var shape = new long[] { rows.Length, width };
        return new TokenBatch(torch.tensor(tok, shape, dtype: ScalarType.Int64),
            torch.tensor(mask, shape, dtype: ScalarType.Int64), rows.Select(r => r.Length).ToArray());
    }

    /// <summary>Per-token strings of a text (with the BOS string first when <paramref name="prependBos"/>), for plot labels.</summary>
    public static string[] ToStrTokens(this ITokenizer tokenizer, string text, bool prependBos = true) =>
        tokenizer.ToStrTokens(EncodeLong(tokenizer, text, prependBos).Select(x => (int)x));

    /// <summary>Per-token strings of a 1-D tensor or a single-row <c>[1, pos]</c> tensor of ids.</summary>
    public static string[] ToStrTokens(this ITokenizer tokenizer, Tensor tokens) => tokenizer.ToStrTokens(Row(tokens));

    /// <summary>Decodes a 1-D tensor or a single-row <c>[1, pos]</c> tensor of ids to text.</summary>
    public static string ToString(this ITokenizer tokenizer, Tensor tokens) => tokenizer.Decode(Row(tokens));

    /// <summary>Decodes each row of an int64 <c>[batch, pos]</c> tensor; with a mask, only positions where it is non-zero are kept.</summary>
    public static string[] ToStrings(this ITokenizer tokenizer, Tensor tokens, Tensor? attentionMask = null)
    {
        if (tokens.dim() != 2) throw new ArgumentException("Expected [batch, pos].", nameof(tokens));
        long width = tokens.shape[1];
        using var scope = torch.NewDisposeScope();
        var ids = IdsOf(tokens);
        var mask = attentionMask?.to_type(ScalarType.Int64).cpu().data<long>().ToArray();
        var result = new string[tokens.shape[0]];
        for (int b = 0; b < result.Length; b++)
        {
            var row = new List<int>();
            for (long p = 0; p < width; p++)
                if (mask is null || mask[b * width + p] != 0) row.Add(ids[b * width + p]);
            result[b] = tokenizer.Decode(row);
        }
        return result;
    }

    static long[] EncodeLong(ITokenizer tokenizer, string text, bool prependBos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = tokenizer.Encode(text);
        if (!prependBos) return ids.Select(i => (long)i).ToArray();
        if (tokenizer.BosTokenId is not int bos)
            throw new InvalidOperationException($"{tokenizer.GetType().Name} has no BOS token; pass prependBos: false.");
        var r = new long[ids.Length + 1];
        r[0] = bos;
        for (int i = 0; i < ids.Length; i++) r[i + 1] = ids[i];
        return r;
    }

    static int[] Row(Tensor tokens)
    {
        using var scope = torch.NewDisposeScope();
        if (tokens.dim() == 2 && tokens.shape[0] == 1) tokens = tokens[0];
        else if (tokens.dim() != 1) throw new ArgumentException("Expected a 1-D tensor or shape [1, pos]; use ToStrings for batches.", nameof(tokens));
        return IdsOf(tokens);
    }

    /// <summary>
    /// The ids of an integer tensor, flattened. Float tensors are refused (converting would truncate 2.7 to 2 silently), and
    /// ids beyond the int range are reported rather than overflowing; the tokenizer's Decode then checks its own range.
    /// </summary>
    static int[] IdsOf(Tensor tokens)
    {
        if (tokens.dtype is not (ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte))
            throw new ArgumentException(
                $"Token ids must be an integer tensor (int64) but are {tokens.dtype}; converting would silently truncate values. " +
                "Pass the ids the model or tokenizer produced (e.g. logits.argmax(-1)).", nameof(tokens));
        using var scope = torch.NewDisposeScope();
        var longs = tokens.to_type(ScalarType.Int64).cpu().flatten().data<long>().ToArray();
        var ids = new int[longs.Length];
        for (int i = 0; i < longs.Length; i++)
        {
            if (longs[i] < int.MinValue || longs[i] > int.MaxValue)
                throw new ArgumentOutOfRangeException(nameof(tokens), longs[i], $"Token id {longs[i]} at flat position {i} is not a valid id for any tokenizer (beyond the int range).");
            ids[i] = (int)longs[i];
        }
        return ids;
    }
}
