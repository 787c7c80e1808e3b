using SafetyNotebooks.Runtime;
using SafetyNotebooks.Models;
using SafetyNotebooks.Tests.Training;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

public class GenerationTests
{
    public GenerationTests() => TorchRuntime.EnsureLoaded();

    // Next-token logits by current token (vocab 4). Argmax: 0→2, 1→3, 2→1, 3→0.
    static readonly float[,] Table =
    {
        { 0.0f, 1.0f, 2.0f, -1.0f },
        { 0.5f, 0.0f, 0.0f, 1.5f },
        { 0.0f, 3.0f, 1.0f, 0.0f },
        { 2.0f, 0.0f, 1.0f, 1.0f },
    };

    static double LogSoftmax(int row, int col)
    {
        double lse = Math.Log(Enumerable.Range(0, 4).Sum(j => Math.Exp(Table[row, j])));
        return Table[row, col] - lse;
    }

    [Fact]
    public void Greedy_follows_argmax_and_log_probs_are_log_softmax_at_picked_tokens()
    {
        var model = new MarkovLogits(Table);
        using var prompt = tensor(new long[] { 0, 3 }).reshape(2, 1);
        using var r = Generation.Generate(model, prompt, GenerationOptions.Greedy(3));
        // row 0: 0 → 2 → 1 → 3 ; row 1: 3 → 0 → 2 → 1
        Assert.Equal(new long[] { 0, 2, 1, 3, 3, 0, 2, 1 }, r.Tokens.data<long>().ToArray());
        var expected = new[] { LogSoftmax(0, 2), LogSoftmax(2, 1), LogSoftmax(1, 3), LogSoftmax(3, 0), LogSoftmax(0, 2), LogSoftmax(2, 1) };
        var got = r.LogProbs.data<float>().ToArray();
        for (int i = 0; i < 6; i++) Assert.Equal(expected[i], got[i], 5);
        Assert.All(r.GeneratedMask.data<bool>().ToArray(), Assert.True);
    }

    [Fact]
    public void Top_k1_sampling_equals_greedy_and_log_probs_ignore_temperature()
    {
        var model = new MarkovLogits(Table);
        using var prompt = tensor(new long[] { 1 }).reshape(1, 1);
        using var g = Generation.Generate(model, prompt, GenerationOptions.Greedy(5));
        using var s = Generation.Generate(model, prompt, new GenerationOptions { MaxNewTokens = 5, TopK = 1, Temperature = 5, Seed = 3 });
        Assert.Equal(g.Tokens.data<long>().ToArray(), s.Tokens.data<long>().ToArray());
        // 1 → 3, picked with log_softmax of the temperature-1 logits
        Assert.Equal(LogSoftmax(1, 3), s.LogProbs.data<float>()[0], 5);
    }

    [Fact]
    public void Top_k_masks_all_but_k_largest()
    {
        using var l = tensor(new[] { 1f, 3f, 2f, 0f }).reshape(1, 4);
        using var f = Generation.ApplyTopK(l, 2);
        var v = f.data<float>().ToArray();
        Assert.Equal(new[] { float.NegativeInfinity, 3f, 2f, float.NegativeInfinity }, v);
    }

    [Theory]
    // probabilities 0.5, 0.3, 0.15, 0.05 (token order shuffled: ids 2, 0, 3, 1)
    [InlineData(0.4, new[] { false, false, true, false })]   // 0.5 alone reaches 0.4
    [InlineData(0.7, new[] { true, false, true, false })]    // 0.5 + 0.3 = 0.8 ≥ 0.7
    [InlineData(0.85, new[] { true, false, true, true })]    // needs 0.5 + 0.3 + 0.15
    [InlineData(1.0, new[] { true, true, true, true })]
    public void Top_p_keeps_smallest_nucleus(double p, bool[] kept)
    {
        using var l = tensor(new[] { 0.3f, 0.05f, 0.5f, 0.15f }).log().reshape(1, 4);
        using var f = Generation.ApplyTopP(l, p);
        Assert.Equal(kept, f.data<float>().ToArray().Select(x => !float.IsNegativeInfinity(x)).ToArray());
    }

