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
    public void SafetyBench_style_files_load_with_index_or_letter_answers_and_bad_items_are_named()
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
