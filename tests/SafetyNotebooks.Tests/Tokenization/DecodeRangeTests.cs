using SafetyNotebooks.Tokenization;
using static TorchSharp.torch;
using Xunit;

namespace SafetyNotebooks.Tests.Tokenization;

/// <summary>Decode never drops an id silently (issue 14): out-of-range ids throw, naming the id and the vocab size.</summary>
public class DecodeRangeTests
{
    public static IEnumerable<object[]> Tokenizers() => new[]
    {
        new object[] { new Gpt2Tokenizer() },
        new object[] { CharTokenizer.FromAlphabet("abc") },
        new object[] { new SyntheticTokenizer(5) },
    };

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Out_of_range_ids_throw_naming_the_id_and_vocab_size(ITokenizer tok)
    {
        foreach (var bad in new[] { tok.VocabSize, tok.VocabSize + 1000, -1 })
        {
            var ids = new[] { 0, bad, 1 };
            foreach (var decode in new Func<int[], object>[] { i => tok.Decode(i), i => tok.ToStrTokens(i) })
            {
                var e = Assert.Throws<ArgumentOutOfRangeException>(() => decode(ids));
                Assert.Contains($"Token id {bad} at position 1", e.Message);
                Assert.Contains($"vocab size {tok.VocabSize}", e.Message);
            }
        }
        Assert.Equal(tok.ToStrTokens(new[] { 0 })[0] + tok.ToStrTokens(new[] { 1 })[0],
            tok is SyntheticTokenizer ? tok.Decode(new[] { 0, 1 }).Replace(" ", "") : tok.Decode(new[] { 0, 1 }));
    }

    [Fact]
    public void Tensor_decoding_refuses_float_ids_and_out_of_range_ids()
    {
        SafetyNotebooks.Runtime.TorchRuntime.EnsureLoaded();
        var tok = CharTokenizer.FromAlphabet("abc", specialTokens: false);
        Assert.Equal("ba", tok.ToString(tensor(new long[] { 1, 0 })));
        var f = Assert.Throws<ArgumentException>(() => tok.ToString(tensor(new float[] { 1.9f, 0f })));   // was decoded as "ba"
        Assert.Contains("Float32", f.Message);
        var big = Assert.Throws<ArgumentOutOfRangeException>(() => tok.ToStrings(tensor(new long[] { 0, 1L << 40 }, new long[] { 1, 2 })));
        Assert.Contains((1L << 40).ToString(), big.Message);
        var oor = Assert.Throws<ArgumentOutOfRangeException>(() => tok.ToStrings(tensor(new long[] { 0, 3 }, new long[] { 1, 2 })));
        Assert.Contains("vocab size 3", oor.Message);
    }
}
