using SafetyNotebooks.Statistics;
using Xunit;

namespace SafetyNotebooks.Tests.Statistics;

/// <summary>
/// Intervals, tests, corrections and power against published values (Newcombe 1998, Tables II of both papers), exact
/// binomial and hypergeometric sums worked by hand, and R's p.adjust convention.
/// </summary>
public class StatisticsTests
{
    [Theory]
    // Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table II: Wilson and exact intervals.
    [InlineData(81, 263, 0.2553, 0.3662, 0.2527, 0.3676)]
    [InlineData(15, 148, 0.0624, 0.1605, 0.0578, 0.1617)]
    [InlineData(0, 20, 0.0, 0.1611, 0.0, 0.1684)]
    [InlineData(1, 29, 0.0061, 0.1718, 0.0009, 0.1776)]
    public void Wilson_and_Clopper_Pearson_intervals_match_Newcombes_published_table(int x, int n, double wLo, double wHi, double cLo, double cHi)
    {
        var w = Rates.Wilson(x, n);
        var c = Rates.ClopperPearson(x, n);
        Assert.Equal(wLo, w.Lower, 4);
        Assert.Equal(wHi, w.Upper, 4);
        Assert.Equal(cLo, c.Lower, 4);
        Assert.Equal(cHi, c.Upper, 4);
        Assert.Equal((double)x / n, w.Estimate, 12);
    }

    [Fact]
    public void The_Wald_interval_collapses_at_zero_successes_where_Wilson_does_not()
    {
        var wald = Rates.Wald(0, 20);
        Assert.Equal(0, wald.Width, 12);
        Assert.True(Rates.Wilson(0, 20).Width > 0.15);
        // p ± 1.96·√(p(1−p)/n) by hand for 8/10: 0.8 ± 0.24792
        var w = Rates.Wald(8, 10);
        Assert.Equal(0.8 - 1.959964 * Math.Sqrt(0.016), w.Lower, 5);
    }

    [Fact]
    public void Exact_coverage_of_the_Wald_interval_matches_a_hand_sum_and_Clopper_Pearson_never_under_covers()
    {
        // n = 20, p = 0.05: Wald covers 0.05 only for k = 1…4 (k = 0 gives [0, 0]; k = 5 gives [0.060, 0.440]),
        // so coverage = P(1 ≤ K ≤ 4) = 0.377354 + 0.188677 + 0.059582 + 0.013328 = 0.638941.
        Assert.Equal(0.638941, Rates.ExactCoverage("wald", 20, 0.05), 5);
        for (int i = 1; i < 50; i++)                                          // a theorem: the exact interval is conservative
            Assert.True(Rates.ExactCoverage("clopper-pearson", 20, i / 50.0) >= 0.95 - 1e-12, $"p = {i / 50.0}");
    }

    [Fact]
    public void Newcombes_difference_interval_matches_his_published_example()
    {
        // Newcombe (1998), "Interval estimation for the difference between independent proportions", method 10: 56/70 − 48/80.
        var d = Rates.Difference(56, 70, 48, 80);
        Assert.Equal(0.2, d.Estimate, 12);
        Assert.Equal(0.0524, d.Lower, 4);
        Assert.Equal(0.3339, d.Upper, 4);
    }

    [Fact]
    public void Bad_counts_and_unknown_methods_are_clear_errors()
    {
        Assert.Contains("successes must be in [0, trials]", Assert.Throws<ArgumentOutOfRangeException>(() => Rates.Wilson(11, 10)).Message);
        Assert.Contains("at least one trial", Assert.Throws<ArgumentOutOfRangeException>(() => Rates.Wilson(0, 0)).Message);
        Assert.Contains("wilson, clopper-pearson, wald", Assert.Throws<ArgumentException>(() => Rates.Interval(1, 2, "agresti")).Message);
        Assert.Contains("(0, 1)", Assert.Throws<ArgumentOutOfRangeException>(() => Rates.Wilson(1, 2, level: 95)).Message);
    }

    [Fact]
    public void Rate_table_has_one_row_per_group_with_its_interval()
    {
        var t = Rates.Table([("base64", 8, 10), ("rot13", 81, 263)]);
        Assert.Equal(2, t.Rows.Count);
        Assert.Equal(["group", "successes", "trials", "rate", "lower", "upper"], t.Columns.Select(c => c.Name));
        Assert.Equal(0.2553, (double)t["lower"][1], 4);
    }

