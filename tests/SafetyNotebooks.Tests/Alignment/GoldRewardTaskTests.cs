using SafetyNotebooks.Alignment;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

public class GoldRewardTaskTests
{
    public GoldRewardTaskTests() => TorchRuntime.EnsureLoaded();

    /// <summary>The default words and weights, a uniform bigram process, completions of 4 tokens, repeat penalty 0.5.</summary>
    static GoldRewardTask Uniform(int length = 4, double repeatPenalty = 0.5)
    {
        int w = GoldRewardTask.DefaultWords.Count;
        var rows = Enumerable.Range(0, w + 1).Select(_ => Enumerable.Repeat(1.0 / w, w).ToArray()).ToArray();
        return new GoldRewardTask(GoldRewardTask.DefaultWords, GoldRewardTask.DefaultWeights, rows, length, repeatPenalty);
    }

    [Fact]
    public void The_gold_reward_of_two_strings_matches_the_hand_worked_values()
    {
        var task = Uniform();
        // great + great + good + the = 2 + 2 + 1 + 0 = 5; one immediate repeat (great great): (5 − 0.5·1)/4 = 1.125.
        Assert.Equal(1.125, task.Gold("great great good the"), 12);
        // awful + it + was + bad = −2 + 0 + 0 − 1 = −3; no repeat: −3/4 = −0.75.
        Assert.Equal(-0.75, task.Gold("awful it was bad"), 12);
        // The batched form gives the same numbers.
        var ids = task.Tokenizer.Encode("great great good the").Concat(task.Tokenizer.Encode("awful it was bad")).Select(i => (long)i).ToArray();
        var batch = task.GoldBatch(tensor(ids, new long[] { 2, 4 })).data<float>().ToArray();
        Assert.Equal(1.125, batch[0], 5);
        Assert.Equal(-0.75, batch[1], 5);
    }

    [Fact]
    public void A_stray_bos_in_a_completion_is_neutral_and_an_unknown_id_is_an_error()
    {
        var task = Uniform();
        // great <bos> great: 2 + 0 + 2 = 4 over 3 tokens, and no immediate repeat (the two greats are not adjacent): 4/3.
        Assert.Equal(4.0 / 3.0, task.Gold(new long[] { 12, task.BosTokenId, 12 }), 12);
        var e = Assert.Throws<ArgumentException>(() => task.Gold(new long[] { 0, 99 }));
        Assert.Contains("Token id 99", e.Message);
    }

    [Fact]
    public void Bradley_terry_probabilities_match_the_logistic_formula_by_hand()
    {
        // σ((1.125 − (−0.75))/0.5) = σ(3.75) = 1/(1 + e^−3.75) = 0.97702263.
        Assert.Equal(0.97702263009, GoldPreferenceOracle.PreferenceProbability(1.125, -0.75, 0.5), 9);
        // T = 1: σ(1.875) = 0.86703576; swapping A and B gives 1 − p.
        Assert.Equal(0.86703575980, GoldPreferenceOracle.PreferenceProbability(1.125, -0.75, 1.0), 9);
        Assert.Equal(1 - 0.86703575980, GoldPreferenceOracle.PreferenceProbability(-0.75, 1.125, 1.0), 9);
        Assert.Equal(0.5, GoldPreferenceOracle.PreferenceProbability(0.3, 0.3, 2.0), 12);
        // T = 0: the higher gold reward always wins; a tie is a coin flip.
        Assert.Equal(1.0, GoldPreferenceOracle.PreferenceProbability(0.1, 0.0, 0.0));
        Assert.Equal(0.0, GoldPreferenceOracle.PreferenceProbability(0.0, 0.1, 0.0));
        Assert.Equal(0.5, GoldPreferenceOracle.PreferenceProbability(0.1, 0.1, 0.0));
    }

