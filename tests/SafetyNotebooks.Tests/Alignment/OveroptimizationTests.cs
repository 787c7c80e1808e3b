using SafetyNotebooks.Alignment;
using Xunit;

namespace SafetyNotebooks.Tests.Alignment;

public class OveroptimizationTests
{
    [Fact]
    public void The_best_of_n_fit_recovers_alpha_and_beta_from_points_on_the_curve()
    {
        // R(d) = d(1.3 − 0.4 d) at d = 0, 0.25, …, 3: an exact fit, R² = 1.
        var d = Enumerable.Range(0, 13).Select(i => 0.25 * i).ToArray();
        var r = d.Select(x => x * (1.3 - 0.4 * x)).ToArray();
        var fit = Overoptimization.FitBestOfN(d, r);
        Assert.Equal(OveroptimizationForm.BestOfN, fit.Form);
        Assert.Equal(1.3, fit.Alpha, 10);
        Assert.Equal(0.4, fit.Beta, 10);
        Assert.Equal(1.0, fit.RSquared, 10);
        Assert.Equal(13, fit.Points);
    }

    [Fact]
    public void The_rl_fit_recovers_alpha_and_beta_from_points_on_the_curve()
    {
        // R(d) = d(0.8 − 0.3 ln d) at d = 0 (where d ln d → 0) and d = 0.1 … 4.
        var d = new[] { 0.0, 0.1, 0.3, 0.7, 1.0, 1.6, 2.5, 4.0 };
        var r = d.Select(x => x == 0 ? 0 : x * (0.8 - 0.3 * Math.Log(x))).ToArray();
        var fit = Overoptimization.FitRl(d, r);
        Assert.Equal(OveroptimizationForm.Rl, fit.Form);
        Assert.Equal(0.8, fit.Alpha, 10);
        Assert.Equal(0.3, fit.Beta, 10);
        Assert.Equal(1.0, fit.RSquared, 10);
    }

    [Fact]
    public void A_three_point_best_of_n_fit_matches_the_hand_worked_least_squares_solution()
    {
        // d = 1, 2, 3; R = 1, 2, 1. Features (d, −d²). Normal equations:
        //   [Σd², −Σd³; −Σd³, Σd⁴] = [14, −36; −36, 98],  [ΣdR, −Σd²R] = [8, −18],  det = 1372 − 1296 = 76.
        //   α = (98·8 − 36·18)/76 = 136/76 = 34/19;  β = (14·(−18) + 36·8)/76 = 36/76 = 9/19.
        // Fitted 25/19, 32/19, 21/19; residuals −6/19, 6/19, −2/19; SS_res = 76/361 = 4/19; SS_tot = 2/3; R² = 1 − 6/19 = 13/19.
        // Peak at α/(2β) = 17/9 with gain α²/(4β) = 289/171.
        var fit = Overoptimization.FitBestOfN(new[] { 1.0, 2, 3 }, new[] { 1.0, 2, 1 });
        Assert.Equal(34.0 / 19, fit.Alpha, 12);
        Assert.Equal(9.0 / 19, fit.Beta, 12);
        Assert.Equal(13.0 / 19, fit.RSquared, 12);
        Assert.Equal(32.0 / 19, fit.Predict(2), 12);
        Assert.Equal(17.0 / 9, fit.PeakDistance, 12);
        Assert.Equal(289.0 / 171, fit.PeakReward, 12);
    }

    [Fact]
    public void A_two_point_rl_fit_reads_alpha_at_d_equal_one_and_beta_at_d_equal_e()
    {
        // R(1) = α·1 − β·1·ln 1 = α = 2. R(e) = e(α − β) = 1.5e → β = 0.5. Peak where α − β ln d − β = 0: d = e^(α/β − 1) = e³,
        // gain e³(2 − 0.5·3) = 0.5e³.
        var fit = Overoptimization.FitRl(new[] { 1.0, Math.E }, new[] { 2.0, 1.5 * Math.E });
        Assert.Equal(2.0, fit.Alpha, 12);
        Assert.Equal(0.5, fit.Beta, 12);
        Assert.Equal(Math.Exp(3), fit.PeakDistance, 9);
        Assert.Equal(0.5 * Math.Exp(3), fit.PeakReward, 9);
        Assert.Equal(0.5 * Math.Exp(3), fit.Predict(Math.Exp(3)), 9);
        Assert.Equal(0.0, fit.Predict(0), 12);
    }

