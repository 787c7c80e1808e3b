using MathNet.Numerics.Distributions;
using Microsoft.Data.Analysis;

namespace SafetyNotebooks.Statistics;

/// <summary>The outcome of a hypothesis test.</summary>
/// <param name="Test">Which test ("two-proportion z", "fisher exact", "mcnemar exact", "paired permutation", "permutation").</param>
/// <param name="Statistic">The test statistic (z; the observed difference for permutation tests; the discordant count for McNemar).</param>
/// <param name="PValue">Two-sided p-value.</param>
/// <param name="Effect">The effect in the data's units: a difference of rates or of means (first minus second).</param>
/// <param name="N">Number of units (trials of both groups, or pairs).</param>
public sealed record TestResult(string Test, double Statistic, double PValue, double Effect, int N)
{
    /// <summary>Whether the p-value is below <paramref name="alpha"/>.</summary>
    public bool Significant(double alpha = 0.05) => PValue < alpha;

    /// <inheritdoc/>
    public override string ToString() => $"{Test}: effect {Effect:0.####}, statistic {Statistic:0.####}, p = {PValue:0.####} (n = {N})";
}

/// <summary>
/// Two-sided tests for the comparisons safety evaluations make: two rates from independent prompt sets (z test,
/// Fisher's exact test), two systems on the same prompts (McNemar's exact test; a paired permutation test for scores),
/// and two independent samples of scores (a permutation test). Distributions from MathNet.Numerics.
/// </summary>
public static class HypothesisTests
{
    /// <summary>
    /// The pooled two-proportion z test of s1/n1 against s2/n2 (independent samples): z = (p1 − p2) / √(p̂(1−p̂)(1/n1 + 1/n2))
    /// with the pooled p̂ = (s1 + s2)/(n1 + n2). Use Fisher's exact test when an expected count is below about 5.
    /// </summary>
    public static TestResult TwoProportionZ(int successes1, int trials1, int successes2, int trials2)
    {
        CheckCounts(successes1, trials1, "1");
        CheckCounts(successes2, trials2, "2");
        double p1 = (double)successes1 / trials1, p2 = (double)successes2 / trials2;
        double pooled = (double)(successes1 + successes2) / (trials1 + trials2);
        double se = Math.Sqrt(pooled * (1 - pooled) * (1.0 / trials1 + 1.0 / trials2));
        double z = se == 0 ? 0 : (p1 - p2) / se;
        double p = se == 0 ? 1 : 2 * Normal.CDF(0, 1, -Math.Abs(z));
        return new TestResult("two-proportion z", z, p, p1 - p2, trials1 + trials2);
    }

    /// <summary>
    /// Fisher's exact test on the 2×2 table [[s1, n1 − s1], [s2, n2 − s2]]: the two-sided p-value sums the hypergeometric
    /// probabilities of every table with the same margins that is no more likely than the observed one (R's convention).
    /// </summary>
    public static TestResult FisherExact(int successes1, int trials1, int successes2, int trials2)
    {
        CheckCounts(successes1, trials1, "1");
        CheckCounts(successes2, trials2, "2");
        int total = trials1 + trials2, successes = successes1 + successes2;
        var h = new Hypergeometric(total, successes, trials1);
        double observed = h.Probability(successes1), p = 0;
        for (int k = Math.Max(0, successes - trials2); k <= Math.Min(successes, trials1); k++)
        {
            double pk = h.Probability(k);
            if (pk <= observed * (1 + 1e-7)) p += pk;
        }
        return new TestResult("fisher exact", successes1, Math.Min(1, p), (double)successes1 / trials1 - (double)successes2 / trials2, total);
    }

