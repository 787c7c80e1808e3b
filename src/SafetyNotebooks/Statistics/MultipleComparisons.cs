using Microsoft.Data.Analysis;

namespace SafetyNotebooks.Statistics;

/// <summary>
/// Adjusted p-values for families of tests (one test per attack category, per judge, per model): Bonferroni and Holm
/// control the family-wise error rate, Benjamini–Hochberg the false discovery rate. Each returns the adjusted p-values in
/// the input order (capped at 1), to be compared with the unadjusted α, as R's <c>p.adjust</c> does.
/// </summary>
public static class MultipleComparisons
{
    /// <summary>Bonferroni: p·m.</summary>
    public static double[] Bonferroni(IReadOnlyList<double> pValues)
    {
        Check(pValues);
        return pValues.Select(p => Math.Min(1, p * pValues.Count)).ToArray();
    }

    /// <summary>Holm's step-down: sort ascending, multiply the i-th smallest (0-based) by m − i, then take running maxima.</summary>
    public static double[] Holm(IReadOnlyList<double> pValues)
    {
        Check(pValues);
        int m = pValues.Count;
        var order = Enumerable.Range(0, m).OrderBy(i => pValues[i]).ToArray();
        var adjusted = new double[m];
        double running = 0;
        for (int r = 0; r < m; r++)
        {
            running = Math.Max(running, Math.Min(1, (m - r) * pValues[order[r]]));
            adjusted[order[r]] = running;
        }
        return adjusted;
    }

    /// <summary>Benjamini–Hochberg step-up: the i-th smallest (1-based) times m/i, then running minima from the largest down.</summary>
    public static double[] BenjaminiHochberg(IReadOnlyList<double> pValues)
    {
        Check(pValues);
        int m = pValues.Count;
        var order = Enumerable.Range(0, m).OrderBy(i => pValues[i]).ToArray();
        var adjusted = new double[m];
        double running = 1;
        for (int r = m - 1; r >= 0; r--)
        {
            running = Math.Min(running, pValues[order[r]] * m / (r + 1));
            adjusted[order[r]] = running;
        }
        return adjusted;
    }

    /// <summary>
    /// One row per test: <c>test</c>, <c>p_value</c>, <c>p_bonferroni</c>, <c>p_holm</c>, <c>p_bh</c>, and whether each is
    /// below <paramref name="alpha"/> (<c>reject_raw</c>, <c>reject_holm</c>, <c>reject_bh</c>).
    /// </summary>
    public static DataFrame Table(IReadOnlyList<string> names, IReadOnlyList<double> pValues, double alpha = 0.05)
    {
        if (names.Count != pValues.Count) throw new ArgumentException($"{names.Count} names for {pValues.Count} p-values: give one name per test.");
        var bonf = Bonferroni(pValues);
        var holm = Holm(pValues);
        var bh = BenjaminiHochberg(pValues);
        return new DataFrame(
            new StringDataFrameColumn("test", names),
            new DoubleDataFrameColumn("p_value", pValues),
            new DoubleDataFrameColumn("p_bonferroni", bonf),
            new DoubleDataFrameColumn("p_holm", holm),
            new DoubleDataFrameColumn("p_bh", bh),
            new BooleanDataFrameColumn("reject_raw", pValues.Select(p => p < alpha)),
            new BooleanDataFrameColumn("reject_holm", holm.Select(p => p < alpha)),
            new BooleanDataFrameColumn("reject_bh", bh.Select(p => p < alpha)));
    }

    static void Check(IReadOnlyList<double> pValues)
    {
        ArgumentNullException.ThrowIfNull(pValues);
        if (pValues.Count == 0) throw new ArgumentException("No p-values to adjust.", nameof(pValues));
        for (int i = 0; i < pValues.Count; i++)
            if (!(pValues[i] >= 0 && pValues[i] <= 1)) throw new ArgumentOutOfRangeException(nameof(pValues), $"p-value {i} is {pValues[i]}; p-values lie in [0, 1].");
    }
}
