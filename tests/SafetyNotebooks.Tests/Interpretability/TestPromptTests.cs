using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

/// <summary>TestPrompt on hand-set logits and on a tiny model with a character tokenizer.</summary>
public class TestPromptTests
{
    static TestPromptTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Rank_logit_and_probability_of_the_answer_come_from_a_hand_set_logit_vector()
    {
        // logits [0, 2, 1, 2, −1]: token 2 has two larger logits (rank 2), probability e / (1 + 2e² + e + e⁻¹).
        var logits = tensor(new float[] { 0, 2, 1, 2, -1 });
        var r = TestPrompt.FromLogits(logits, new[] { 2 }, id => "t" + id, topK: 3);
        var e = Math.E;
        Assert.Equal(2L, r.Positions[0].Answer.Rank);
        Assert.Equal(1.0, r.Positions[0].Answer.Logit, 6);
        Assert.Equal(e / (1 + 2 * e * e + e + 1 / e), r.Positions[0].Answer.Prob, 6);
        var top = r.Positions[0].Top;
        Assert.Equal(new[] { 1, 3 }, top.Take(2).Select(t => t.Id).OrderBy(i => i).ToArray());
        Assert.All(top.Take(2), t => Assert.Equal(0L, t.Rank));                        // tied top tokens share rank 0
        Assert.Equal(2, top[2].Id);
        Assert.Equal(new[] { 2L }, r.AnswerRanks);
        Assert.Contains("Rank: 2", r.ToString());
        Assert.Contains("Top 2th token. Logit:  1.00", r.ToString());
        var df = r.ToDataFrame();
        Assert.Equal(4, df.Rows.Count);
        Assert.Equal("answer", (string)df["kind"][0]);
        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => TestPrompt.FromLogits(logits, new[] { 7 }));
        Assert.Contains("outside the vocabulary", bad.Message);
    }

    [Fact]
    public void Run_scores_every_answer_token_from_the_position_before_it()
    {
        using var _ = no_grad();
        var tok = CharTokenizer.FromAlphabet("abcde ");
        var model = AnalysisTestModels.Tiny(vocab: tok.VocabSize);
        var output = new StringWriter();
        var r = TestPrompt.Run(model, tok, "abc", "de", prependSpaceToAnswer: false, topK: 2, output: output);
        Assert.Equal(2, r.Positions.Length);
        // Reference: one forward over [bos a b c d e]; answer token 'e' is predicted at the position of 'd'.
        var ids = new[] { tok.BosTokenId!.Value }.Concat(tok.Encode("abcde")).Select(i => (long)i).ToArray();
        var logits = model.forward(tensor(ids, new long[] { 1, ids.Length }))[0];
        int e = tok.Encode("e")[0];
        var row = logits[4].to_type(ScalarType.Float64);
        Assert.Equal(row.softmax(0)[e].item<double>(), r.Positions[1].Answer.Prob, 5);
        Assert.Equal(row[e].item<double>(), r.Positions[1].Answer.Logit, 4);
        Assert.Contains("Tokenized answer: ['d', 'e']", output.ToString());
        var space = TestPrompt.Run(model, tok, "abc", "d", printDetails: false);
        Assert.Equal(new[] { " ", "d" }, space.AnswerTokens);                           // a space is prepended by default
    }
}