    [Fact]
    public void Sampled_labels_prefer_a_with_the_bradley_terry_probability_within_binomial_bounds()
    {
        var task = Uniform();
        var a = task.Tokenizer.Encode("great great good the").Select(i => (long)i).ToArray();
        var b = task.Tokenizer.Encode("awful it was bad").Select(i => (long)i).ToArray();
        const int n = 4000;
        var oracle = new GoldPreferenceOracle(task, temperature: 1.0, seed: 7);
        int aWins = Enumerable.Range(0, n).Count(_ => oracle.Label(a, b).APreferred);
        // p = σ(1.875) = 0.8670; 4 binomial standard deviations: 4·√(p(1 − p)/n) = 0.0215.
        double p = 0.86703576, bound = 4 * Math.Sqrt(p * (1 - p) / n);
        Assert.InRange(aWins / (double)n, p - bound, p + bound);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.2)]
    [InlineData(0.4)]
    public void The_measured_label_flip_rate_lies_within_binomial_bounds(double flipRate)
    {
        var task = GoldRewardTask.Create(seed: 1);
        // Noiseless Bradley–Terry (T = 0): every disagreement with the gold ranking is a flip.
        var oracle = new GoldPreferenceOracle(task, temperature: 0, flipRate: flipRate, seed: 3);
        var pairs = task.SamplePairs(4000, new Random(5)).Where(p => task.Gold(p.A) != task.Gold(p.B)).ToList();
        Assert.True(pairs.Count > 3000, $"only {pairs.Count} pairs without ties");
        double disagree = oracle.Label(pairs).Count(l => !l.AgreesWithGold) / (double)pairs.Count;
        double bound = 4 * Math.Sqrt(Math.Max(flipRate * (1 - flipRate), 1e-9) / pairs.Count);
        Assert.InRange(disagree, flipRate - bound, flipRate + bound);
    }

    [Fact]
    public void The_label_budget_is_enforced_and_a_batch_beyond_it_labels_nothing()
    {
        var task = GoldRewardTask.Create(seed: 1);
        var oracle = new GoldPreferenceOracle(task, temperature: 0.5, budget: 3, seed: 0);
        var pairs = task.SamplePairs(4, new Random(0));
        var e = Assert.Throws<InvalidOperationException>(() => oracle.Label(pairs));
        Assert.Contains("only 3 of the budget of 3 remain", e.Message);
        Assert.Equal(0, oracle.Used);
        oracle.Label(pairs.Take(3).ToList());
        Assert.Equal(0, oracle.Remaining);
        Assert.Throws<InvalidOperationException>(() => oracle.Label(pairs[3].A, pairs[3].B));
    }

    [Fact]
    public void The_same_seeds_give_the_same_language_and_labels()
    {
        IReadOnlyList<bool> Run()
        {
            var task = GoldRewardTask.Create(seed: 4);
            var oracle = new GoldPreferenceOracle(task, temperature: 0.3, flipRate: 0.1, seed: 9);
            return oracle.Label(task.SamplePairs(50, new Random(2))).Select(l => l.APreferred).ToList();
        }
        Assert.Equal(Run(), Run());
        Assert.NotEqual(GoldRewardTask.Create(seed: 4).NextWordProbabilities(0), GoldRewardTask.Create(seed: 5).NextWordProbabilities(0));
    }

    [Fact]
    public void The_completion_entropy_of_a_uniform_process_is_n_log_w()
    {
        var task = Uniform(length: 4);
        Assert.Equal(4 * Math.Log(GoldRewardTask.DefaultWords.Count), task.CompletionEntropy(), 9);
    }

    [Fact]
    public void A_transition_row_that_is_not_a_distribution_is_an_error_naming_the_row()
    {
        int w = GoldRewardTask.DefaultWords.Count;
        var rows = Enumerable.Range(0, w + 1).Select(_ => Enumerable.Repeat(1.0 / w, w).ToArray()).ToArray();
        rows[2][0] += 0.5;
        var e = Assert.Throws<ArgumentException>(() => new GoldRewardTask(GoldRewardTask.DefaultWords, GoldRewardTask.DefaultWeights, rows));
        Assert.Contains("transitions row 2", e.Message);
    }

    [Fact]
    public void The_pretrained_policy_approaches_the_entropy_of_the_bigram_process()
    {
        var task = GoldRewardTask.Create(seed: 0);
        using var model = task.PretrainPolicy(steps: 200, seed: 1);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var tokens = task.PretrainingBatch(512, new Random(99));
        // Per-completion negative log-likelihood: the sum over the n completion tokens, mean over rows.
        double nll = -LanguageModelLoss.TokenLogProbs(model.call(tokens), tokens)[.., 1..].sum(1).mean().item<float>();
        double floor = task.CompletionEntropy();
        // The bigram process's entropy is the floor (an exact expectation, sampled here); 200 steps get within 10 % of it.
        Assert.InRange(nll, floor * 0.93, floor * 1.10);
    }
}
