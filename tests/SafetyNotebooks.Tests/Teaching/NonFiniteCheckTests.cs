using SafetyNotebooks.Teaching;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Teaching;

/// <summary>NaN and infinities are mismatches, named as such (issue 14: a NaN answer was reported as "max |diff| 5.96e-08").</summary>
[Collection("console")]
public class NonFiniteCheckTests
{
    public NonFiniteCheckTests() { SafetyNotebooks.Runtime.TorchRuntime.EnsureLoaded(); Check.Out = TextWriter.Null; Exercises.Out = TextWriter.Null; }

    static Tensor WithValueAt(Tensor x, long index, float value)
    {
        var y = x.clone();
        y.view(-1)[index] = tensor(value);
        return y;
    }

    [Fact]
    public void A_NaN_in_the_learners_answer_beyond_the_preview_is_named()
    {
        // Index 10 of [3, 4] = [2, 2]: past the 6 values the preview shows.
        Func<Tensor, Tensor> reference = z => z * 2;
        var e = Assert.Throws<CheckFailedException>(() =>
            Exercises.Check("double", z => WithValueAt(z * 2, 10, float.NaN), reference, _ => randn(3, 4), trials: 1));
        Assert.Contains("got 1 NaN value, first at [2, 2]", e.Message);
        Assert.DoesNotContain("max |diff|", e.Message);
        Assert.Contains("contains 1 NaN value, first at [2, 2]", e.Message); // the preview of "got"
    }

    [Fact]
    public void Infinities_and_NaN_against_NaN_never_match()
    {
        var expected = tensor(new float[] { 1, 2, 3 });
        var (ok, detail) = Check.Compare(tensor(new float[] { 1, float.PositiveInfinity, float.NegativeInfinity }), expected, 1e-5, 1e-4);
        Assert.False(ok);
        Assert.Contains("got 2 infinite values, first at [1]", detail);

        var nan = tensor(new float[] { 1, float.NaN, 3 });
        (ok, detail) = Check.Compare(nan, nan, 1e-5, 1e-4);  // used to pass: NaN xor NaN is "no mismatch"
        Assert.False(ok);
        Assert.Contains("NaN", detail);
    }

    [Fact]
    public void A_NaN_in_the_expected_values_is_named_as_the_references_problem()
    {
        var expected = tensor(new float[] { 1, float.NaN, 3 });
        var (ok, detail) = Check.Compare(tensor(new float[] { 1, 2, 3 }), expected, 1e-5, 1e-4);
        Assert.False(ok);
        Assert.Contains("expected values contain 1 NaN value, first at [1]", detail);
        var e = Assert.Throws<CheckFailedException>(() => Check.AllClose(tensor(new float[] { 1, 2, 3 }), expected, "vector"));
        Assert.Contains("expected values contain 1 NaN value", e.Message);
    }

    [Fact]
    public void Scalar_checks_name_NaN_and_infinity()
    {
        var e = Assert.Throws<CheckFailedException>(() =>
            Exercises.Check<double>("square", x => double.NaN, x => x * x, r => r.NextDouble(), trials: 1));
        Assert.Contains("your answer is NaN (not a number)", e.Message);
        e = Assert.Throws<CheckFailedException>(() =>
            Exercises.Check<double>("square", x => double.PositiveInfinity, x => double.PositiveInfinity, r => r.NextDouble(), trials: 1));
        Assert.Contains("+infinity", e.Message);
        e = Assert.Throws<CheckFailedException>(() => Check.Less(double.NaN, 1, "loss"));
        Assert.Contains("got:      NaN (not a number)", e.Message);
        e = Assert.Throws<CheckFailedException>(() => Check.Close(double.PositiveInfinity, double.PositiveInfinity, 1, "inf"));
        Assert.Contains("+infinity", e.Message);
    }
}
