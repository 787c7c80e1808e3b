using MathNet.Numerics.Distributions;
using Microsoft.Data.Analysis;

namespace SafetyNotebooks.Statistics;

/// <summary>
/// A point estimate with a two-sided confidence interval.
/// </summary>
/// <param name="Estimate">The point estimate (for a rate: successes / trials).</param>
/// <param name="Lower">Lower bound.</param>
/// <param name="Upper">Upper bound.</param>
/// <param name="Level">Confidence level, e.g. 0.95.</param>
/// <param name="Method">How the interval was computed ("wilson", "clopper-pearson", "wald", "bootstrap-percentile").</param>
public sealed record Interval(double Estimate, double Lower, double Upper, double Level, string Method)
{
    /// <summary>Upper − lower.</summary>
    public double Width => Upper - Lower;

    /// <summary>Whether <paramref name="value"/> lies inside the closed interval.</summary>
    public bool Contains(double value) => value >= Lower && value <= Upper;

    /// <inheritdoc/>
    public override string ToString() => $"{Estimate:0.###} [{Lower:0.###}, {Upper:0.###}] ({Level:P0} {Method})";
}

/// <summary>
/// Confidence intervals for rates (attack success rates, refusal rates, accuracies): Wilson's score interval (the default:
/// close to nominal coverage even at small n and rates near 0 or 1), the exact Clopper–Pearson interval (conservative:
/// coverage at least nominal) and the Wald interval (shown in lessons because it is what people compute by hand, and
/// it under-covers badly at small n). Quantiles come from MathNet.Numerics' normal and beta distributions.
/// </summary>
public static class Rates
{
    /// <summary>The methods <see cref="Interval(int, int, string, double)"/> accepts.</summary>
    public static readonly string[] Methods = ["wilson", "clopper-pearson", "wald"];

    /// <summary>Wilson's score interval for <paramref name="successes"/> out of <paramref name="trials"/>.</summary>
    public static Interval Wilson(int successes, int trials, double level = 0.95)
    {
        CheckCounts(successes, trials, level);
        double z = Z(level), n = trials, p = successes / n, z2 = z * z;
        double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
        double half = z / (1 + z2 / n) * Math.Sqrt(p * (1 - p) / n + z2 / (4 * n * n));
        return new Interval(p, Math.Max(0, centre - half), Math.Min(1, centre + half), level, "wilson");
    }

    /// <summary>The exact (Clopper–Pearson) interval: beta quantiles, lower bound 0 when there are no successes, upper 1 when all are.</summary>
    public static Interval ClopperPearson(int successes, int trials, double level = 0.95)
    {
        CheckCounts(successes, trials, level);
        double a = (1 - level) / 2;
        double lo = successes == 0 ? 0 : Beta.InvCDF(successes, trials - successes + 1, a);
        double hi = successes == trials ? 1 : Beta.InvCDF(successes + 1, trials - successes, 1 - a);
        return new Interval((double)successes / trials, lo, hi, level, "clopper-pearson");
    }

    /// <summary>The Wald interval p ± z·√(p(1−p)/n), clipped to [0, 1]; zero width at 0 or n successes (which is why it misleads).</summary>
    public static Interval Wald(int successes, int trials, double level = 0.95)
    {
        CheckCounts(successes, trials, level);
        double p = (double)successes / trials, half = Z(level) * Math.Sqrt(p * (1 - p) / trials);
        return new Interval(p, Math.Max(0, p - half), Math.Min(1, p + half), level, "wald");
    }

    /// <summary>
    /// Newcombe's hybrid score interval for the difference of two independent rates p1 − p2 (his method 10, built from the
    /// two Wilson intervals): much closer to nominal coverage than the Wald difference interval at small n.
    /// </summary>
    public static Interval Difference(int successes1, int trials1, int successes2, int trials2, double level = 0.95)
    {
        var a = Wilson(successes1, trials1, level);
        var b = Wilson(successes2, trials2, level);
        double d = a.Estimate - b.Estimate;
        double lo = d - Math.Sqrt(Math.Pow(a.Estimate - a.Lower, 2) + Math.Pow(b.Upper - b.Estimate, 2));
        double hi = d + Math.Sqrt(Math.Pow(a.Upper - a.Estimate, 2) + Math.Pow(b.Estimate - b.Lower, 2));
        return new Interval(d, lo, hi, level, "newcombe");
    }

    /// <summary>The interval named by <paramref name="method"/> (one of <see cref="Methods"/>).</summary>
    public static Interval Interval(int successes, int trials, string method = "wilson", double level = 0.95) => method switch
    {
        "wilson" => Wilson(successes, trials, level),
        "clopper-pearson" or "exact" => ClopperPearson(successes, trials, level),
        "wald" => Wald(successes, trials, level),
        _ => throw new ArgumentException($"Unknown interval method '{method}': use one of {string.Join(", ", Methods)}.", nameof(method)),
    };

