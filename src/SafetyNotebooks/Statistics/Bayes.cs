using MathNet.Numerics.Distributions;

namespace SafetyNotebooks.Statistics;

/// <summary>
/// The conjugate Beta–binomial model of a rate: with a Beta(a, b) prior and s successes in n trials, the posterior is
/// Beta(a + s, b + n − s). The default prior Beta(1, 1) is uniform; Jeffreys' is Beta(½, ½).
/// </summary>
/// <param name="Alpha">Posterior α (prior α + successes).</param>
/// <param name="Beta">Posterior β (prior β + failures).</param>
public sealed record BetaPosterior(double Alpha, double Beta)
{
    /// <summary>The posterior after <paramref name="successes"/> of <paramref name="trials"/> from a Beta(<paramref name="priorAlpha"/>, <paramref name="priorBeta"/>) prior.</summary>
    public static BetaPosterior FromCounts(int successes, int trials, double priorAlpha = 1, double priorBeta = 1)
    {
        if (trials < 0 || successes < 0 || successes > trials)
            throw new ArgumentOutOfRangeException(nameof(successes), $"Need 0 ≤ successes ≤ trials, got {successes} of {trials}.");
        if (!(priorAlpha > 0 && priorBeta > 0))
            throw new ArgumentOutOfRangeException(nameof(priorAlpha), $"Beta prior parameters must be positive (1, 1 is uniform), got ({priorAlpha}, {priorBeta}).");
        return new BetaPosterior(priorAlpha + successes, priorBeta + trials - successes);
    }

    /// <summary>Posterior mean α/(α + β).</summary>
    public double Mean => Alpha / (Alpha + Beta);

    /// <summary>The equal-tailed credible interval: the (1−level)/2 and 1−(1−level)/2 posterior quantiles.</summary>
    public Interval CredibleInterval(double level = 0.95)
    {
        Rates.CheckLevel(level);
        double a = (1 - level) / 2;
        return new Interval(Mean, MathNet.Numerics.Distributions.Beta.InvCDF(Alpha, Beta, a),
            MathNet.Numerics.Distributions.Beta.InvCDF(Alpha, Beta, 1 - a), level, "beta credible");
    }

    /// <summary>
    /// P(this rate &lt; <paramref name="other"/>'s rate) for independent posteriors: ∫ f_other(y)·F_this(y) dy, by Simpson's
    /// rule on <paramref name="gridPoints"/> points (deterministic; accurate to about 1e-6 for the counts of an evaluation).
    /// </summary>
    public double ProbabilityLessThan(BetaPosterior other, int gridPoints = 4001)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (gridPoints < 101 || gridPoints % 2 == 0) throw new ArgumentOutOfRangeException(nameof(gridPoints), $"gridPoints must be odd and ≥ 101, not {gridPoints}.");
        var mine = new Beta(Alpha, Beta);
        var theirs = new Beta(other.Alpha, other.Beta);
        // Integrate over the CDF of the other rate (u = F_other(y)) so peaked posteriors need no fine grid: ∫₀¹ F_this(F_other⁻¹(u)) du.
        double h = 1.0 / (gridPoints - 1), sum = 0;
        for (int i = 0; i < gridPoints; i++)
        {
            double u = i * h;
            double y = u <= 0 ? 0 : u >= 1 ? 1 : theirs.InverseCumulativeDistribution(u);
            double f = mine.CumulativeDistribution(y);
            sum += f * (i == 0 || i == gridPoints - 1 ? 1 : i % 2 == 1 ? 4 : 2);
        }
        return sum * h / 3;
    }
}
