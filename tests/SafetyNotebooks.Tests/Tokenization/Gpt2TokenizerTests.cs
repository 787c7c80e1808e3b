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
    public void Encode_matches_published_gpt2_ids(string text, int[] expected) =>
        Assert.Equal(expected, Tok.Encode(text));

    [Fact]
    public void End_of_text_is_its_special_id_whatever_was_encoded_before()
    {
        // Regression: encoding text that holds "<|endoftext|>" as ordinary characters first must not change how the
        // special token encodes later (the tokenizer's word cache once made the result depend on test order).
        var tok = new Gpt2Tokenizer();
        var asText = tok.Inner.EncodeToIds("<|endoftext|>", considerPreTokenization: false, considerNormalization: false);
        Assert.True(asText.Count > 1, "as ordinary characters the string is several byte-pair tokens");
        Assert.Equal(new[] { 50256 }, tok.Encode("<|endoftext|>"));
        Assert.Equal(new[] { 15496, 50256, 995 }, tok.Encode("Hello<|endoftext|> world"));
    }

    [Theory]
    [InlineData("1999")]
    [InlineData("2015")]
    public void Common_years_are_single_tokens_as_lesson_02_says(string year) =>
        Assert.Single(Tok.Encode(year));

    [Fact]
    public void Special_ids_are_end_of_text()
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
    public void Decode_round_trips(string text) => Assert.Equal(text, Tok.Decode(Tok.Encode(text)));

    [Fact]
    public void To_tokens_prepends_bos_as_int64_row()
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
    public void Batch_to_tokens_pads_with_end_of_text()
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
    public void To_str_tokens_gives_each_tokens_text()
    {
        Assert.Equal(new[] { "<|endoftext|>", "Hello", " world" }, Tok.ToStrTokens("Hello world"));
        Assert.Equal(new[] { "Hello", " world" }, Tok.ToStrTokens("Hello world", prependBos: false));
    }

    [Fact]
    public void To_string_decodes_tensor()
    {
        TorchRuntime.EnsureLoaded();
        using var t = TorchSharp.torch.tensor(new long[] { 15496, 995 });
        Assert.Equal("Hello world", Tok.ToString(t));
    }
    // Long pre-tokens (issue 14, denial of service). The reference for "what GPT-2 / tiktoken gives" is
    // Microsoft.ML.Tokenizers' own full encode (Inner.EncodeToIds), which the ids above check against GPT-2.
    const int Max = Gpt2Tokenizer.MaxPreTokenLength;

    [Fact]
    public void Encode_ordinary_text_is_identical_to_tiktoken()
    {
        var text = "The cat's <|endoftext|> naïve café — 日本語のテキスト 🙂🙂\n\n    indented code(x) { return x * 2; }\r\n" +
                   "https://example.com/a/b?c=d&e=f 1234567890 " + new string('=', 80) + "\t\t" + new string(' ', 100) + "end";
        Assert.Equal(Tok.Inner.EncodeToIds(text), Tok.Encode(text));
    }

    [Theory]
    [InlineData('a')]
    [InlineData('z')]
    [InlineData(' ')]
    [InlineData('!')]
    [InlineData('7')]
    public void Encode_pre_token_of_exactly_the_limit_is_identical_to_tiktoken(char c)
    {
        // One pre-token of exactly the limit (a run of letters, whitespace, punctuation or digits) is encoded whole.
        var word = new string(c, Max);
        Assert.Equal(Max, Tok.Inner.PreTokenizer!.PreTokenize(word).Single().Length);
        Assert.Equal(Tok.Inner.EncodeToIds(word), Tok.Encode(word));
        Assert.Equal(word, Tok.Decode(Tok.Encode(word)));
    }

    [Fact]
    public void Encode_pre_token_one_over_the_limit_is_encoded_in_pieces_and_round_trips()
    {
        // "x" + 256 × 'a' is one pre-token of 257 chars. Whole, BPE gives "x" "aaaa"×64 (65 ids) with the last 'a'
        // merged into the final "aaaa"; cut after 256 chars it is the first 256 chars' ids, then 'a' (id 64) alone.
        var word = "x" + new string('a', Max);
        int aaaa = Tok.Inner.EncodeToIds("aaaa").Single();
        var expected = Tok.Inner.EncodeToIds(word[..Max]).Append(64).ToArray();
        Assert.Equal(expected, Tok.Encode(word));
        Assert.Equal(66, expected.Length);
        Assert.Equal(65, Tok.Inner.EncodeToIds(word).Count); // tiktoken's ids differ only for such long runs
        Assert.Equal(Enumerable.Repeat(aaaa, 63), expected.Skip(1).Take(63));
        Assert.Equal(word, Tok.Decode(Tok.Encode(word)));
    }

    [Fact]
    public void Encode_never_splits_a_surrogate_pair()
    {
        // 255 'a' then emoji pairs: a cut after 256 chars would fall between the halves of the first emoji.
        var word = new string('a', Max - 1) + string.Concat(Enumerable.Repeat("\U0001F642", 200));
        Assert.Equal(word, Tok.Decode(Tok.Encode(word)));
        Assert.DoesNotContain("\uFFFD", Tok.Decode(Tok.Encode(word)));
    }

    [Fact]
    public void Encode_one_megabyte_of_one_letter_is_linear_and_round_trips()
    {
        // Every piece of 256 'a' is "aaaa" × 64: 2^20 / 4 ids, all the same.
        var text = new string('a', 1 << 20);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var ids = Tok.Encode(text);
        var encode = sw.Elapsed.TotalSeconds;
        var back = Tok.Decode(ids);
        Console.WriteLine($"1 MB of 'a': encode {encode:0.00} s, encode+decode {sw.Elapsed.TotalSeconds:0.00} s");
        Assert.Equal(1 << 18, ids.Length);
        Assert.All(ids, id => Assert.Equal(24794, id)); // "aaaa" in GPT-2's vocabulary
        Assert.Equal(text, back);
    }

    [Fact]
    public void Encode_one_megabyte_of_random_bytes_round_trips_with_tiktokens_ids()
    {
        var bytes = new byte[1 << 20];
        new Random(14).NextBytes(bytes);
        var text = System.Text.Encoding.UTF8.GetString(bytes); // invalid sequences become U+FFFD
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var ids = Tok.Encode(text);
        Console.WriteLine($"1 MB of random bytes: encode {sw.Elapsed.TotalSeconds:0.00} s, {ids.Length} ids");
        Assert.Equal(text, Tok.Decode(ids));
        // Random bytes break into short pre-tokens, so these are exactly tiktoken's ids.
        Assert.True(Tok.Inner.PreTokenizer!.PreTokenize(text).Max(s => s.Length) <= Max);
        Assert.Equal(Tok.Inner.EncodeToIds(text), ids);
    }

    [Fact]
    public void Encode_one_megabyte_of_random_unicode_in_one_run_round_trips()
    {
        // Random letters from the CJK block: GPT-2's regex keeps them all in one pre-token of 2^18 chars.
        var rng = new Random(14);
        var text = new string(Enumerable.Range(0, 1 << 18).Select(_ => (char)(0x4E00 + rng.Next(20000))).ToArray());
        Assert.Single(Tok.Inner.PreTokenizer!.PreTokenize(text));
        var ids = Tok.Encode(text);
        Assert.Equal(text, Tok.Decode(ids));
        // 3 UTF-8 bytes a char: at most one id per byte, and GPT-2 has few tokens of two or more CJK chars.
        Assert.InRange(ids.Length, text.Length / 2, 3 * text.Length);
    }

    [Fact]
    public void Encode_random_scalar_values_round_trip()
    {
        var rng = new Random(7);
        var sb = new System.Text.StringBuilder();
        while (sb.Length < 1 << 20)
        {
            int cp = rng.Next(0x20, 0x110000);
            if (cp is >= 0xD800 and <= 0xDFFF) continue;
            sb.Append(char.ConvertFromUtf32(cp));
        }
        var text = sb.ToString();
        Assert.Equal(text, Tok.Decode(Tok.Encode(text)));
    }
}