    /// <summary>
    /// The exact coverage of an interval method: the probability, over Binomial(<paramref name="trials"/>, <paramref name="rate"/>)
    /// outcomes, that the interval computed from the outcome contains the true <paramref name="rate"/> (what a simulation of
    /// many repeated evaluations converges to). A 95% method should give about 0.95 at every rate.
    /// </summary>
    public static double ExactCoverage(string method, int trials, double rate, double level = 0.95)
    {
        if (!(rate >= 0 && rate <= 1)) throw new ArgumentOutOfRangeException(nameof(rate), $"rate must be in [0, 1], not {rate}.");
        var binomial = new Binomial(rate, trials);
        double coverage = 0;
        for (int k = 0; k <= trials; k++)
            if (Interval(k, trials, method, level).Contains(rate)) coverage += binomial.Probability(k);
        return coverage;
    }

    /// <summary>
    /// One row per group: <c>group</c>, <c>successes</c>, <c>trials</c>, <c>rate</c>, <c>lower</c>, <c>upper</c> (the interval
    /// of <paramref name="method"/> at <paramref name="level"/>).
    /// </summary>
    public static DataFrame Table(IEnumerable<(string Group, int Successes, int Trials)> groups, string method = "wilson", double level = 0.95)
    {
        var rows = groups.ToList();
        var cis = rows.Select(r => Interval(r.Successes, r.Trials, method, level)).ToList();
        return new DataFrame(
            new StringDataFrameColumn("group", rows.Select(r => r.Group)),
            new Int32DataFrameColumn("successes", rows.Select(r => r.Successes)),
            new Int32DataFrameColumn("trials", rows.Select(r => r.Trials)),
            new DoubleDataFrameColumn("rate", cis.Select(c => c.Estimate)),
            new DoubleDataFrameColumn("lower", cis.Select(c => c.Lower)),
            new DoubleDataFrameColumn("upper", cis.Select(c => c.Upper)));
    }

    /// <summary>Standard-normal quantile for a two-sided interval at <paramref name="level"/> (1.959964 for 0.95).</summary>
    public static double Z(double level) => Normal.InvCDF(0, 1, 1 - (1 - level) / 2);

    internal static void CheckLevel(double level, string name = "level")
    {
        if (!(level > 0 && level < 1)) throw new ArgumentOutOfRangeException(name, $"The confidence level must be in (0, 1), e.g. 0.95, not {level}.");
    }

    static void CheckCounts(int successes, int trials, double level)
    {
        if (trials <= 0) throw new ArgumentOutOfRangeException(nameof(trials), $"trials must be positive, not {trials}: a rate needs at least one trial.");
        if (successes < 0 || successes > trials)
            throw new ArgumentOutOfRangeException(nameof(successes), $"successes must be in [0, trials] = [0, {trials}], not {successes}.");
        CheckLevel(level);
    }
}

/// <summary>
/// Bootstrap confidence intervals for any statistic of a sample (percentile method, seeded, so a cohort sees the same
/// interval). Resample the units that are independent: for paired data pass the pairs as the items.
/// </summary>
public static class Bootstrap
{
    /// <summary>
    /// Percentile bootstrap: <paramref name="resamples"/> samples of the same size drawn with replacement, the statistic on
    /// each, and the (1−level)/2 and 1−(1−level)/2 quantiles of those values (linear interpolation between order statistics).
    /// </summary>
    public static Interval Percentile<T>(IReadOnlyList<T> items, Func<IReadOnlyList<T>, double> statistic, int resamples = 2000,
        double level = 0.95, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(statistic);
        if (items.Count < 2) throw new ArgumentException($"The bootstrap needs at least 2 items, not {items.Count}.", nameof(items));
        if (resamples < 100) throw new ArgumentOutOfRangeException(nameof(resamples), $"Use at least 100 resamples (1000+ for 95% intervals), not {resamples}.");
        Rates.CheckLevel(level);
        var rng = new Random(seed);
        var values = new double[resamples];
        var buffer = new T[items.Count];
        for (int r = 0; r < resamples; r++)
        {
            for (int i = 0; i < buffer.Length; i++) buffer[i] = items[rng.Next(items.Count)];
            values[r] = statistic(buffer);
        }
        Array.Sort(values);
        double a = (1 - level) / 2;
        return new Interval(statistic(items), Quantile(values, a), Quantile(values, 1 - a), level, "bootstrap-percentile");
    }

    /// <summary>The <paramref name="q"/>-quantile of sorted values, interpolating linearly between order statistics (numpy's default).</summary>
    public static double Quantile(double[] sorted, double q)
    {
        if (sorted.Length == 0) throw new ArgumentException("No values to take a quantile of.", nameof(sorted));
        double h = (sorted.Length - 1) * q;
        int lo = (int)Math.Floor(h), hi = (int)Math.Ceiling(h);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }
}
