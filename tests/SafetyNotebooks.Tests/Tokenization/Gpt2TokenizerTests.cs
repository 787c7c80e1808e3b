using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using Xunit;

namespace SafetyNotebooks.Tests.Tokenization;

public class Gpt2TokenizerTests
{
    static readonly Gpt2Tokenizer Tok = new();

    // Published GPT-2 ids (HF "gpt2" tokenizer / tiktoken "gpt2" encoding).
    [Theory]
    [InlineData("Hello world", new[] { 15496, 995 })]
    [InlineData(" the", new[] { 262 })]
    [InlineData("<|endoftext|>", new[] { 50256 })]
    [InlineData("Hello", new[] { 15496 })]
    [InlineData(" world", new[] { 995 })]
    public void Encode_MatchesPublishedGpt2Ids(string text, int[] expected) =>
        Assert.Equal(expected, Tok.Encode(text));

    [Fact]
    public void SpecialIds_AreEndOfText()
    {
        Assert.Equal(50257, Tok.VocabSize);
        Assert.Equal(50256, Tok.BosTokenId);
        Assert.Equal(50256, Tok.EosTokenId);
        Assert.Equal(50256, Tok.PadTokenId);
    }

    [Theory]
    [InlineData("Hello world")]
    [InlineData("The quick brown fox jumps over the lazy dog.\nNew line, tabs\tand émojis 🙂.")]
    [InlineData("")]
    public void Decode_RoundTrips(string text) => Assert.Equal(text, Tok.Decode(Tok.Encode(text)));

    [Fact]
    public void ToTokens_PrependsBos_AsInt64Row()
    {
        TorchRuntime.EnsureLoaded();
        using var t = Tok.ToTokens("Hello world");
        Assert.Equal(new long[] { 1, 3 }, t.shape);
        Assert.Equal(TorchSharp.torch.ScalarType.Int64, t.dtype);
        Assert.Equal(new long[] { 50256, 15496, 995 }, t.data<long>().ToArray());
        using var noBos = Tok.ToTokens("Hello world", prependBos: false);
        Assert.Equal(new long[] { 15496, 995 }, noBos.data<long>().ToArray());
    }

    [Fact]
    public void BatchToTokens_PadsWithEndOfText()
    {
        TorchRuntime.EnsureLoaded();
        using var b = Tok.ToTokens(new[] { "Hello world", " the" });
        Assert.Equal(new long[] { 50256, 15496, 995,   50256, 262, 50256 }, b.Tokens.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 1, 1,   1, 1, 0 }, b.AttentionMask.data<long>().ToArray());
        using var left = Tok.ToTokens(new[] { "Hello world", " the" }, paddingSide: PaddingSide.Left);
        Assert.Equal(new long[] { 50256, 15496, 995,   50256, 50256, 262 }, left.Tokens.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 1, 1,   0, 1, 1 }, left.AttentionMask.data<long>().ToArray());
    }

    [Fact]
    public void ToStrTokens_GivesEachTokensText()
    {
        Assert.Equal(new[] { "<|endoftext|>", "Hello", " world" }, Tok.ToStrTokens("Hello world"));
        Assert.Equal(new[] { "Hello", " world" }, Tok.ToStrTokens("Hello world", prependBos: false));
    }

    [Fact]
    public void ToString_DecodesTensor()
    {
        TorchRuntime.EnsureLoaded();
        using var t = TorchSharp.torch.tensor(new long[] { 15496, 995 });
        Assert.Equal("Hello world", Tok.ToString(t));
    }
}