    [Fact]
    public void Stops_at_eos_per_row_padding_finished_rows()
    {
        // EOS = 3. Greedy: row 0 prompt 1 → 3 (done); row 1 prompt 2 → 1 → 3 (done). Stops after 2 new tokens.
        var model = new MarkovLogits(Table);
        using var prompt = tensor(new long[] { 1, 2 }).reshape(2, 1);
        using var r = Generation.Generate(model, prompt, new GenerationOptions { DoSample = false, MaxNewTokens = 10, EosTokenId = 3, PadTokenId = 0 });
        Assert.Equal(2, r.NewTokens);
        Assert.Equal(new long[] { 1, 3, 0, 2, 1, 3 }, r.Tokens.data<long>().ToArray());
        Assert.Equal(new[] { true, false, true, true }, r.GeneratedMask.data<bool>().ToArray());
        Assert.Equal(0f, r.LogProbs.data<float>()[1]);
    }

    [Fact]
    public void Same_seed_same_samples_different_seed_differs()
    {
        var model = new MarkovLogits(new float[4, 4]); // uniform
        using var prompt = zeros(new long[] { 3, 1 }, dtype: ScalarType.Int64);
        long[] Run(long seed)
        {
            using var r = Generation.Generate(model, prompt, new GenerationOptions { MaxNewTokens = 20, Seed = seed });
            return r.Tokens.data<long>().ToArray();
        }
        var a = Run(7);
        Assert.Equal(a, Run(7));
        Assert.NotEqual(a, Run(8));
        Assert.Contains(a.Skip(1), t => t != a[1]); // actually random, not constant
    }

    [Fact]
    public void Generate_text_with_synthetic_tokenizer()
    {
        // tokens t0..t2 plus <bos> = 3, also used as EOS here.
        var tok = new SafetyNotebooks.Tokenization.SyntheticTokenizer(3, new[] { "<bos>" }, bosToken: "<bos>", eosToken: "<bos>");
        var model = new MarkovLogits(Table);
        // prompt "t1": 1 → 3 (= EOS, stop). Decoded text keeps the generated EOS name.
        Assert.Equal("t1 <bos>", Generation.GenerateText(model, tok, "t1", GenerationOptions.Greedy(5)));
        // prompt "t0": 0 → 2 → 1 → 3 (EOS)
        Assert.Equal("t0 t2 t1 <bos>", Generation.GenerateText(model, tok, "t0", GenerationOptions.Greedy(5)));
    }

    [Fact]
    public void Context_window_crops_input()
    {
        var model = new MarkovLogits(Table);
        using var prompt = zeros(new long[] { 1, 6 }, dtype: ScalarType.Int64);
        using var r = Generation.Generate(model, prompt, new GenerationOptions { DoSample = false, MaxNewTokens = 4, ContextWindow = 4 });
        Assert.Equal(4, model.MaxInputLength);
        Assert.Equal(new long[] { 1, 10 }, r.Tokens.shape);
    }
}

/// <summary>Repetition/frequency/presence penalties and beam search, worked by hand on lookup-table models.</summary>
public class GenerationPenaltyAndBeamTests
{
    public GenerationPenaltyAndBeamTests() => TorchRuntime.EnsureLoaded();

    // Argmax by current token: 0→2, 1→3, 2→1, 3→0 (as in GenerationTests).
    static readonly float[,] Table =
    {
        { 0.0f, 1.0f, 2.0f, -1.0f },
        { 0.5f, 0.0f, 0.0f, 1.5f },
        { 0.0f, 3.0f, 1.0f, 0.0f },
        { 2.0f, 0.0f, 1.0f, 1.0f },
    };

    static long[] Greedy(GenerationOptions o, params long[] prompt)
    {
        using var p = tensor(prompt).unsqueeze(0);
        using var r = Generation.Generate(new MarkovLogits(Table), p, o);
        return r.Tokens[0].data<long>().ToArray();
    }

    [Fact]
    public void Repetition_penalty_divides_positive_and_multiplies_negative_logits_of_present_tokens()
    {
        using var logits = tensor(new[] { 2f, -1f, 0.5f, -2f }).unsqueeze(0);
        using var present = tensor(new[] { true, true, false, false }).unsqueeze(0);
        using var r = Generation.ApplyRepetitionPenalty(logits, present, 2.0);
        Assert.Equal(new[] { 1f, -2f, 0.5f, -2f }, r.data<float>().ToArray());
    }

