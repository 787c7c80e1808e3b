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
                throw Failed(name, $"✗ {name}: not implemented yet — replace the `throw new NotImplementedException(...)` in the exercise cell with your code, run that cell, then this one.");
            }
            catch (Exception e)
            {
                throw Failed(name, $"✗ {name}: your function threw {e.GetType().Name}: {e.Message}\n  input:    {Preview(input)}" + (hint == null ? "" : $"\n  hint:     {hint}"));
            }
            var (ok, detail) = SafetyNotebooks.Teaching.Check.Compare(got, expected, atol, rtol);
            if (!ok)
                throw Failed(name, $"✗ {name}: trial {trial + 1} of {trials} failed ({detail})\n  input:    {Preview(input)}\n  expected: {Preview(expected)}\n  got:      {Preview(got)}" + (hint == null ? "" : $"\n  hint:     {hint}"));
        }
        Passed(name, $"✓ {name}: all {trials} seeded trials match the reference");
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
                throw Failed(name, $"✗ {name}: not implemented yet — replace the `throw new NotImplementedException(...)` in the exercise cell with your code, run that cell, then this one.");
            }
            catch (Exception e)
            {
                throw Failed(name, $"✗ {name}: your function threw {e.GetType().Name}: {e.Message}\n  input:    {shown}" + (hint == null ? "" : $"\n  hint:     {hint}"));
            }
            // NaN and infinities never match, not even themselves: a non-finite answer (or reference) is named as such.
            if (!(double.IsFinite(got) && double.IsFinite(expected) && Math.Abs(got - expected) <= tolerance))
                throw Failed(name, $"✗ {name}: trial {trial + 1} of {trials} failed" +
                    (double.IsFinite(got) ? double.IsFinite(expected) ? "" : " (the reference is not finite on this input)" : $" (your answer is {SafetyNotebooks.Teaching.Check.Named(got)})") +
                    $"\n  input:    {shown}\n  expected: {SafetyNotebooks.Teaching.Check.Named(expected)}\n  got:      {SafetyNotebooks.Teaching.Check.Named(got)}" + (hint == null ? "" : $"\n  hint:     {hint}"));
        }
        Passed(name, $"✓ {name}: all {trials} seeded trials match the reference");
    }

    static readonly AsyncLocal<bool> InFallback = new();

    static void Passed(string name, string line)
    {
        GradeLog.Record(GradeLog.Exercise, name, true);
        (Out ?? Console.Out).WriteLine(line);
    }

    static CheckFailedException Failed(string name, string message)
    {
        GradeLog.Record(GradeLog.Exercise, name, false, message, fallback: InFallback.Value);
        return new CheckFailedException(message);
    }

    /// <summary>
    /// ARENA's pattern for exercises that later cells build on: runs <paramref name="check"/> on the learner's function and returns
    /// it when the check passes; when it fails (not written yet, wrong, or throwing) prints the failure and a visible note, and returns
    /// <paramref name="reference"/> instead, so the rest of the lesson still shows what it should. Later cells call the returned function.
    /// </summary>
    /// <example><code>
    /// var inductionScore = Exercises.Use&lt;Func&lt;Tensor, int, Tensor&gt;&gt;("InductionScore", InductionScore, InductionScoreByGather,
    ///     f =&gt; Exercises.Check("InductionScore", p =&gt; f(p, 5), p =&gt; InductionScoreByGather(p, 5), RandomPattern));
    /// </code></example>
    public static T Use<T>(string name, T learner, T reference, Action<T> check) where T : Delegate
    {
        ArgumentNullException.ThrowIfNull(learner);
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(check);
        string? failure = null;
        InFallback.Value = true;
        try { check(learner); }
        catch (CheckFailedException e) { failure = e.Message; }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            failure = $"✗ {name}: the check threw {e.GetType().Name}: {e.Message}";
            GradeLog.Record(GradeLog.Exercise, name, false, failure, fallback: true);
        }
        finally { InFallback.Value = false; }
        if (failure == null) return learner;
        var writer = Out ?? Console.Out;
        writer.WriteLine(failure);
        bool missing = failure.Contains("not implemented yet", StringComparison.Ordinal);
        writer.WriteLine($"↪ FALLBACK: the cells below use the reference solution of {name}, because yours is {(missing ? "not written yet" : "not correct yet")}. " +
            $"The rest of the lesson shows what it should; fix {name}, run its cell and this one again to use yours.");
        return reference;
    }

    /// <summary><see cref="Check(string, Func{Tensor, Tensor}, Func{Tensor, Tensor}, Func{int, Tensor}, int, double, double, string?)"/>, but returns the function later cells should use: the learner's when it passes, the reference (with a visible note) when not. See <see cref="Use{T}"/>.</summary>
    public static Func<Tensor, Tensor> CheckOrFallback(string name, Func<Tensor, Tensor> learner, Func<Tensor, Tensor> reference, Func<int, Tensor> makeInput,
        int trials = 5, double atol = 1e-5, double rtol = 1e-4, string? hint = null) =>
        Use(name, learner, reference, f => Check(name, f, reference, makeInput, trials, atol, rtol, hint));

    /// <summary>The scalar <see cref="Check{TIn}"/>, returning the function later cells should use (see <see cref="Use{T}"/>).</summary>
    public static Func<TIn, double> CheckOrFallback<TIn>(string name, Func<TIn, double> learner, Func<TIn, double> reference, Func<Random, TIn> makeInput,
        int trials = 5, double tolerance = 1e-6, string? hint = null, Func<TIn, string>? describe = null) =>
        Use(name, learner, reference, f => Check(name, f, reference, makeInput, trials, tolerance, hint, describe));

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
