using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

public class ModularFourierTests
{
    public ModularFourierTests() => TorchRuntime.EnsureLoaded();

    const int P = 13;
    static double W(int k, int x) => 2 * Math.PI * k * x / P;

    static Tensor Grid(Func<int, int, int, double> f, int outputs) =>
        tensor(Enumerable.Range(0, P * P * outputs).Select(i => (float)f(i / (P * outputs), i / outputs % P, i % outputs)).ToArray(), new long[] { P, P, outputs });

    [Fact]
    public void The_basis_is_orthonormal_and_named_as_in_Nanda_et_al()
    {
        var (b, names) = ModularFourier.Basis(P);
        Assert.True(b.matmul(b.T).allclose(eye(P), atol: 1e-5));
        Assert.Equal(new[] { "const", "cos 1", "sin 1", "cos 2" }, names[..4]);
        Assert.Equal(Math.Sqrt(2.0 / P) * Math.Cos(W(2, 5)), b[3, 5].item<float>(), 6);
    }

    // A column cos(ω₃x) has squared norm p/2, so its only coefficient is ⟨√(2/p)cos ω₃x, cos ω₃x⟩ = √(p/2);
    // adding 2·sin(ω₅x) adds √(p/2)·2 at k = 5.
    [Fact]
    public void Frequency_norms_of_pure_waves_are_their_hand_computed_coefficients()
    {
        var column = tensor(Enumerable.Range(0, P).Select(x => (float)(Math.Cos(W(3, x)) + 2 * Math.Sin(W(5, x)) + 7)).ToArray()).unsqueeze(1);
        var norms = ModularFourier.FrequencyNorms(column).data<float>().ToArray();
        Assert.Equal((P - 1) / 2, norms.Length);
        Assert.Equal(Math.Sqrt(P / 2.0), norms[2], 4);
        Assert.Equal(2 * Math.Sqrt(P / 2.0), norms[4], 4);
        Assert.True(norms.Where((_, i) => i != 2 && i != 4).All(v => Math.Abs(v) < 1e-4));
        Assert.Equal(new[] { 5, 3 }, ModularFourier.KeyFrequencies(column, 2));
    }

    // cos ω₄(a + b − c) = cos ω₄(a+b)·cos ω₄c + sin ω₄(a+b)·sin ω₄c lies entirely along the k = 4 sum directions for every c.
    [Fact]
    public void The_clock_logits_are_all_restricted_and_nothing_is_left_when_excluded()
    {
        var logits = Grid((a, b, c) => Math.Cos(W(4, a + b - c)), P);
        Assert.True(ModularFourier.RestrictedLogits(logits, new[] { 4 }).allclose(logits, atol: 1e-4));
        Assert.True(ModularFourier.ExcludedLogits(logits, new[] { 4 }).abs().max().item<float>() < 1e-4);
        // Another frequency captures none of it, and a constant offset is kept by "restricted" (the mean) but not projected.
        Assert.True(ModularFourier.ProjectOntoSumFrequencies(logits, new[] { 2 }).abs().max().item<float>() < 1e-4);
        var shifted = logits + 3;
        Assert.True(ModularFourier.RestrictedLogits(shifted, new[] { 4 }).allclose(shifted, atol: 1e-4));
    }

    // A neuron cos(ω₅a)·cos(ω₅b) + sin(ω₅a) is all frequency 5; cos(ω₂a) + cos(ω₃b) splits its variance evenly (each term has
    // squared norm p·p/2 over the grid), so each of k = 2 and k = 3 explains one half.
    [Fact]
    public void Neuron_frequency_fractions_match_the_variance_split_by_hand()
    {
        var grid = Grid((a, b, n) => n == 0 ? Math.Cos(W(5, a)) * Math.Cos(W(5, b)) + Math.Sin(W(5, a)) + 1 : Math.Cos(W(2, a)) + Math.Cos(W(3, b)), 2);
        var f5 = ModularFourier.FractionExplainedByFrequency(grid, 5).data<float>().ToArray();
        var f2 = ModularFourier.FractionExplainedByFrequency(grid, 2).data<float>().ToArray();
        Assert.Equal(1.0, f5[0], 4);
        Assert.Equal(0.5, f2[1], 4);
        Assert.Equal(0.0, f2[0], 4);
    }

    [Fact]
    public void An_even_modulus_or_the_equals_row_is_refused_with_the_fix()
    {
        var e = Assert.Throws<ArgumentException>(() => ModularFourier.FrequencyNorms(zeros(P + 1, 4)));
        Assert.Contains("W_E[..p]", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ModularFourier.SumDirections(P, 7));
    }
}