    [Fact]
    public void Repetition_penalty_changes_greedy_choices_as_worked_by_hand()
    {
        // Prompt 0 3: row 3 = {2, 0, 1, 1}; 0 and 3 are present → {0.67, 0, 1, 0.33} → 2. Then row 2 = {0, 3, 1, 0}: 1 is new → 1.
        // Then row 1 = {0.5, 0, 0, 1.5}, all present → {0.17, 0, 0, 0.5} → 3.
        Assert.Equal(new long[] { 0, 3, 2, 1, 3 }, Greedy(GenerationOptions.Greedy(3) with { RepetitionPenalty = 3 }, 0, 3));
        Assert.Equal(new long[] { 0, 3, 0, 2, 1 }, Greedy(GenerationOptions.Greedy(3), 0, 3));
    }

    [Fact]
    public void Frequency_presence_penalty_follows_openai_formula()
    {
        using var logits = ones(1, 4);
        using var counts = tensor(new[] { 0f, 1f, 3f, 0f }).unsqueeze(0);
        using var r = Generation.ApplyFrequencyPresencePenalty(logits, counts, 0.5, 0.25);
        var v = r.data<float>().ToArray();
        Assert.Equal(new[] { 1f, 0.25f, -0.75f, 1f }, v);
    }

    [Fact]
    public void Frequency_presence_penalty_count_generated_tokens_only()
    {
        // Prompt 3 3 1: row 1 = {0.5, 0, 0, 1.5} → 3 (3 only appears in the prompt, which OpenAI's penalties ignore).
        // Counting the prompt would give 3 → 1.5 − 2 − 5 and pick 0 instead.
        Assert.Equal(new long[] { 3, 3, 1, 3 }, Greedy(GenerationOptions.Greedy(1) with { FrequencyPenalty = 1, PresencePenalty = 5 }, 3, 3, 1));
    }

    [Fact]
    public void Frequency_penalty_grows_with_each_repetition()
    {
        // Self-loop 0 → 0 (1.0 vs 0.5 for 1). Frequency 0.3: 0 (1.0), 0 (0.7), then 0 at 0.4 loses to 1 (0.5);
        // from 1: {0 − 0.6, 1 − 0.3, 0.9, 0} → 2. Without the penalty: 0 forever.
        var table = new float[,] { { 1f, 0.5f, 0f, 0f }, { 0f, 1f, 0.9f, 0f }, { 0f, 0f, 1f, 0f }, { 0f, 0f, 0f, 1f } };
        using var p = zeros(1, 1, dtype: ScalarType.Int64);
        using var r = Generation.Generate(new MarkovLogits(table), p, GenerationOptions.Greedy(4) with { FrequencyPenalty = 0.3 });
        Assert.Equal(new long[] { 0, 0, 0, 1, 2 }, r.Tokens[0].data<long>().ToArray());
        using var plain = Generation.Generate(new MarkovLogits(table), p, GenerationOptions.Greedy(4));
        Assert.Equal(new long[] { 0, 0, 0, 0, 0 }, plain.Tokens[0].data<long>().ToArray());
    }

    [Fact]
    public void A_padded_prompt_for_a_model_without_masks_is_refused_with_the_fix()
    {
        using var prompt = tensor(new long[] { 0, 1, 2, 3 }, new long[] { 2, 2 });
        using var mask = tensor(new long[] { 0, 1, 1, 1 }, new long[] { 2, 2 });
        var e = Assert.Throws<ArgumentException>(() => Generation.Generate(new MarkovLogits(Table), prompt, GenerationOptions.Greedy(2), mask));
        Assert.Contains("A padded prompt needs a HookedTransformer", e.Message);
        // An all-ones mask is no padding: fine for any model.
        using var allReal = ones(2, 2, dtype: ScalarType.Int64);
        using var r = Generation.Generate(new MarkovLogits(Table), prompt, GenerationOptions.Greedy(1), allReal);
        Assert.Equal(new long[] { 0, 1, 3, 2, 3, 0 }, r.Tokens.data<long>().ToArray());
    }

