using SafetyNotebooks.Teaching;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Teaching;

[Collection("console")]
public class CheckTests
{
    public CheckTests() { SafetyNotebooks.Runtime.TorchRuntime.EnsureLoaded(); Check.Out = TextWriter.Null; Exercises.Out = TextWriter.Null; }

    [Fact]
    public void Close_fails_with_expected_got_and_hint()
    {
        Check.Close(1.0005, 1.0, 1e-3, "near one");
        var e = Assert.Throws<CheckFailedException>(() => Check.Close(1.5, 1.0, 1e-3, "near one", hint: "look again"));
        Assert.Contains("expected: 1 ± 0.001", e.Message);
        Assert.Contains("got:      1.5", e.Message);
        Assert.Contains("hint:     look again", e.Message);
        Assert.Throws<CheckFailedException>(() => Check.Close(double.NaN, 1.0, 1e-3, "nan is never close"));
    }

    [Fact]
    public void All_close_reports_the_first_mismatch_index()
    {
        var expected = tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        var actual = tensor(new float[] { 1, 2, 3.5f, 4 }).reshape(2, 2);
        var e = Assert.Throws<CheckFailedException>(() => Check.AllClose(actual, expected, "matrix"));
        Assert.Contains("first mismatch at [1, 0]", e.Message);
        Assert.Contains("got 3.5, expected 3", e.Message);
        var shape = Assert.Throws<CheckFailedException>(() => Check.AllClose(actual.flatten(), expected, "matrix"));
        Assert.Contains("shape [4] vs expected [2, 2]", shape.Message);
    }

    [Fact]
    public void Exercise_check_passes_a_correct_implementation_and_explains_a_wrong_one()
    {
        // reference: softmax written out independently
        Func<Tensor, Tensor> reference = z => z.exp() / z.exp().sum(-1, keepdim: true);
        Exercises.Check("softmax", z => softmax(z, -1), reference, _ => randn(3, 4));
        var wrong = Assert.Throws<CheckFailedException>(() =>
            Exercises.Check("softmax", z => z.exp(), reference, _ => randn(3, 4), hint: "normalise"));
        Assert.Contains("trial 1 of 5 failed", wrong.Message);
        Assert.Contains("input:    [3, 4] Float32", wrong.Message);
        Assert.Contains("hint:     normalise", wrong.Message);
        var stub = Assert.Throws<CheckFailedException>(() =>
            Exercises.Check("softmax", z => throw new NotImplementedException(), reference, _ => randn(3, 4)));
        Assert.Contains("not implemented yet", stub.Message);
    }

    [Fact]
    public void Scalar_exercise_check_compares_with_a_hand_formula()
    {
        // d/dx x^2 at x = 3 is 6
        Exercises.Check<double>("derivative", x => 2 * x, x => 2 * x, r => r.NextDouble() * 10);
        var e = Assert.Throws<CheckFailedException>(() =>
            Exercises.Check<double>("derivative", x => x * x, x => 2 * x, _ => 3.0));
        Assert.Contains("expected: 6", e.Message);
        Assert.Contains("got:      9", e.Message);
    }
}
