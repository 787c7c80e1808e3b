using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

/// <summary>
/// Attribution patching and path patching on a left-padded batch of prompts of different lengths: each row's result must
/// equal that row run alone, unpadded (the reference needs no mask at all), to 1e-5 in float64.
/// </summary>
public class PatchingPaddedTests
{
    static PatchingPaddedTests() => TorchRuntime.EnsureLoaded();

    const long Pad = 0;
    static readonly int[] Lengths = [6, 4, 5];

    /// <summary>Three clean/corrupted rows of lengths 6, 4, 5 (corrupted: two tokens changed), each alone and left-padded to 6.</summary>
    static (Tensor[] CleanRows, Tensor[] CorruptRows, Tensor Clean, Tensor Corrupt, Tensor Mask) Batch()
    {
        var rng = new Random(11);
        int width = Lengths.Max();
        var cleanRows = new Tensor[Lengths.Length];
        var corruptRows = new Tensor[Lengths.Length];
        var clean = new long[Lengths.Length * width];
        var corrupt = new long[Lengths.Length * width];
        var mask = new long[Lengths.Length * width];
        for (int r = 0; r < Lengths.Length; r++)
        {
            int len = Lengths[r], pad = width - len;
            var c = Enumerable.Range(0, len).Select(_ => (long)rng.Next(1, 24)).ToArray();
            var x = (long[])c.Clone();
            x[1] = 1 + (c[1] + 4) % 23;
            x[len - 2] = 1 + (c[len - 2] + 9) % 23;
            cleanRows[r] = tensor(c, new long[] { 1, len });
            corruptRows[r] = tensor(x, new long[] { 1, len });
            for (int p = 0; p < width; p++)
            {
                bool real = p >= pad;
                clean[r * width + p] = real ? c[p - pad] : Pad;
                corrupt[r * width + p] = real ? x[p - pad] : Pad;
                mask[r * width + p] = real ? 1 : 0;
            }
        }
        long[] shape = [Lengths.Length, width];
        return (cleanRows, corruptRows, tensor(clean, shape), tensor(corrupt, shape), tensor(mask, shape));
    }

    /// <summary>Logit of token 3 minus token 5 at the last position of row <paramref name="row"/> only.</summary>
    static Func<Tensor, Tensor> RowLogitDiff(int row) => logits => logits[row, -1, 3] - logits[row, -1, 5];

    static double[] Values(Tensor t) => t.to_type(ScalarType.Float64).contiguous().data<double>().ToArray();

