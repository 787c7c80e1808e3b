using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using Xunit;

namespace SafetyNotebooks.Tests.Tokenization;

public class CharTokenizerTests
{
    [Fact]
    public void Ids_are_code_point_order_regardless_of_corpus_order()
    {
        // distinct chars of "banana!" sorted by code point: '!'(33) 'a'(97) 'b'(98) 'n'(110)
        var a = CharTokenizer.FromCorpus("banana!");
        var b = CharTokenizer.FromCorpus("!nab");
        Assert.Equal(new[] { "!", "a", "b", "n", "<bos>", "<pad>" }, a.Vocabulary);
        Assert.Equal(a.Vocabulary, b.Vocabulary);
        Assert.Equal(new[] { 2, 1, 3, 1, 3, 1, 0 }, a.Encode("banana!"));
        Assert.Equal(6, a.VocabSize);
        Assert.Equal(4, a.BosTokenId);
        Assert.Equal(4, a.EosTokenId);
        Assert.Equal(5, a.PadTokenId);
    }

    [Fact]
    public void Round_trips_and_handles_surrogate_pairs()
    {
        var tok = CharTokenizer.FromCorpus("héllo 🙂");
        Assert.Equal("🙂 hé", tok.Decode(tok.Encode("🙂 hé")));
        Assert.Single(tok.Encode("🙂"));
    }

    [Fact]
    public void Unknown_character_throws_naming_it()
    {
        var tok = CharTokenizer.FromAlphabet("abc");
        var e = Assert.Throws<ArgumentException>(() => tok.Encode("abz"));
        Assert.Contains("'z'", e.Message);
        Assert.Contains("position 2", e.Message);
    }

    [Fact]
    public void Without_specials_has_no_bos()
    {
        var tok = CharTokenizer.FromAlphabet("ab", specialTokens: false);
        Assert.Equal(2, tok.VocabSize);
        Assert.Null(tok.BosTokenId);
        Assert.Throws<InvalidOperationException>(() => tok.ToStrTokens("ab", prependBos: true));
    }
}

public class SyntheticTokenizerTests
{
    [Fact]
    public void Names_and_ids()
    {
        var tok = new SyntheticTokenizer(5, new[] { "<bos>", "=" }, bosToken: "<bos>");
        Assert.Equal(7, tok.VocabSize);
        Assert.Equal(new[] { "t0", "t1", "t2", "t3", "t4", "<bos>", "=" }, tok.Vocabulary);
        Assert.Equal(5, tok.BosTokenId);
        Assert.Null(tok.EosTokenId);
        Assert.Equal(5, tok.PadTokenId); // defaults to BOS
        Assert.Equal(new[] { 3, 1, 6 }, tok.Encode("t3  t1 ="));
        Assert.Equal("t3 t1 =", tok.Decode(new[] { 3, 1, 6 }));
        Assert.Equal(new[] { "<bos>", "t3", "t1", "=" }, tok.ToStrTokens("t3 t1 ="));
    }

    [Fact]
    public void Custom_names_and_errors()
    {
        var tok = new SyntheticTokenizer(new[] { "(", ")", "<pad>" }, padToken: "<pad>");
        Assert.Equal(2, tok.PadTokenId);
        Assert.Equal(new[] { 0, 0, 1 }, tok.Encode("( ( )"));
        Assert.Throws<ArgumentException>(() => tok.Encode("( ]"));
        Assert.Throws<ArgumentException>(() => new SyntheticTokenizer(new[] { "a", "a" }));
    }
}

public class TokenBatchTests
{
    static readonly SyntheticTokenizer Tok = new(4, new[] { "<bos>", "<pad>" }, bosToken: "<bos>", padToken: "<pad>");
    // ids: t0..t3 = 0..3, <bos> = 4, <pad> = 5

    [Fact]
    public void Right_padding_worked_by_hand()
    {
        TorchRuntime.EnsureLoaded();
        using var batch = Tok.ToTokens(new[] { "t1 t2 t3", "t0" });
        Assert.Equal(new long[] { 2, 4 }, batch.Tokens.shape);
        Assert.Equal(new long[] { 4, 1, 2, 3,   4, 0, 5, 5 }, batch.Tokens.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 1, 1, 1,   1, 1, 0, 0 }, batch.AttentionMask.data<long>().ToArray());
        Assert.Equal(new[] { 4, 2 }, batch.Lengths);
    }

    [Fact]
    public void Left_padding_worked_by_hand_no_bos()
    {
        TorchRuntime.EnsureLoaded();
        using var batch = Tok.ToTokens(new[] { "t1 t2 t3", "t0" }, prependBos: false, paddingSide: PaddingSide.Left);
        Assert.Equal(new long[] { 1, 2, 3,   5, 5, 0 }, batch.Tokens.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 1, 1,   0, 0, 1 }, batch.AttentionMask.data<long>().ToArray());
        Assert.Equal(new[] { "t1 t2 t3", "t0" }, Tok.ToStrings(batch.Tokens, batch.AttentionMask));
    }
}