    static readonly float[,] BeamTable = LogTable(new[,]
    {
        { 0.1, 0.5, 0.4 },
        { 1 / 3.0, 1 / 3.0, 1 / 3.0 },
        { 0.9, 0.05, 0.05 },
    });

    static float[,] LogTable(double[,] p)
    {
        var t = new float[p.GetLength(0), p.GetLength(1)];
        for (int i = 0; i < p.GetLength(0); i++) for (int j = 0; j < p.GetLength(1); j++) t[i, j] = (float)Math.Log(p[i, j]);
        return t;
    }

    [Fact]
    public void Beam_search_finds_the_likelier_sequence_greedy_misses()
    {
        // Greedy: 0 → 1 (0.5) → any (1/3): 0.167. Beam 2: 0 → 2 (0.4) → 0 (0.9): 0.36.
        var model = new MarkovLogits(BeamTable);
        using var prompt = zeros(1, 1, dtype: ScalarType.Int64);
        using var greedy = Generation.Generate(model, prompt, GenerationOptions.Greedy(2));
        Assert.Equal(1L, greedy.Tokens[0, 1].item<long>());
        using var beam = Generation.Generate(model, prompt, GenerationOptions.Greedy(2) with { NumBeams = 2 });
        Assert.Equal(new long[] { 0, 2, 0 }, beam.Tokens[0].data<long>().ToArray());
        var lp = beam.LogProbs[0].data<float>().ToArray();
        Assert.Equal(Math.Log(0.4), lp[0], 5);
        Assert.Equal(Math.Log(0.9), lp[1], 5);
    }

    static readonly float[,] ReturnTable = LogTable(new[,]
    {
        { 0.1, 0.5, 0.4 },
        { 0.2, 0.3, 0.5 },
        { 0.9, 0.05, 0.05 },
    });

