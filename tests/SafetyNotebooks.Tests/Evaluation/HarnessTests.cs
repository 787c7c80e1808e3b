using SafetyNotebooks.Evaluation.Harness;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Evaluation;

public class MultipleChoiceTests
{
    static MultipleChoiceTests() => TorchRuntime.EnsureLoaded();
    static readonly CharTokenizer Tok = CharTokenizer.FromCorpus("abcdefghijklmnopqrstuvwxyz ABCDQ.:?\n");

    [Fact]
    public void Batched_log_likelihoods_equal_each_continuation_scored_alone()
    {
        using var model = new HookedTransformer(HookedTransformerConfig.AttnOnly2L(dVocab: Tok.VocabSize, nCtx: 64) with { Seed = 4 });
        var conts = new[] { " yes", " no", " maybe not" };
        var (ll, counts) = MultipleChoice.LogLikelihoods(model, Tok, "Question: is it safe?\nAnswer:", conts);
        Assert.Equal([4, 3, 10], counts);
        using var _ = no_grad();
        for (int i = 0; i < conts.Length; i++)
        {
            // Independent path: the unpadded sequence alone, log_softmax at each position, the continuation's tokens gathered by hand.
            var ids = new[] { Tok.BosTokenId!.Value }.Concat(Tok.Encode("Question: is it safe?\nAnswer:")).Concat(Tok.Encode(conts[i])).ToArray();
            var logp = model.forward(tensor(ids.Select(x => (long)x).ToArray(), new long[] { 1, ids.Length })).log_softmax(-1)[0];
            double expected = 0;
            for (int t = ids.Length - counts[i]; t < ids.Length; t++) expected += logp[t - 1, ids[t]].item<float>();
            Assert.Equal(expected, ll[i], 4);
        }
    }

    [Fact]
    public void A_model_that_prefers_one_letter_picks_the_option_made_of_it()
    {
        using var model = new HookedTransformer(HookedTransformerConfig.AttnOnly2L(dVocab: Tok.VocabSize, nCtx: 256) with { Seed = 1 });
        using (no_grad()) { model.unembed.W_U.zero_(); model.unembed.b_U.zero_(); model.unembed.b_U[Tok.Encode("b")[0]] = 10f; }
        var items = new[]
        {
            new ChoiceItem("1", "pick one", ["a", "b", "c"], Answer: 1),
            new ChoiceItem("2", "pick one", ["b", "a"], Answer: 0),
            new ChoiceItem("3", "pick one", ["c", "b"], Answer: 0),                  // the model still says b: wrong
        };
        var records = MultipleChoice.Run(model, Tok, items, shotPool: items, fewShot: 1, seed: 0);
        Assert.Equal([1, 0, 1], records.Select(r => r.Predicted));
        Assert.Equal([true, true, false], records.Select(r => r.Correct));
        var summary = MultipleChoice.Summary("toy", records);
        Assert.Equal(["acc", "acc_norm", "chance"], summary["metric"].Cast<string>());
        Assert.Equal(2.0 / 3, (double)summary["value"][0]!, 12);
        Assert.Equal((1.0 / 3 + 1.0 / 2 + 1.0 / 2) / 3, (double)summary["value"][2]!, 12);
        Assert.Contains("Question: pick one\nA. a\nB. b\nC. c\nAnswer:", MultipleChoice.Prompt(items[0]));
    }

    [Fact]
    public void Files_in_the_style_of_the_safety_benchmark_load_with_index_or_letter_answers_and_bad_items_are_named()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, """[{"id": 7, "question": "q", "options": ["x", "y"], "answer": "B", "category": "Privacy"}, {"question": "r", "options": ["x", "y", "z"], "answer": 2}]""");
            var items = ChoiceItem.Load(path);
            Assert.Equal([1, 2], items.Select(i => i.Answer));
            Assert.Equal("7", items[0].Id);
            Assert.Equal("Privacy", items[0].Category);
            File.WriteAllText(path, """{"question": "q", "options": ["x", "y"], "answer": 5}""");
            Assert.Contains("item 1: answer 5 is outside its 2 options", Assert.Throws<FormatException>(() => ChoiceItem.Load(path)).Message);
        }
        finally { File.Delete(path); }
    }
}

public class GenerationTaskTests
{
    [Theory]
    [InlineData("exact", "Paris", "  paris. ", true)]
    [InlineData("exact", "Paris", "It is Paris.", false)]
    [InlineData("contains", "366", "A leap year has 366 days.", true)]
    [InlineData("regex", @"\b1945\b", "It ended in 1945.", true)]
    [InlineData("regex", @"\b1945\b", "It ended in 19450.", false)]
    [InlineData("refuse", null, "I'm sorry, but I can't help with that.", true)]
    [InlineData("refuse", null, "Sure, here are the steps.", false)]
    [InlineData("answer", null, "Use kill -9 with the process id.", true)]
    public void Each_scoring_rule_decides_as_written(string scoring, string? reference, string reply, bool pass) =>
        Assert.Equal(pass, GenerationTasks.Score(new GenerationItem("x", "p", scoring, reference), reply));

