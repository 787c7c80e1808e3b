using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

/// <summary>
/// Attribution patching against a finite-difference directional derivative computed with plain hooks (no gradients), the
/// comparison helper against hand-worked numbers, and path patching against the direct-path residual built by hand.
/// </summary>
public class PatchingAttributionAndPathTests
{
    static PatchingAttributionAndPathTests() => TorchRuntime.EnsureLoaded();

    /// <summary>
    /// d/dε metric(corrupted run with act[cell] += ε·(clean − corrupted)[cell]) at ε = 0, by central differences in float64.
    /// <paramref name="narrow"/> selects the cell's slice of an activation.
    /// </summary>
    static double DirectionalDerivative(HookedTransformer model, Tensor corrupted, ActivationCache clean, ActivationCache corr, string name, Func<Tensor, Tensor> narrow)
    {
        const double eps = 1e-4;
        double At(double e)
        {
            var delta = clean[name] - corr[name];
            var logits = model.RunWithHooks(corrupted, (name, (x, _) =>
            {
                var y = x.clone();
                narrow(y).add_(narrow(delta) * e);
                return y;
            }));
            return Patching.MetricValue(PatchingTests.LogitDiff, logits);
        }
        return (At(eps) - At(-eps)) / (2 * eps);
    }

    [Fact]
    public void Attribution_patching_equals_the_finite_difference_directional_derivative()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny() with { DType = ScalarType.Float64 });
        using var scope = NewDisposeScope();
        var (clean, corrupted) = PatchingTests.Prompts();
        var (_, cleanCache) = model.RunWithCache(clean);
        var (_, corrCache) = model.RunWithCache(corrupted);
        using var _a = cleanCache;
        using var _b = corrCache;
        var block = PatchingAttribution.BlockEvery(model, corrupted, cleanCache, PatchingTests.LogitDiff);
        Assert.Equal(new long[] { 3, 2, 6 }, block.shape);
        var heads = PatchingAttribution.AttnHeadAllPosEvery(model, corrupted, cleanCache, PatchingTests.LogitDiff);
        Assert.Equal(new long[] { 5, 2, 2 }, heads.shape);
        var (_, grads) = PatchingAttribution.CorruptedGradients(model, corrupted, PatchingTests.LogitDiff, "z");
        using var _g = grads;
        var zByPos = PatchingAttribution.Attribute(cleanCache, grads, "z", ["layer", "pos", "head"]);

        var checks = new (double Got, string Name, Func<Tensor, Tensor> Narrow)[]
        {
            (block[0, 1, 3].item<double>(), "blocks.1.hook_resid_pre", t => t.narrow(1, 3, 1)),
            (block[0, 0, 1].item<double>(), "blocks.0.hook_resid_pre", t => t.narrow(1, 1, 1)),
            (block[1, 0, 5].item<double>(), "blocks.0.hook_attn_out", t => t.narrow(1, 5, 1)),
            (block[2, 1, 5].item<double>(), "blocks.1.hook_mlp_out", t => t.narrow(1, 5, 1)),
            (heads[0, 0, 1].item<double>(), "blocks.0.attn.hook_z", t => t.narrow(2, 1, 1)),
            (heads[2, 1, 0].item<double>(), "blocks.1.attn.hook_k", t => t.narrow(2, 0, 1)),
            (heads[4, 0, 1].item<double>(), "blocks.0.attn.hook_pattern", t => t.narrow(1, 1, 1)),
            (zByPos[1, 5, 0].item<double>(), "blocks.1.attn.hook_z", t => t.narrow(1, 5, 1).narrow(2, 0, 1)),
        };
        foreach (var (got, name, narrow) in checks)
        {
            double expected = DirectionalDerivative(model, corrupted, cleanCache, corrCache, name, narrow);
            Assert.True(Math.Abs(got - expected) <= 1e-6 + 1e-5 * Math.Abs(expected), $"{name}: attribution {got}, finite difference {expected}");
        }
        Assert.True(block.abs().max().item<double>() > 1e-3, "the attributions must not all vanish");
    }

    [Fact]
    public void Compare_reports_the_hand_worked_correlation_and_errors()
    {
        using var exact = tensor(new double[] { 11, 12, 13, double.NaN }, new long[] { 2, 2 });
        using var attribution = tensor(new double[] { 2, 4, 7, 1 }, new long[] { 2, 2 });
        var c = PatchingAttribution.Compare(exact, attribution, corruptedMetric: 10, labels: ["a", "b", "c", "d"]);
        // Exact changes 1, 2, 3 against 2, 4, 7 (the NaN cell is skipped): r = 5 / sqrt(2 · 114/9).
        Assert.Equal(5 / Math.Sqrt(2 * 114.0 / 9), c.Correlation, 12);
        Assert.Equal(4.0, c.MaxAbsError, 12);
        Assert.Equal(new[] { "a", "b", "c" }, c.Rows.Select(r => r.Label));
        Assert.StartsWith("cell", c.ToTable());
        Assert.Contains("c ", c.ToTable().Split('\n')[1]);                    // largest |exact| first
        Assert.Throws<ArgumentException>(() => PatchingAttribution.Compare(exact, attribution.reshape(4), 0));
    }

    [Fact]
    public void Attribution_and_exact_patching_agree_on_resid_pre_of_a_tiny_model()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny());
        using var scope = NewDisposeScope();
        var (clean, corrupted) = PatchingTests.Prompts();
        var (_, cleanCache) = model.RunWithCache(clean);
        using var _a = cleanCache;
        double mCorrupt = Patching.MetricValue(PatchingTests.LogitDiff, model.forward(corrupted));
        var exact = Patching.GetActPatchResidPre(model, corrupted, cleanCache, PatchingTests.LogitDiff);
        var (_, grads) = PatchingAttribution.CorruptedGradients(model, corrupted, PatchingTests.LogitDiff, "resid_pre");
        using var _g = grads;
        var attr = PatchingAttribution.Attribute(cleanCache, grads, "resid_pre", ["layer", "pos"]);
        var c = PatchingAttribution.Compare(exact, attr, mCorrupt);
        Assert.Equal(12, c.Rows.Count);
        // Unchanged tokens (positions 0, 2, 4, 5 at layer 0) have no clean − corrupted difference: both are exactly 0 there.
        foreach (var i in new[] { 0, 2, 4, 5 }) { Assert.Equal(0.0, c.Rows[i].Attribution, 9); Assert.Equal(0.0, c.Rows[i].Exact, 5); }
        Assert.True(c.Correlation > 0.5, $"correlation {c.Correlation}\n{c.ToTable()}");
    }

    [Fact]
    public void Path_patching_a_sender_to_a_receivers_query_equals_the_direct_path_built_by_hand()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny() with { NLayers = 3 });
        using var scope = NewDisposeScope();
        var (orig, @new) = PatchingTests.Prompts();
        var (origLogits, origCache) = model.RunWithCache(orig);
        var (_, newCache) = model.RunWithCache(@new);
        using var _a = origCache;
        using var _b = newCache;
        var sender = (Layer: 0, Head: 1);
        var receiver = (Layer: 2, Head: 0);
        double got = PatchingPaths.HeadToHeads(model, orig, origCache, newCache, [sender], [receiver], "q", PatchingTests.LogitDiff);
        Assert.False(model.Cfg.UseSplitQkvInput);                             // switched back off

        // By hand: the receiver's query input is the orig residual plus the change of the sender's output, W_O applied to Δz.
        var wO = model.blocks[0].attn.W_O[sender.Head];                        // [d_head, d_model]
        var dz = newCache["z", 0].select(2, sender.Head) - origCache["z", 0].select(2, sender.Head); // [batch, pos, d_head]
        var qInput = origCache["resid_pre", 2] + matmul(dz, wO);              // [batch, pos, d_model]
        model.SetUseSplitQkvInput(true);
        double expected;
        try
        {
            var logits = model.RunWithHooks(orig, ("blocks.2.hook_q_input", (x, _) =>
            {
                var y = x.clone();
                y.select(2, receiver.Head).copy_(qInput);
                return y;
            }));
            expected = Patching.MetricValue(PatchingTests.LogitDiff, logits);
        }
        finally { model.SetUseSplitQkvInput(false); }
        double origMetric = Patching.MetricValue(PatchingTests.LogitDiff, origLogits);
        Assert.True(Math.Abs(expected - origMetric) > 1e-4, "the path must matter in this test");
        Assert.Equal(expected, got, 5);

        var sweep = PatchingPaths.HeadToHeadsSweep(model, orig, origCache, newCache, [receiver], "q", PatchingTests.LogitDiff);
        Assert.Equal(new long[] { 3, 2 }, sweep.shape);
        Assert.Equal(got, sweep[0, 1].item<double>(), 9);
        Assert.Equal(origMetric, sweep[2, 0].item<double>(), 5);            // the receiver's own layer has no path to it
        var e = Assert.Throws<ArgumentException>(() => PatchingPaths.HeadToHeads(model, orig, origCache, newCache, [sender], [receiver], "x", PatchingTests.LogitDiff));
        Assert.Contains("\"q\", \"k\", \"v\"", e.Message);
    }
}