    static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        var e = Values(expected);
        var a = Values(actual);
        for (int i = 0; i < e.Length; i++)
            Assert.True(Math.Abs(e[i] - a[i]) <= 1e-5, $"{what}: element {i} is {a[i]} padded but {e[i]} alone");
    }

    [Fact]
    public void Attribution_patching_of_a_left_padded_batch_gives_each_row_what_the_row_gives_alone()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny() with { DType = ScalarType.Float64 });
        using var scope = NewDisposeScope();
        var (cleanRows, corruptRows, clean, corrupt, mask) = Batch();
        var (_, cleanCache) = model.RunWithCache(clean, attentionMask: mask);
        using var _c = cleanCache;
        string[] acts = ["resid_pre", "attn_out", "mlp_out", "z", "pattern"];
        int width = Lengths.Max();
        bool unmaskedDiffers = false;
        for (int r = 0; r < Lengths.Length; r++)
        {
            int len = Lengths[r], pad = width - len;
            var (paddedMetric, padded) = PatchingAttribution.CorruptedGradients(model, corrupt, RowLogitDiff(r), mask, acts);
            using var _p = padded;
            var (_, aloneClean) = model.RunWithCache(cleanRows[r]);
            using var _ac = aloneClean;
            var (aloneMetric, alone) = PatchingAttribution.CorruptedGradients(model, corruptRows[r], RowLogitDiff(0), acts);
            using var _a = alone;
            Assert.True(Math.Abs(paddedMetric - aloneMetric) <= 1e-5, $"row {r}: corrupted metric {paddedMetric} padded, {aloneMetric} alone");

            foreach (var act in new[] { "resid_pre", "attn_out", "mlp_out" })
            {
                var p = PatchingAttribution.Attribute(cleanCache, padded, act, ["layer", "pos"]);       // [layer, width]
                var a = PatchingAttribution.Attribute(aloneClean, alone, act, ["layer", "pos"]);        // [layer, len]
                Assert.True(Values(a).Any(v => Math.Abs(v) > 1e-3), $"row {r} {act}: the attribution must not be trivially zero");
                AssertClose(a, p.narrow(1, pad, len), $"row {r} {act} [layer, pos]");
                if (pad > 0) AssertClose(zeros(2, pad, dtype: ScalarType.Float64), p.narrow(1, 0, pad), $"row {r} {act} at the padding");
            }
            var zp = PatchingAttribution.Attribute(cleanCache, padded, "z", ["layer", "pos", "head"]);
            var za = PatchingAttribution.Attribute(aloneClean, alone, "z", ["layer", "pos", "head"]);
            AssertClose(za, zp.narrow(1, pad, len), $"row {r} z [layer, pos, head]");
            AssertClose(PatchingAttribution.Attribute(aloneClean, alone, "pattern", ["layer", "head_index"]),
                PatchingAttribution.Attribute(cleanCache, padded, "pattern", ["layer", "head_index"]), $"row {r} pattern [layer, head]");

            // Without the mask the padded row reads the pad tokens and gets other numbers (what the mask support fixes).
            if (pad > 0)
            {
                var (_, noMask) = PatchingAttribution.CorruptedGradients(model, corrupt, RowLogitDiff(r), acts);
                using var _n = noMask;
                var (_, cleanNoMask) = model.RunWithCache(clean);
                using var _cn = cleanNoMask;
                var wrong = PatchingAttribution.Attribute(cleanNoMask, noMask, "resid_pre", ["layer", "pos"]).narrow(1, pad, len);
                var a = PatchingAttribution.Attribute(aloneClean, alone, "resid_pre", ["layer", "pos"]);
                unmaskedDiffers |= Values(wrong).Zip(Values(a)).Any(t => Math.Abs(t.First - t.Second) > 1e-3);
            }
        }
        Assert.True(unmaskedDiffers, "the padded test rows must depend on the mask (else the test could not fail)");
    }

    [Fact]
    public void Attribution_patching_rejects_a_mask_of_another_shape_naming_the_fix()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny());
        using var scope = NewDisposeScope();
        var (_, _, _, corrupt, _) = Batch();
        var e = Assert.Throws<ArgumentException>(() => PatchingAttribution.CorruptedGradients(model, corrupt, RowLogitDiff(0), ones(3, 5, dtype: ScalarType.Int64), "z"));
        Assert.Contains("[3, 5]", e.Message);
        Assert.Contains("corrupted batch's own [batch, pos] mask", e.Message);
    }

    [Fact]
    public void Path_patching_of_a_left_padded_batch_gives_each_row_what_the_row_gives_alone()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny() with { NLayers = 3, DType = ScalarType.Float64 });
        using var scope = NewDisposeScope();
        var (cleanRows, corruptRows, clean, corrupt, mask) = Batch();
        var (_, origCache) = model.RunWithCache(clean, attentionMask: mask);
        var (_, newCache) = model.RunWithCache(corrupt, attentionMask: mask);
        using var _o = origCache;
        using var _n = newCache;
        (int, int)[] receivers = [(2, 0), (2, 1)];
        for (int r = 0; r < Lengths.Length; r++)
        {
            var (_, aloneOrig) = model.RunWithCache(cleanRows[r]);
            var (_, aloneNew) = model.RunWithCache(corruptRows[r]);
            using var _ao = aloneOrig;
            using var _an = aloneNew;
            foreach (var input in new[] { "q", "k", "v" })
            {
                var padded = PatchingPaths.HeadToHeadsSweep(model, clean, origCache, newCache, receivers, input, RowLogitDiff(r), mask);
                var alone = PatchingPaths.HeadToHeadsSweep(model, cleanRows[r], aloneOrig, aloneNew, receivers, input, RowLogitDiff(0));
                AssertClose(alone, padded, $"row {r} senders → {input}");
                var v = Values(alone);
                Assert.True(v.Any(x => Math.Abs(x - v[^1]) > 1e-4), $"row {r} {input}: some sender must change the metric (the last cell is the unpatched run)");
            }
            double single = PatchingPaths.HeadToHeads(model, clean, origCache, newCache, [(0, 1), (1, 0)], [(2, 1)], "qkv", RowLogitDiff(r), mask);
            double singleAlone = PatchingPaths.HeadToHeads(model, cleanRows[r], aloneOrig, aloneNew, [(0, 1), (1, 0)], [(2, 1)], "qkv", RowLogitDiff(0));
            Assert.True(Math.Abs(single - singleAlone) <= 1e-5, $"row {r}: two senders → q, k, v: {single} padded, {singleAlone} alone");
        }
    }
}
