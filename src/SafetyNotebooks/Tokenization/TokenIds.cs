namespace SafetyNotebooks.Tokenization;

/// <summary>Checks shared by every tokenizer's decode path.</summary>
internal static class TokenIds
{
    /// <summary>
    /// Materialises <paramref name="ids"/> and throws <see cref="ArgumentOutOfRangeException"/> naming the first id outside
    /// <c>[0, vocabSize)</c>, its position and the vocabulary size, instead of dropping it from the text.
    /// </summary>
    public static int[] CheckInVocab(IEnumerable<int> ids, int vocabSize, string tokenizerName)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var array = ids as int[] ?? ids.ToArray();
        for (int i = 0; i < array.Length; i++)
            if ((uint)array[i] >= (uint)vocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), array[i],
                    $"Token id {array[i]} at position {i} is outside {tokenizerName}'s vocabulary [0, {vocabSize}) (vocab size {vocabSize}). " +
                    "Decode ids produced by this tokenizer, or by a model whose DVocab matches it.");
        return array;
    }
}
