using SafetyNotebooks.Alignment;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;
using static SafetyNotebooks.Tests.Alignment.PreferenceTestModels;

namespace SafetyNotebooks.Tests.Alignment;

public class BestOfNTests
{
    public BestOfNTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void The_kl_bound_is_log_n_minus_n_minus_one_over_n()
    {
        // n = 1: 0. n = 2: ln 2 − 1/2 = 0.193147. n = 4: ln 4 − 3/4 = 0.636294.
        Assert.Equal(0, BestOfN.KlBound(1), 12);
        Assert.Equal(0.193147, BestOfN.KlBound(2), 6);
        Assert.Equal(0.636294, BestOfN.KlBound(4), 6);
        Assert.Throws<ArgumentOutOfRangeException>(() => BestOfN.KlBound(0));
    }

    [Fact]
    public void The_bound_holds_for_a_two_outcome_policy_where_ties_make_it_strict()
    {
        // π uniform over {a, b}, r(a) > r(b). Best of 2 picks b only if both draws are b: π_BoN = (3/4, 1/4).
        // KL = 3/4·ln(3/2) + 1/4·ln(1/2) = 0.304099 − 0.173287 = 0.130812 < ln 2 − 1/2 = 0.193147.
        double kl = 0.75 * Math.Log(1.5) + 0.25 * Math.Log(0.5);
        Assert.Equal(0.130812, kl, 6);
        Assert.True(kl <= BestOfN.KlBound(2));
    }

    /// <summary>Reward = number of generated tokens equal to 5 (a hand-checkable score).</summary>
    static Tensor CountFives(Tensor tokens, Tensor mask, long promptLength) =>
        (tokens[.., (int)promptLength..].eq(5).logical_and(mask[.., (int)promptLength..].ne(0))).to_type(ScalarType.Float32).sum(1);

    [Fact]
    public void Best_of_n_keeps_each_prompts_highest_scoring_sample()
    {
        var model = Tiny();
        var prompts = tensor(new long[] { 1, 2, 1, 4 }, new long[] { 2, 2 });
        var options = new GenerationOptions { MaxNewTokens = 6, Seed = 17 };
        using var result = BestOfN.Sample(model, prompts, n: 8, (t, m) => CountFives(t, m, 2), options);
        Assert.Equal(new long[] { 2, 8 }, result.AllRewards.shape);
        var all = result.AllRewards.data<float>().ToArray();
        var best = result.Rewards.data<float>().ToArray();
        for (int i = 0; i < 2; i++) Assert.Equal(all.Skip(8 * i).Take(8).Max(), best[i]);
        // Rescoring the returned sequences by hand gives the reported rewards, and they continue their own prompts.
        Assert.Equal(best, CountFives(result.Tokens, result.AttentionMask, 2).data<float>().ToArray());
        Assert.True(result.Tokens[.., ..2].eq(prompts).all().item<bool>());
        // Same seed, same draws.
        using var again = BestOfN.Sample(model, prompts, n: 8, (t, m) => CountFives(t, m, 2), options);
        Assert.True(again.Tokens.eq(result.Tokens).all().item<bool>());
    }

    [Fact]
    public void Greedy_options_are_refused_because_the_samples_would_be_identical()
    {
        var e = Assert.Throws<ArgumentException>(() => BestOfN.Sample(Tiny(), tensor(new long[] { 1, 2 }), 4, (t, m) => t.sum(1).to_type(ScalarType.Float32), GenerationOptions.Greedy(3)));
        Assert.Contains("DoSample = true", e.Message);
    }
}
