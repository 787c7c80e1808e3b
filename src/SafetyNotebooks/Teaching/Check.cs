using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Teaching;

/// <summary>
/// Assertions for experiment results in notebooks. Each one prints a ✓ line when it holds and throws
/// <see cref="CheckFailedException"/> with what was expected, what was got and a hint when it does
/// not, so a silent regression fails the headless run instead of drawing a wrong chart.
/// </summary>
public static class Check
{
    /// <summary>Where ✓ lines go; null (the default) means the current <see cref="Console.Out"/>, which notebook kernels swap per cell.</summary>
    public static TextWriter? Out { get; set; }

    static string F(double v) => v.ToString("G6", CultureInfo.InvariantCulture);

    /// <summary>A number for a failure message; NaN and infinities say what they are.</summary>
    internal static string Named(double v) => double.IsNaN(v) ? "NaN (not a number)"
        : double.IsInfinity(v) ? (v > 0 ? "+infinity" : "-infinity") : F(v);

    // The grade log keys a result by what was checked, without the measured values appended to the ✓ line.
    static void Pass(string what, string? values = null)
    {
        GradeLog.Record(GradeLog.Check, what, true);
        (Out ?? Console.Out).WriteLine($"✓ {what}{(values == null ? "" : ": " + values)}");
    }

    static void Fail(string what, string expected, string got, string? hint)
    {
        var message = $"✗ {what}\n  expected: {expected}\n  got:      {got}" + (hint == null ? "" : $"\n  hint:     {hint}");
        GradeLog.Record(GradeLog.Check, what, false, message);
        throw new CheckFailedException(message);
    }

    /// <summary>Checks a condition.</summary>
    public static void That(bool condition, string what, string? hint = null)
    {
        if (condition) Pass(what); else Fail(what, "true", "false", hint);
    }

    /// <summary>Checks |actual − expected| ≤ tolerance.</summary>
    public static void Close(double actual, double expected, double tolerance, string what, string? hint = null)
    {
        if (double.IsFinite(actual) && double.IsFinite(expected) && Math.Abs(actual - expected) <= tolerance) Pass(what, $"{F(actual)} ≈ {F(expected)} (±{F(tolerance)})");
        else Fail(what, $"{Named(expected)} ± {F(tolerance)}", Named(actual), hint);
    }

    /// <summary>Checks actual &lt; bound.</summary>
    public static void Less(double actual, double bound, string what, string? hint = null)
    {
        if (actual < bound) Pass(what, $"{F(actual)} < {F(bound)}"); else Fail(what, $"< {Named(bound)}", Named(actual), hint);
    }

    /// <summary>Checks actual &gt; bound.</summary>
    public static void Greater(double actual, double bound, string what, string? hint = null)
    {
        if (actual > bound) Pass(what, $"{F(actual)} > {F(bound)}"); else Fail(what, $"> {Named(bound)}", Named(actual), hint);
    }

    /// <summary>Checks lo ≤ actual ≤ hi.</summary>
    public static void Between(double actual, double lo, double hi, string what, string? hint = null)
    {
        if (actual >= lo && actual <= hi) Pass(what, $"{F(actual)} in [{F(lo)}, {F(hi)}]"); else Fail(what, $"in [{Named(lo)}, {Named(hi)}]", Named(actual), hint);
    }

    /// <summary>Checks a tensor's shape.</summary>
    public static void Shape(Tensor t, long[] expected, string what, string? hint = null)
    {
        if (t.shape.SequenceEqual(expected)) Pass(what, $"shape [{string.Join(", ", expected)}]");
        else Fail(what, $"shape [{string.Join(", ", expected)}]", $"shape [{string.Join(", ", t.shape)}]", hint);
    }

    /// <summary>Checks two tensors have the same shape and agree elementwise within atol + rtol·|expected|.</summary>
    public static void AllClose(Tensor actual, Tensor expected, string what, double atol = 1e-5, double rtol = 1e-4, string? hint = null)
    {
        var (ok, detail) = Compare(actual, expected, atol, rtol);
        if (ok) Pass(what, $"{detail}"); else Fail(what, $"values of {Describe(expected)} within atol {F(atol)}, rtol {F(rtol)}", detail, hint);
    }

    /// <summary>
    /// Compares tensors; returns whether they match and a description (max difference or shape mismatch, first bad index).
    /// NaN and infinities never match (not even NaN against NaN): a non-finite value in <paramref name="actual"/> or in
    /// <paramref name="expected"/> is reported as such, with its count and first index.
    /// </summary>
    public static (bool Ok, string Detail) Compare(Tensor actual, Tensor expected, double atol, double rtol)
    {
        if (!actual.shape.SequenceEqual(expected.shape))
            return (false, $"shape [{string.Join(", ", actual.shape)}] vs expected [{string.Join(", ", expected.shape)}]");
        using var scope = NewDisposeScope();
        var a = actual.detach().to(ScalarType.Float64).cpu();
        var e = expected.detach().to(ScalarType.Float64).cpu();
        if (a.numel() == 0) return (true, "both empty");
        if (NonFinite(a) is { } gotBad)
            return (false, $"got {gotBad.Summary}, first at [{string.Join(", ", Unravel(gotBad.First, actual.shape))}] where {F(e.flatten()[gotBad.First].item<double>())} is expected " +
                "(NaN comes from e.g. 0/0, log or sqrt of a negative number; infinity from division by zero or exp overflow)");
        if (NonFinite(e) is { } expBad)
            return (false, $"the expected values contain {expBad.Summary}, first at [{string.Join(", ", Unravel(expBad.First, actual.shape))}]: " +
                "the reference itself is not finite on this input, so nothing can match it (check the input or the reference)");
        var diff = (a - e).abs();
        var bound = e.abs() * rtol + atol;
        var bad = diff.gt(bound);
        double maxDiff = diff.max().item<double>();
        if (bad.any().item<bool>())
        {
            long flat = bad.flatten().nonzero()[0, 0].item<long>();
            var idx = string.Join(", ", Unravel(flat, actual.shape));
            double got = a.flatten()[flat].item<double>(), exp = e.flatten()[flat].item<double>();
            return (false, $"max |diff| {F(maxDiff)}; first mismatch at [{idx}]: got {F(got)}, expected {F(exp)}");
        }
        return (true, $"max |diff| {F(maxDiff)}");
    }

    /// <summary>Counts of NaN and infinite values in a float64 tensor and the flat index of the first one, or null if all are finite.</summary>
    internal static (string Summary, long First)? NonFinite(Tensor t)
    {
        using var scope = NewDisposeScope();
        var nonFinite = t.isfinite().logical_not().flatten();
        if (!nonFinite.any().item<bool>()) return null;
        long nan = t.isnan().sum().item<long>(), inf = t.isinf().sum().item<long>();
        var parts = new List<string>();
        if (nan > 0) parts.Add($"{nan} NaN value{(nan == 1 ? "" : "s")}");
        if (inf > 0) parts.Add($"{inf} infinite value{(inf == 1 ? "" : "s")}");
        return (string.Join(" and ", parts), nonFinite.nonzero()[0, 0].item<long>());
    }

    internal static long[] Unravel(long flat, long[] shape)
    {
        var idx = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--) { idx[d] = flat % shape[d]; flat /= shape[d]; }
        return idx;
    }

    static string Describe(Tensor t) => $"[{string.Join(", ", t.shape)}] {t.dtype}";
}
