using SafetyNotebooks.Evaluation.Guardrails;
using Xunit;

namespace SafetyNotebooks.Tests.Evaluation;

public class ToxicityTests
{
    static readonly string Data = Path.Combine(TestPaths.RepoRoot, "data", "guardrails", "toxicity-labelled.jsonl");

    [Fact]
    public void Features_hash_with_fnv1a_so_they_are_the_same_in_every_process()
    {
        // FNV-1a 32-bit test vectors (Fowler, Noll, Vo): "" → 0x811c9dc5, "a" → 0xe40c292c, "foobar" → 0xbf9cf968.
        Assert.Equal(0x811c9dc5u, ToxicityClassifier.Fnv1a(""));
        Assert.Equal(0xe40c292cu, ToxicityClassifier.Fnv1a("a"));
        Assert.Equal(0xbf9cf968u, ToxicityClassifier.Fnv1a("foobar"));
        var f = ToxicityClassifier.Features("You fool, you FOOL");
        Assert.Equal(2, f[ToxicityClassifier.Dim - 1]);                                    // the lexicon slot counts "fool" twice
        Assert.Equal(2, f[(int)(ToxicityClassifier.Fnv1a("fool") % (ToxicityClassifier.Dim - 1))]);
    }

    [Fact]
    public void The_classifier_flags_held_out_hostility_and_rarely_neutral_text()
    {
        var all = ToxicityClassifier.LoadJsonl(Data);
        var train = all.Where(e => e.Split == "train").ToList();
        var test = all.Where(e => e.Split == "test").ToList();
        Assert.Empty(train.Select(e => e.Text).Intersect(test.Select(e => e.Text)));
        var c = ToxicityClassifier.Train(train, seed: 0);
        Assert.Equal(c.Probability("Shut up, you fool."), ToxicityClassifier.Train(train, seed: 0).Probability("Shut up, you fool."));   // seeded
        int tp = test.Count(e => e.Toxic && c.Probability(e.Text) >= 0.5), pos = test.Count(e => e.Toxic);
        int fp = test.Count(e => !e.Toxic && c.Probability(e.Text) >= 0.5), neg = test.Count(e => !e.Toxic);
        Assert.True(tp >= 0.6 * pos, $"recall {tp}/{pos}");
        Assert.True(fp <= 0.3 * neg, $"over-blocking {fp}/{neg}");
        var table = c.Measure(test);
        Assert.Equal(tp, Convert.ToInt32(table["successes"][0]));
        Assert.Equal(fp, Convert.ToInt32(table["successes"][1]));
        Assert.True(new ToxicityRail(c).Check("You are such an idiot.").Triggered);
        Assert.False(new ToxicityRail(c).Check("Could you recommend a good book about trains?").Triggered);
    }

    [Fact]
    public void A_bad_label_is_an_error_naming_the_line()
    {
        var bad = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(bad, ["{\"id\":\"a\",\"text\":\"x\",\"label\":\"toxic\",\"split\":\"train\"}", "{\"id\":\"b\",\"text\":\"y\",\"label\":\"rude\",\"split\":\"train\"}"]);
            Assert.Contains(":2: label 'rude' must be toxic or neutral", Assert.Throws<FormatException>(() => ToxicityClassifier.LoadJsonl(bad)).Message);
        }
        finally { File.Delete(bad); }
    }
}