    [Fact]
    public void Beam_search_returns_the_top_n_beams_per_prompt_best_first()
    {
        // Prompt [0], 3 beams, 2 steps. Step 1: [1] .5, [2] .4, [0] .1. Step 2: [2,0] .36, [1,2] .25, [1,1] .15, [1,0] .10, ...
        // Prompt [2]: step 1 [0] .9, then [0,1] .45, [0,2] .36, [0,0] .09 beat every continuation of [1]/[2] (≤ .045).
        var model = new MarkovLogits(ReturnTable);
        using var prompts = tensor(new long[] { 0, 2 }, new long[] { 2, 1 });
        var o = GenerationOptions.Greedy(2) with { NumBeams = 3, NumReturnSequences = 3 };
        using var r = Generation.Generate(model, prompts, o);
        Assert.Equal(new long[] { 6, 3 }, r.Tokens.shape);
        Assert.Equal(new long[] { 0, 2, 0, 0, 1, 2, 0, 1, 1, 2, 0, 1, 2, 0, 2, 2, 0, 0 }, r.Tokens.data<long>().ToArray());
        var lp = r.LogProbs.data<float>().ToArray();
        var expected = new[] { 0.4, 0.9, 0.5, 0.5, 0.5, 0.3, 0.9, 0.5, 0.9, 0.4, 0.9, 0.1 }.Select(p => Math.Log(p)).ToArray();
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], lp[i], 5);

        // n = 2 keeps the first two of each prompt; n = 1 is the plain beam search result.
        using var two = Generation.Generate(model, prompts, o with { NumReturnSequences = 2 });
        Assert.Equal(new long[] { 0, 2, 0, 0, 1, 2, 2, 0, 1, 2, 0, 2 }, two.Tokens.data<long>().ToArray());
        using var one = Generation.Generate(model, prompts, o with { NumReturnSequences = 1 });
        Assert.Equal(new long[] { 0, 2, 0, 2, 0, 1 }, one.Tokens.data<long>().ToArray());
        using var plain = Generation.Generate(model, prompts, GenerationOptions.Greedy(2) with { NumBeams = 3 });
        Assert.Equal(new long[] { 0, 2, 0, 2, 0, 1 }, plain.Tokens.data<long>().ToArray());

        var tooMany = Assert.Throws<ArgumentOutOfRangeException>(() => Generation.Generate(model, prompts, o with { NumReturnSequences = 4 }));
        Assert.Contains("NumBeams", tooMany.Message);
        var greedy = Assert.Throws<ArgumentOutOfRangeException>(() => Generation.Generate(model, prompts, GenerationOptions.Greedy(2) with { NumReturnSequences = 2 }));
        Assert.Contains("DoSample", greedy.Message);
    }

    [Fact]
    public void Sampling_with_num_return_sequences_draws_independent_samples_per_prompt()
    {
        // Uniform over 4 tokens: 8 samples of 4 tokens per prompt; each row starts with its own prompt, and the samples differ.
        var model = new MarkovLogits(new float[4, 4]);
        using var prompts = tensor(new long[] { 1, 3 }, new long[] { 2, 1 });
        var o = new GenerationOptions { MaxNewTokens = 4, Seed = 7, NumReturnSequences = 8 };
        using var r = Generation.Generate(model, prompts, o);
        Assert.Equal(new long[] { 16, 5 }, r.Tokens.shape);
        for (int row = 0; row < 16; row++) Assert.Equal(row < 8 ? 1L : 3L, r.Tokens[row, 0].item<long>());
        var samples = Enumerable.Range(0, 16).Select(row => string.Join(",", r.Tokens[row].data<long>().ToArray().Skip(1))).ToList();
        Assert.True(samples.Take(8).Distinct().Count() > 1 && samples.Skip(8).Distinct().Count() > 1, string.Join(" | ", samples));
        for (int i = 0; i < 16 * 4; i++) Assert.Equal(Math.Log(0.25), r.LogProbs.data<float>()[i], 5);
        using var single = Generation.Generate(model, prompts, o with { NumReturnSequences = 1 });
        Assert.Equal(new long[] { 2, 5 }, single.Tokens.shape);
    }

    [Theory]
    // EOS = 2. Step 1 from 0: [2] ends with p 0.4 (score log 0.4 / 1). Step 2: [1, 2] ends with p 0.55 × 0.6 = 0.33
    // (score log 0.33 / 2^lp). lp = 1: −0.554 beats −0.916 → [1, 2]. lp = 0: −1.109 loses → [2] (output as long as the best hypothesis).
    [InlineData(1.0, new long[] { 0, 1, 2 }, new[] { true, true })]
    [InlineData(0.0, new long[] { 0, 2 }, new[] { true })]
    public void Beam_search_length_penalty_as_huggingface(double lengthPenalty, long[] expected, bool[] generated)
    {
        var table = LogTable(new[,]
        {
            { 0.05, 0.55, 0.4 },
            { 0.3, 0.1, 0.6 },
            { 1 / 3.0, 1 / 3.0, 1 / 3.0 },
        });
        var model = new MarkovLogits(table);
        using var prompt = zeros(1, 1, dtype: ScalarType.Int64);
        using var r = Generation.Generate(model, prompt, GenerationOptions.Greedy(2, eosTokenId: 2) with { NumBeams = 2, LengthPenalty = lengthPenalty });
        Assert.Equal(expected, r.Tokens[0].data<long>().ToArray());
        Assert.Equal(generated, r.GeneratedMask[0].data<bool>().ToArray());
    }

    [Fact]
    public void Beam_search_with_cache_equals_without_and_padded_rows_equal_rows_alone()
    {
        var model = HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gpt2-tiny"));
        using var tokens = tensor(new long[] { 50256, 50256, 464, 3290, 318, 257 }, new long[] { 1, 6 }).expand(2, 6).clone();
        tokens[1].copy_(tensor(new long[] { 40, 588, 262, 3290, 11, 290 }));
        using var mask = tensor(new long[] { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, new long[] { 2, 6 });
        var o = GenerationOptions.Greedy(6) with { NumBeams = 3 };
        using var cached = Generation.Generate(model, tokens, o, mask);
        using var uncached = Generation.Generate(model, tokens, o with { UseCache = false }, mask);
        Assert.Equal(uncached.Tokens.data<long>().ToArray(), cached.Tokens.data<long>().ToArray());
        using var row0 = Generation.Generate(model, tokens[0, 2..].unsqueeze(0), o);
        Assert.Equal(row0.Tokens[0, 4..].data<long>().ToArray(), cached.Tokens[0, 6..].data<long>().ToArray());
    }
}