    [Fact]
    public void Two_proportion_z_test_matches_the_hand_worked_pooled_statistic()
    {
        // 45/100 vs 30/100: pooled p = 0.375, se = √(0.375·0.625·0.02) = 0.0684653, z = 0.15/se = 2.19089, p = 0.028460.
        var r = HypothesisTests.TwoProportionZ(45, 100, 30, 100);
        Assert.Equal(2.190890, r.Statistic, 5);
        Assert.Equal(0.028460, r.PValue, 5);
        Assert.Equal(0.15, r.Effect, 12);
    }

    [Fact]
    public void Fisher_exact_test_reproduces_the_lady_tasting_tea()
    {
        // Fisher's 8 cups, 3 of 4 right: tables with 1 or 3 right (16/70 each) and 0 or 4 (1/70 each) are no more likely → 34/70.
        var r = HypothesisTests.FisherExact(3, 4, 1, 4);
        Assert.Equal(34.0 / 70, r.PValue, 10);
        Assert.Equal(1.0, HypothesisTests.FisherExact(2, 4, 2, 4).PValue, 10);
    }

    [Fact]
    public void McNemar_uses_only_discordant_pairs_with_an_exact_binomial_p_value()
    {
        // b = 10, c = 2: p = 2·P(X ≤ 2 | 12, ½) = 2·(1 + 12 + 66)/4096 = 0.0385742.
        var first = new List<bool>();
        var second = new List<bool>();
        void Add(bool a, bool b, int n) { for (int i = 0; i < n; i++) { first.Add(a); second.Add(b); } }
        Add(true, false, 10); Add(false, true, 2); Add(true, true, 50); Add(false, false, 38);
        var r = HypothesisTests.McNemar(first, second);
        Assert.Equal(158.0 / 4096, r.PValue, 10);
        Assert.Equal(0.08, r.Effect, 12);
        Assert.Equal(1.0, HypothesisTests.McNemar(0, 0, 5).PValue);
        Assert.Contains("same items", Assert.Throws<ArgumentException>(() => HypothesisTests.McNemar([true], [true, false])).Message);
    }

    [Fact]
    public void Exact_paired_permutation_counts_sign_patterns_by_hand()
    {
        // d = (1, 2, 3): of the 8 sign patterns only +++ and −−− reach |Σ| = 6 → p = 2/8.
        var r = HypothesisTests.PairedPermutation([2, 3, 4], [1, 1, 1]);
        Assert.Equal(0.25, r.PValue, 12);
        Assert.Equal(2.0, r.Effect, 12);
        // d = (1, 1, 1, 1, −1): |Σ| ≥ 3 for patterns with at most one flip among the five: (1 + 5)·2/32.
        Assert.Equal(12.0 / 32, HypothesisTests.PairedPermutation([1, 1, 1, 1, 0], [0, 0, 0, 0, 1]).PValue, 12);
    }

    [Fact]
    public void Monte_Carlo_permutation_tests_are_seeded_and_agree_with_the_exact_answer()
    {
        double[] x = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
        double[] y = x.Select((v, i) => v - (i % 3 == 0 ? -1.0 : 1.5)).ToArray();
        var exact = HypothesisTests.PairedPermutation(x, y, exactUpTo: 20);
        var mc = HypothesisTests.PairedPermutation(x, y, resamples: 20000, seed: 3, exactUpTo: 0);
        Assert.Equal(mc.PValue, HypothesisTests.PairedPermutation(x, y, resamples: 20000, seed: 3, exactUpTo: 0).PValue);
        Assert.InRange(mc.PValue, exact.PValue - 0.01, exact.PValue + 0.01);
        // Two clearly separated samples: every relabelling but the observed one is less extreme.
        var sep = HypothesisTests.Permutation([10, 11, 12, 13, 14, 15], [0, 1, 2, 3, 4, 5], resamples: 2000, seed: 1);
        Assert.True(sep.PValue < 0.01, $"p = {sep.PValue}");
        Assert.Equal(10.0, sep.Effect, 12);
    }

    [Fact]
    public void Holm_and_Benjamini_Hochberg_match_hand_worked_adjustments()
    {
        double[] p = [0.01, 0.04, 0.03, 0.005];
        // Holm: sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.04·1, 0.06) = 0.06.
        Assert.Equal([0.03, 0.06, 0.06, 0.02], MultipleComparisons.Holm(p).Select(v => Math.Round(v, 12)));
        // BH: 0.005·4/1 = 0.02, 0.01·4/2 = 0.02, 0.03·4/3 = 0.04, 0.04·4/4 = 0.04; running minima from the top.
        Assert.Equal([0.02, 0.04, 0.04, 0.02], MultipleComparisons.BenjaminiHochberg(p).Select(v => Math.Round(v, 12)));
        Assert.Equal([0.04, 0.16, 0.12, 0.02], MultipleComparisons.Bonferroni(p).Select(v => Math.Round(v, 12)));
        var t = MultipleComparisons.Table(["a", "b", "c", "d"], p);
        Assert.Equal([true, true, true, true], t["reject_raw"].Cast<bool>());
        Assert.Equal([true, false, false, true], t["reject_holm"].Cast<bool>());
        Assert.Contains("[0, 1]", Assert.Throws<ArgumentOutOfRangeException>(() => MultipleComparisons.Holm([0.5, 1.5])).Message);
    }