    [Fact]
    public void A_curve_that_never_turns_down_has_no_finite_peak()
    {
        var d = new[] { 1.0, 2, 3 };
        var fit = Overoptimization.FitBestOfN(d, d.Select(x => x * (1 + 0.2 * x)).ToArray());   // β = −0.2
        Assert.Equal(-0.2, fit.Beta, 10);
        Assert.True(double.IsPositiveInfinity(fit.PeakDistance));
    }

    [Fact]
    public void Fits_reject_too_few_distances_mismatched_lengths_and_negative_or_non_finite_values()
    {
        var e1 = Assert.Throws<ArgumentException>(() => Overoptimization.FitBestOfN(new[] { 0.0, 1, 1 }, new[] { 0.0, 1, 1 }));
        Assert.Contains("2 distinct distances", e1.Message);
        Assert.Throws<ArgumentException>(() => Overoptimization.FitRl(new[] { 1.0, 2 }, new[] { 1.0 }));
        Assert.Throws<ArgumentException>(() => Overoptimization.FitRl(new[] { -1.0, 2 }, new[] { 1.0, 2 }));
        Assert.Throws<ArgumentException>(() => Overoptimization.FitBestOfN(new[] { 1.0, 2 }, new[] { 1.0, double.NaN }));
        var e2 = Assert.Throws<ArgumentOutOfRangeException>(() => Overoptimization.Distance(-0.01));
        Assert.Contains("Math.Max(0, kl)", e2.Message);
        Assert.Equal(1.5, Overoptimization.Distance(2.25), 12);
    }

    [Fact]
    public void The_pool_estimate_of_best_of_n_matches_the_hand_worked_order_statistics()
    {
        // Pool proxy (3, 1, 2), gold (30, 10, 20). Best of 2 (with replacement): the winner has proxy 3 with probability
        // 1 − (2/3)² = 5/9, proxy 2 with (2/3)² − (1/3)² = 3/9, proxy 1 with 1/9.
        // E[gold] = (10 + 3·20 + 5·30)/9 = 220/9; E[proxy] = (1 + 3·2 + 5·3)/9 = 22/9. Best of 1 is the pool mean.
        var proxy = new[] { 3.0, 1, 2 };
        var gold = new[] { 30.0, 10, 20 };
        var (g2, p2) = Overoptimization.BestOfNExpectation(proxy, gold, 2);
        Assert.Equal(220.0 / 9, g2, 12);
        Assert.Equal(22.0 / 9, p2, 12);
        Assert.Equal(20.0, Overoptimization.BestOfNExpectation(proxy, gold, 1).Gold, 12);
    }

    [Fact]
    public void Tied_proxy_scores_share_their_mean_gold_in_the_pool_estimate()
    {
        // Proxy (1, 1, 2), gold (0, 10, 30): the tied group {0, 10} has mean gold 5 and is the winner of best-of-2 with
        // probability (2/3)² = 4/9; proxy 2 wins with 5/9. E[gold] = 4/9·5 + 5/9·30 = 170/9.
        var (g, p) = Overoptimization.BestOfNExpectation(new[] { 1.0, 1, 2 }, new[] { 0.0, 10, 30 }, 2);
        Assert.Equal(170.0 / 9, g, 12);
        Assert.Equal(4.0 / 9 + 10.0 / 9, p, 12);
    }

    [Fact]
    public void The_pool_estimate_agrees_with_simulated_best_of_n_draws()
    {
        // Independent reference: draw n indices with replacement, keep the highest proxy, average its gold over 200 000 draws.
        var rng = new Random(5);
        var proxy = Enumerable.Range(0, 40).Select(_ => rng.NextDouble()).ToArray();
        var gold = proxy.Select(p => Math.Sin(6 * p) + rng.NextDouble()).ToArray();
        const int n = 7, draws = 200_000;
        double sum = 0;
        for (int t = 0; t < draws; t++)
        {
            int best = rng.Next(40);
            for (int k = 1; k < n; k++) { int j = rng.Next(40); if (proxy[j] > proxy[best]) best = j; }
            sum += gold[best];
        }
        Assert.Equal(sum / draws, Overoptimization.BestOfNExpectation(proxy, gold, n).Gold, 0.01);   // ~4.5 standard errors
    }

    [Fact]
    public void The_pool_estimate_rejects_an_empty_pool_mismatched_scores_and_n_below_one()
    {
        Assert.Throws<ArgumentException>(() => Overoptimization.BestOfNExpectation(Array.Empty<double>(), Array.Empty<double>(), 2));
        Assert.Throws<ArgumentException>(() => Overoptimization.BestOfNExpectation(new[] { 1.0 }, new[] { 1.0, 2 }, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Overoptimization.BestOfNExpectation(new[] { 1.0 }, new[] { 1.0 }, 0));
    }
}
