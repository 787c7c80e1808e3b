using SafetyNotebooks.Models;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

/// <summary>Small seeded models for the analysis tests, with non-trivial norm weights and biases (1 and 0 would hide bugs).</summary>
static class AnalysisTestModels
{
    public static HookedTransformer Tiny(bool attnOnly = false, int vocab = 13)
    {
        var m = new HookedTransformer(new HookedTransformerConfig
        {
            NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 10, DVocab = vocab, AttnOnly = attnOnly, Seed = 7,
        });
        var gen = new Generator(99);
        using var _ = no_grad();
        var norms = m.blocks.SelectMany(b => new[] { b.ln1, b.ln2 }).Append(m.ln_final).Where(n => n is not null);
        foreach (var norm in norms)
        {
            norm!.w!.copy_(rand(new long[] { 16 }, generator: gen) + 0.5);
            norm.b!.copy_(randn(new long[] { 16 }, generator: gen) * 0.3);
        }
        foreach (var p in m.parameters().Where(p => p.dim() == 1 && p.shape[0] != 16)) p.copy_(randn(p.shape, generator: gen) * 0.1);   // biases
        return m;
    }

    public static Tensor Tokens => tensor(new long[] { 1, 4, 7, 2, 9, 4, 7, 3, 5, 0, 12, 6, 6, 8, 1, 11 }, new long[] { 2, 8 });

    public static void Close(Tensor expected, Tensor actual, double tol, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        var d = (expected.to_type(ScalarType.Float64) - actual.to_type(ScalarType.Float64)).abs().max().item<double>();
        Assert.True(d <= tol, $"{what}: max |Δ| = {d} > {tol}");
    }
}
