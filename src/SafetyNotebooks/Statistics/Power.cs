using MathNet.Numerics.Distributions;

namespace SafetyNotebooks.Statistics;

/// <summary>
/// Planning an evaluation before running it: how many prompts a rate needs for a given margin, and how many per arm a
/// two-rate comparison needs to detect a difference (normal approximation, two-sided, pooled variance under the null:
/// Fleiss's formula without continuity correction). Quantiles from MathNet.Numerics.
/// </summary>
public static class Power
{
    /// <summary>Prompts needed so that a rate near <paramref name="rate"/> has a confidence half-width of at most <paramref name="margin"/>: ⌈z²·p(1−p)/margin²⌉.</summary>
    public static int SampleSizeForMargin(double rate, double margin, double level = 0.95)
    {
        CheckRate(rate, nameof(rate));
        if (!(margin > 0 && margin < 1)) throw new ArgumentOutOfRangeException(nameof(margin), $"margin must be in (0, 1), e.g. 0.05 for ±5 points, not {margin}.");
        Rates.CheckLevel(level);
        double z = Rates.Z(level);
        return (int)Math.Ceiling(z * z * rate * (1 - rate) / (margin * margin));
    }

    /// <summary>
    /// Power of the two-sided pooled two-proportion z test with <paramref name="perGroup"/> items per arm when the true rates
    /// are <paramref name="rate1"/> and <paramref name="rate2"/>: Φ((|Δ|√n − z_{α/2}√(2p̄q̄)) / √(p1q1 + p2q2)).
    /// </summary>
    public static double TwoProportions(double rate1, double rate2, int perGroup, double alpha = 0.05)
    {
        CheckRate(rate1, nameof(rate1));
        CheckRate(rate2, nameof(rate2));
        if (perGroup < 1) throw new ArgumentOutOfRangeException(nameof(perGroup), $"perGroup must be at least 1, not {perGroup}.");
        double za = Rates.Z(1 - alpha), pbar = (rate1 + rate2) / 2;
        double sdNull = Math.Sqrt(2 * pbar * (1 - pbar)), sdAlt = Math.Sqrt(rate1 * (1 - rate1) + rate2 * (1 - rate2));
        return Normal.CDF(0, 1, (Math.Abs(rate1 - rate2) * Math.Sqrt(perGroup) - za * sdNull) / sdAlt);
    }

    /// <summary>
    /// Items per arm for the two-sided two-proportion z test to reach <paramref name="power"/>:
    /// ⌈(z_{α/2}√(2p̄q̄) + z_β√(p1q1 + p2q2))² / Δ²⌉.
    /// </summary>
    public static int SampleSizeTwoProportions(double rate1, double rate2, double alpha = 0.05, double power = 0.8)
    {
        CheckRate(rate1, nameof(rate1));
        CheckRate(rate2, nameof(rate2));
        if (rate1 == rate2) throw new ArgumentException("The two rates are equal: no sample size detects a zero difference. Give the smallest difference you care about.");
        if (!(power > 0 && power < 1)) throw new ArgumentOutOfRangeException(nameof(power), $"power must be in (0, 1), e.g. 0.8, not {power}.");
        double za = Rates.Z(1 - alpha), zb = Normal.InvCDF(0, 1, power), pbar = (rate1 + rate2) / 2;
        double num = za * Math.Sqrt(2 * pbar * (1 - pbar)) + zb * Math.Sqrt(rate1 * (1 - rate1) + rate2 * (1 - rate2));
        return (int)Math.Ceiling(num * num / ((rate1 - rate2) * (rate1 - rate2)));
    }

    /// <summary>
    /// The smallest drop from <paramref name="baseline"/> (a rate to be reduced, such as an attack success rate) that the
    /// two-proportion test detects with <paramref name="power"/> at <paramref name="perGroup"/> items per arm (bisection).
    /// </summary>
    public static double MinimumDetectableDecrease(double baseline, int perGroup, double alpha = 0.05, double power = 0.8)
    {
        CheckRate(baseline, nameof(baseline));
        if (TwoProportions(baseline, 1e-9, perGroup, alpha) < power) return double.NaN; // not even a drop to zero is detectable
        double lo = 0, hi = baseline;                                                    // lo: undetectable, hi: detectable
        for (int i = 0; i < 60; i++)
        {
            double mid = (lo + hi) / 2;
            if (TwoProportions(baseline, baseline - mid, perGroup, alpha) >= power) hi = mid; else lo = mid;
        }
        return hi;
    }

    static void CheckRate(double rate, string name)
    {
        if (!(rate >= 0 && rate <= 1)) throw new ArgumentOutOfRangeException(name, $"{name} is a rate and must be in [0, 1], not {rate}.");
    }
}