    [Fact]
    public void Sample_sizes_follow_the_textbook_formulas()
    {
        // 0.5 vs 0.6, α = 0.05, power 0.8 (Fleiss, no continuity correction):
        // (1.959964·√(2·0.55·0.45) + 0.841621·√(0.25 + 0.24))² / 0.01 = 387.3 → 388 per group.
        Assert.Equal(388, Power.SampleSizeTwoProportions(0.5, 0.6));
        Assert.InRange(Power.TwoProportions(0.5, 0.6, 388), 0.80, 0.802);
        // ±5 points around 50% at 95%: 1.959964²·0.25/0.0025 = 384.1 → 385.
        Assert.Equal(385, Power.SampleSizeForMargin(0.5, 0.05));
        var mdd = Power.MinimumDetectableDecrease(0.5, 388);
        Assert.InRange(mdd, 0.098, 0.101);                     // symmetric to the 0.5 → 0.6 case
        Assert.Contains("equal", Assert.Throws<ArgumentException>(() => Power.SampleSizeTwoProportions(0.3, 0.3)).Message);
    }

    [Fact]
    public void Bootstrap_interval_of_a_mean_is_seeded_and_near_the_normal_interval()
    {
        var rng = new Random(7);
        var xs = Enumerable.Range(0, 400).Select(_ => rng.NextDouble()).ToArray();   // uniform: sd = 1/√12
        double Mean(IReadOnlyList<double> v) => v.Average();
        var a = Bootstrap.Percentile(xs, Mean, resamples: 4000, seed: 1);
        var b = Bootstrap.Percentile(xs, Mean, resamples: 4000, seed: 1);
        Assert.Equal(a, b);
        double half = 1.959964 * Math.Sqrt(1.0 / 12 / 400);                           // 0.02829
        Assert.InRange(a.Width / 2, half * 0.9, half * 1.1);
        Assert.True(a.Contains(xs.Average()));
        Assert.Equal(2.5, Bootstrap.Quantile([1, 2, 3, 4], 0.5), 12);               // numpy: linear between order statistics
    }
}

public class BayesTests
{
    [Fact]
    public void The_beta_posterior_adds_counts_to_the_prior_and_its_interval_has_a_closed_form_at_zero_successes()
    {
        var post = BetaPosterior.FromCounts(0, 20);                 // Beta(1, 21): F(x) = 1 − (1 − x)²¹
        Assert.Equal(new BetaPosterior(1, 21), post);
        Assert.Equal(1.0 / 22, post.Mean, 12);
        var ci = post.CredibleInterval();
        Assert.Equal(1 - Math.Pow(0.975, 1.0 / 21), ci.Lower, 8);
        Assert.Equal(1 - Math.Pow(0.025, 1.0 / 21), ci.Upper, 8);
        var uniform = BetaPosterior.FromCounts(0, 0).CredibleInterval();
        Assert.Equal(0.025, uniform.Lower, 9);
        Assert.Equal(0.975, uniform.Upper, 9);
    }

    [Fact]
    public void Probability_one_rate_is_below_another_matches_hand_integrals()
    {
        var flat = new BetaPosterior(1, 1);
        Assert.Equal(0.5, flat.ProbabilityLessThan(flat), 6);
        // X ~ Beta(2, 1) (density 2x, CDF x²), Y uniform: P(X < Y) = ∫ y² dy = 1/3.
        Assert.Equal(1.0 / 3, new BetaPosterior(2, 1).ProbabilityLessThan(flat), 6);
        // Symmetry: P(X < Y) + P(Y < X) = 1 for continuous posteriors from real counts.
        var a = BetaPosterior.FromCounts(44, 200);
        var b = BetaPosterior.FromCounts(60, 200);
        Assert.Equal(1.0, a.ProbabilityLessThan(b) + b.ProbabilityLessThan(a), 5);
        Assert.True(a.ProbabilityLessThan(b) > 0.9);
    }
}
