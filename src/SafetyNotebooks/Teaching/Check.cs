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

    static void Pass(string what) => (Out ?? Console.Out).WriteLine($"✓ {what}");

    static void Fail(string what, string expected, string got, string? hint) =>
        throw new CheckFailedException($"✗ {what}\n  expected: {expected}\n  got:      {got}" + (hint == null ? "" : $"\n  hint:     {hint}"));

    /// <summary>Checks a condition.</summary>
    public static void That(bool condition, string what, string? hint = null)
    {
        if (condition) Pass(what); else Fail(what, "true", "false", hint);
    }

    /// <summary>Checks |actual − expected| ≤ tolerance.</summary>
    public static void Close(double actual, double expected, double tolerance, string what, string? hint = null)
    {
        if (double.IsFinite(actual) && Math.Abs(actual - expected) <= tolerance) Pass($"{what}: {F(actual)} ≈ {F(expected)} (±{F(tolerance)})");
        else Fail(what, $"{F(expected)} ± {F(tolerance)}", F(actual), hint);
    }

    /// <summary>Checks actual &lt; bound.</summary>
    public static void Less(double actual, double bound, string what, string? hint = null)
    {
        if (actual < bound) Pass($"{what}: {F(actual)} < {F(bound)}"); else Fail(what, $"< {F(bound)}", F(actual), hint);
    }

    /// <summary>Checks actual &gt; bound.</summary>
    public static void Greater(double actual, double bound, string what, string? hint = null)
    {
        if (actual > bound) Pass($"{what}: {F(actual)} > {F(bound)}"); else Fail(what, $"> {F(bound)}", F(actual), hint);
    }

    /// <summary>Checks lo ≤ actual ≤ hi.</summary>
    public static void Between(double actual, double lo, double hi, string what, string? hint = null)
    {
        if (actual >= lo && actual <= hi) Pass($"{what}: {F(actual)} in [{F(lo)}, {F(hi)}]"); else Fail(what, $"in [{F(lo)}, {F(hi)}]", F(actual), hint);
    }

    /// <summary>Checks a tensor's shape.</summary>
    public static void Shape(Tensor t, long[] expected, string what, string? hint = null)
    {
        if (t.shape.SequenceEqual(expected)) Pass($"{what}: shape [{string.Join(", ", expected)}]");
        else Fail(what, $"shape [{string.Join(", ", expected)}]", $"shape [{string.Join(", ", t.shape)}]", hint);
    }

    /// <summary>Checks two tensors have the same shape and agree elementwise within atol + rtol·|expected|.</summary>
    public static void AllClose(Tensor actual, Tensor expected, string what, double atol = 1e-5, double rtol = 1e-4, string? hint = null)
    {
        var (ok, detail) = Compare(actual, expected, atol, rtol);
        if (ok) Pass($"{what}: {detail}"); else Fail(what, $"values of {Describe(expected)} within atol {F(atol)}, rtol {F(rtol)}", detail, hint);
    }

    /// <summary>Compares tensors; returns whether they match and a description (max difference or shape mismatch, first bad index).</summary>
    public static (bool Ok, string Detail) Compare(Tensor actual, Tensor expected, double atol, double rtol)
    {
        if (!actual.shape.SequenceEqual(expected.shape))
            return (false, $"shape [{string.Join(", ", actual.shape)}] vs expected [{string.Join(", ", expected.shape)}]");
        using var scope = NewDisposeScope();
        var a = actual.detach().to(ScalarType.Float64).cpu();
        var e = expected.detach().to(ScalarType.Float64).cpu();
        if (a.numel() == 0) return (true, "both empty");
        var diff = (a - e).abs();
        var bound = e.abs() * rtol + atol;
        var bad = diff.gt(bound).logical_or(a.isnan().logical_xor(e.isnan()));
        double maxDiff = diff.nan_to_num(0).max().item<double>();
        if (bad.any().item<bool>())
        {
            long flat = bad.flatten().nonzero()[0, 0].item<long>();
            var index = Unravel(flat, actual.shape);
            var idx = string.Join(", ", index);
            double got = a.flatten()[flat].item<double>(), exp = e.flatten()[flat].item<double>();
            return (false, $"max |diff| {F(maxDiff)}; first mismatch at [{idx}]: got {F(got)}, expected {F(exp)}");
        }
        return (true, $"max |diff| {F(maxDiff)}");
    }

    static long[] Unravel(long flat, long[] shape)
    {
        var idx = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--) { idx[d] = flat % shape[d]; flat /= shape[d]; }
        return idx;
    }

    static string Describe(Tensor t) => $"[{string.Join(", ", t.shape)}] {t.dtype}";
}
