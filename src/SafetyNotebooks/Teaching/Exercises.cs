using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Teaching;

/// <summary>
/// Checks a learner's implementation against the reference on seeded random inputs.
/// <para>
/// The exercise convention: the learner's function lives in its own cell, with the solution
/// between <c>// BEGIN SOLUTION</c> and <c>// END SOLUTION</c> lines. <c>safety-notebooks export
/// --learner</c> replaces that region with <c>throw new NotImplementedException(...)</c>; the next
/// cell calls <c>Exercises.Check(...)</c>, which reports pass/fail with the input, expected vs got and a hint.
/// </para>
/// </summary>
public static class Exercises
{
    /// <summary>Where results go; null (the default) means the current <see cref="Console.Out"/>, which notebook kernels swap per cell.</summary>
    public static TextWriter? Out { get; set; }

    /// <summary>
    /// Runs <paramref name="learner"/> and <paramref name="reference"/> on <paramref name="trials"/>
    /// inputs from <paramref name="makeInput"/> (seeded by the trial number) and compares tensors.
    /// Throws <see cref="CheckFailedException"/> on the first failure.
    /// </summary>
    public static void Check(string name, Func<Tensor, Tensor> learner, Func<Tensor, Tensor> reference, Func<int, Tensor> makeInput,
        int trials = 5, double atol = 1e-5, double rtol = 1e-4, string? hint = null)
    {
        for (int trial = 0; trial < trials; trial++)
        {
            using var scope = NewDisposeScope();
            torch.random.manual_seed(1000 + trial);
            var input = makeInput(trial);
            var expected = reference(input.clone());
            Tensor got;
            try { got = learner(input.clone()); }
            catch (NotImplementedException)
            {
                throw new CheckFailedException($"✗ {name}: not implemented yet — replace the `throw new NotImplementedException(...)` in the exercise cell with your code, run that cell, then this one.");
            }
            catch (Exception e)
            {
                throw new CheckFailedException($"✗ {name}: your function threw {e.GetType().Name}: {e.Message}\n  input:    {Preview(input)}" + (hint == null ? "" : $"\n  hint:     {hint}"));
            }
            var (ok, detail) = SafetyNotebooks.Teaching.Check.Compare(got, expected, atol, rtol);
            if (!ok)
                throw new CheckFailedException($"✗ {name}: trial {trial + 1} of {trials} failed ({detail})\n  input:    {Preview(input)}\n  expected: {Preview(expected)}\n  got:      {Preview(got)}" + (hint == null ? "" : $"\n  hint:     {hint}"));
        }
        (Out ?? Console.Out).WriteLine($"✓ {name}: all {trials} seeded trials match the reference");
    }

    /// <summary>Checks a scalar-valued function on seeded inputs (e.g. a gradient worked by hand).</summary>
    public static void Check<TIn>(string name, Func<TIn, double> learner, Func<TIn, double> reference, Func<Random, TIn> makeInput,
        int trials = 5, double tolerance = 1e-6, string? hint = null, Func<TIn, string>? describe = null)
    {
        for (int trial = 0; trial < trials; trial++)
        {
            var input = makeInput(new Random(1000 + trial));
            double expected = reference(input), got;
            string shown = describe?.Invoke(input) ?? input?.ToString() ?? "null";
            try { got = learner(input); }
            catch (NotImplementedException)
            {
                throw new CheckFailedException($"✗ {name}: not implemented yet — replace the `throw new NotImplementedException(...)` in the exercise cell with your code, run that cell, then this one.");
            }
            // NaN and infinities never match, not even themselves: a non-finite answer (or reference) is named as such.
            if (!(double.IsFinite(got) && double.IsFinite(expected) && Math.Abs(got - expected) <= tolerance))
                throw new CheckFailedException($"✗ {name}: trial {trial + 1} of {trials} failed" +
                    (double.IsFinite(got) ? double.IsFinite(expected) ? "" : " (the reference is not finite on this input)" : $" (your answer is {SafetyNotebooks.Teaching.Check.Named(got)})") +
                    $"\n  input:    {shown}\n  expected: {SafetyNotebooks.Teaching.Check.Named(expected)}\n  got:      {SafetyNotebooks.Teaching.Check.Named(got)}" + (hint == null ? "" : $"\n  hint:     {hint}"));
        }
        (Out ?? Console.Out).WriteLine($"✓ {name}: all {trials} seeded trials match the reference");
    }

    static string F(double v) => v.ToString("G6", CultureInfo.InvariantCulture);

    /// <summary>A short preview of a tensor: shape, dtype and the first values.</summary>
    public static string Preview(Tensor t, int maxValues = 6)
    {
        var shape = "[" + string.Join(", ", t.shape) + "]";
        if (t.numel() == 0) return shape + " (empty)";
        using var flat = t.detach().flatten().to(ScalarType.Float64).cpu();
        var n = (int)Math.Min(maxValues, flat.numel());
        var values = Enumerable.Range(0, n).Select(i => F(flat[i].item<double>()));
        // The first values may all be fine: say when NaN or infinities hide further in.
        var nonFinite = SafetyNotebooks.Teaching.Check.NonFinite(flat) is { } nf
            ? $" (contains {nf.Summary}, first at [{string.Join(", ", SafetyNotebooks.Teaching.Check.Unravel(nf.First, t.shape))}])" : "";
        return $"{shape} {t.dtype}: {string.Join(", ", values)}{(flat.numel() > n ? ", …" : "")}{nonFinite}";
    }
}