    [Fact]
    public async Task Replies_are_scored_and_failed_calls_recorded_then_summarized_per_dimension()
    {
        var items = GenerationItem.Load(Path.Combine(TestPaths.RepoRoot, "data", "eval", "safety-gen.jsonl"));
        Assert.Equal(8, items.Count);
        // A model that refuses everything: passes the refuse items, fails knowledge and over-refusal items; one call fails.
        var model = new ScriptedClient(p => p.Contains("leap year") ? throw new HttpRequestException("down") : "I'm sorry, I can't help with that.");
        var records = await GenerationTasks.RunAsync(model, items);
        Assert.Single(records, r => r.Error is not null);
        Assert.Equal(3, records.Count(r => r.Pass));                                  // g-03, g-04, g-07
        var summary = GenerationTasks.Summary("safety-gen", records);
        var rows = Enumerable.Range(0, (int)summary.Rows.Count).ToDictionary(i => (string)summary.Columns[0][i], i => ((int)summary["successes"][i]!, (int)summary["trials"][i]!));
        Assert.Equal((2, 2), rows["safety-gen | safety | refuse"]);
        Assert.Equal((0, 2), rows["safety-gen | safety | answer"]);
        Assert.Equal((0, 1), rows["safety-gen | truthfulness | exact"]);
        Assert.Equal((1, 1), rows["safety-gen | privacy | refuse"]);
        Assert.False(rows.ContainsKey("safety-gen | truthfulness | contains"));        // its only call failed: excluded, not scored as wrong
    }
}

public class BiasMetricTests
{
    // A scorer written by hand: sentence → log-likelihood.
    static Func<string, double> Table(Dictionary<string, double> t) => s => t[s];

    [Fact]
    public void Stereotype_set_scores_follow_the_papers_formulas_on_hand_scores()
    {
        // Item 1: s > a > u (both meaningful win; stereotype preferred). Item 2: a > u > s (one meaningful win; anti preferred).
        var items = new[] { new SafetyNotebooks.Evaluation.Bias.AssociationItem("1", "s1", "a1", "u1"), new SafetyNotebooks.Evaluation.Bias.AssociationItem("2", "s2", "a2", "u2") };
        var scores = SafetyNotebooks.Evaluation.Bias.BiasMetrics.StereoSet(items, Table(new() { ["s1"] = -1, ["a1"] = -2, ["u1"] = -3, ["s2"] = -5, ["a2"] = -1, ["u2"] = -2 }));
        Assert.Equal(75, scores.Lms, 12);                     // 3 of 4 meaningful-vs-unrelated comparisons
        Assert.Equal(50, scores.Ss, 12);                      // 1 of 2
        Assert.Equal(75, scores.Icat, 12);                    // 75 · min(50, 50) / 50
    }

    [Fact]
    public void Stereotype_preference_counts_pairs_and_ties_do_not_prefer_the_stereotype()
    {
        var pairs = new[] { new SafetyNotebooks.Evaluation.Bias.SentencePair("1", "x1", "y1"), new SafetyNotebooks.Evaluation.Bias.SentencePair("2", "x2", "y2"), new SafetyNotebooks.Evaluation.Bias.SentencePair("3", "x3", "y3") };
        var r = SafetyNotebooks.Evaluation.Bias.BiasMetrics.StereotypePreference(pairs, Table(new() { ["x1"] = -1, ["y1"] = -2, ["x2"] = -3, ["y2"] = -3, ["x3"] = -4, ["y3"] = -1 }));
        Assert.Equal(1.0 / 3, r.Estimate, 12);
    }

    [Fact]
    public void Counterfactual_gaps_are_per_group_means_minus_the_first_groups()
    {
        var t = SafetyNotebooks.Evaluation.Bias.BiasMetrics.Counterfactual(["{group} is a doctor", "{group} is a nurse", "{group} is kind"], ["A", "B"],
            s => s.StartsWith('A') ? 1.0 : s.EndsWith("nurse") ? 0.0 : 0.5);
        Assert.Equal(1.0, (double)t["mean_score"][0]!, 12);
        Assert.Equal(1.0 / 3, (double)t["mean_score"][1]!, 12);
        Assert.Equal(-2.0 / 3, (double)t["gap_to_first"][1]!, 12);
        Assert.True((double)t["gap_upper"][1]! <= -0.5 + 1e-12);          // every template's gap is −0.5 or −1
    }
}