    /// <summary>
    /// McNemar's exact test for two systems judged on the same items: only the discordant pairs count (b = first succeeded
    /// and second failed, c = the reverse); under the null each is b ~ Binomial(b + c, ½), p = min(1, 2·P(X ≤ min(b, c))).
    /// The effect is the difference of the two success rates, (b − c)/n.
    /// </summary>
    public static TestResult McNemar(IReadOnlyList<bool> first, IReadOnlyList<bool> second)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        if (first.Count != second.Count)
            throw new ArgumentException($"McNemar's test needs paired outcomes: first has {first.Count} items, second {second.Count}. Judge both systems on the same items.");
        if (first.Count == 0) throw new ArgumentException("McNemar's test needs at least one pair.", nameof(first));
        int b = 0, c = 0;
        for (int i = 0; i < first.Count; i++)
        {
            if (first[i] && !second[i]) b++;
            else if (!first[i] && second[i]) c++;
        }
        return McNemar(b, c, first.Count);
    }

    /// <summary>McNemar's exact test from the discordant counts <paramref name="b"/> and <paramref name="c"/> of <paramref name="pairs"/> pairs.</summary>
    public static TestResult McNemar(int b, int c, int pairs)
    {
        if (b < 0 || c < 0 || b + c > pairs)
            throw new ArgumentOutOfRangeException(nameof(pairs), $"Discordant counts b = {b}, c = {c} must be non-negative and sum to at most the {pairs} pairs.");
        double p = b + c == 0 ? 1 : Math.Min(1, 2 * Binomial.CDF(0.5, b + c, Math.Min(b, c)));
        return new TestResult("mcnemar exact", b, p, (double)(b - c) / pairs, pairs);
    }

    /// <summary>
    /// Paired permutation (sign-flip) test of the mean difference x − y: under the null each pair's difference is equally
    /// likely to have either sign. Exact (all 2ⁿ sign patterns) for n ≤ <paramref name="exactUpTo"/>, otherwise
    /// <paramref name="resamples"/> random patterns with p = (1 + count)/(1 + resamples), seeded.
    /// </summary>
    public static TestResult PairedPermutation(IReadOnlyList<double> x, IReadOnlyList<double> y, int resamples = 10000, int seed = 0, int exactUpTo = 16)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Count != y.Count) throw new ArgumentException($"A paired test needs the same items: x has {x.Count} values, y {y.Count}.");
        if (x.Count == 0) throw new ArgumentException("A paired test needs at least one pair.", nameof(x));
        int n = x.Count;
        var d = new double[n];
        for (int i = 0; i < n; i++) d[i] = x[i] - y[i];
        double observed = Math.Abs(d.Sum()), tol = 1e-9 * Math.Max(1, observed);
        double p;
        if (n <= exactUpTo)
        {
            long hits = 0, total = 1L << n;
            for (long mask = 0; mask < total; mask++)
            {
                double s = 0;
                for (int i = 0; i < n; i++) s += (mask >> i & 1) == 1 ? -d[i] : d[i];
                if (Math.Abs(s) >= observed - tol) hits++;
            }
            p = (double)hits / total;
        }
        else
        {
            var rng = new Random(seed);
            long hits = 0;
            for (int r = 0; r < resamples; r++)
            {
                double s = 0;
                for (int i = 0; i < n; i++) s += rng.Next(2) == 0 ? -d[i] : d[i];
                if (Math.Abs(s) >= observed - tol) hits++;
            }
            p = (1.0 + hits) / (1.0 + resamples);
        }
        return new TestResult("paired permutation", d.Average(), p, d.Average(), n);
    }

    /// <summary>
    /// Two-sample permutation test of the difference of means (independent samples): <paramref name="resamples"/> random
    /// relabellings, p = (1 + count)/(1 + resamples), seeded.
    /// </summary>
    public static TestResult Permutation(IReadOnlyList<double> a, IReadOnlyList<double> b, int resamples = 10000, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Count == 0 || b.Count == 0) throw new ArgumentException($"Both samples need values (got {a.Count} and {b.Count}).");
        var all = a.Concat(b).ToArray();
        double observed = a.Average() - b.Average(), tol = 1e-9 * Math.Max(1, Math.Abs(observed));
        var rng = new Random(seed);
        long hits = 0;
        for (int r = 0; r < resamples; r++)
        {
            rng.Shuffle(all);
            double sa = 0;
            for (int i = 0; i < a.Count; i++) sa += all[i];
            double diff = sa / a.Count - (all.Sum() - sa) / b.Count;
            if (Math.Abs(diff) >= Math.Abs(observed) - tol) hits++;
        }
        return new TestResult("permutation", observed, (1.0 + hits) / (1.0 + resamples), observed, all.Length);
    }

    /// <summary>One row per named test: <c>comparison</c>, <c>test</c>, <c>effect</c>, <c>statistic</c>, <c>p_value</c>, <c>n</c>.</summary>
    public static DataFrame Table(IEnumerable<(string Comparison, TestResult Result)> results)
    {
        var rows = results.ToList();
        return new DataFrame(
            new StringDataFrameColumn("comparison", rows.Select(r => r.Comparison)),
            new StringDataFrameColumn("test", rows.Select(r => r.Result.Test)),
            new DoubleDataFrameColumn("effect", rows.Select(r => r.Result.Effect)),
            new DoubleDataFrameColumn("statistic", rows.Select(r => r.Result.Statistic)),
            new DoubleDataFrameColumn("p_value", rows.Select(r => r.Result.PValue)),
            new Int32DataFrameColumn("n", rows.Select(r => r.Result.N)));
    }

    static void CheckCounts(int successes, int trials, string which)
    {
        if (trials <= 0) throw new ArgumentOutOfRangeException("trials" + which, $"trials{which} must be positive, not {trials}.");
        if (successes < 0 || successes > trials)
            throw new ArgumentOutOfRangeException("successes" + which, $"successes{which} must be in [0, {trials}], not {successes}.");
    }
}
