using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

/// <summary>
/// Activation patching (<see cref="Patching"/>) on tiny random models: the TransformerLens identities (patching the clean run
/// into itself changes nothing; patching a whole residual stream recovers the clean run), the batched sweep against the
/// one-forward-per-cell loop, shapes of the "every" sweeps, normalization and labels by hand, and the error messages.
/// </summary>
public class PatchingTests
{
    static PatchingTests() => TorchRuntime.EnsureLoaded();

    internal static HookedTransformerConfig Tiny(bool attnOnly = false, int? kvHeads = null) => new()
    {
        NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = attnOnly ? 0 : 32, NCtx = 16, DVocab = 24,
        AttnOnly = attnOnly, NKeyValueHeads = kvHeads, Seed = 0, InitRange = 0.5,
    };

    internal static (Tensor Clean, Tensor Corrupted) Prompts(int batch = 2, int pos = 6)
    {
        var rng = new Random(7);
        var clean = Enumerable.Range(0, batch * pos).Select(_ => (long)rng.Next(0, 24)).ToArray();
        var corrupted = (long[])clean.Clone();
        for (int b = 0; b < batch; b++) { corrupted[b * pos + 1] = (clean[b * pos + 1] + 5) % 24; corrupted[b * pos + 3] = (clean[b * pos + 3] + 11) % 24; }
        return (tensor(clean, new long[] { batch, pos }), tensor(corrupted, new long[] { batch, pos }));
    }

    /// <summary>Logit of token 3 minus token 5 at the last position, averaged over the batch (an IOI-style logit difference).</summary>
    internal static Tensor LogitDiff(Tensor logits) => (logits[.., -1, 3] - logits[.., -1, 5]).mean();

    static double[] Values(Tensor t) => t.to_type(ScalarType.Float64).data<double>().ToArray();

    [Fact]
    public void Patching_the_clean_run_into_itself_is_a_no_op()
    {
        using var model = new HookedTransformer(Tiny());
        using var scope = NewDisposeScope();
        var (clean, corrupted) = Prompts();
        var (cleanLogits, cache) = model.RunWithCache(clean);
        using var _ = cache;
        double mClean = Patching.MetricValue(LogitDiff, cleanLogits), mCorrupt = Patching.MetricValue(LogitDiff, model.forward(corrupted));
        var metric = Patching.NormalizedMetric(LogitDiff, mClean, mCorrupt);
        foreach (var r in new[]
        {
            Patching.GetActPatchResidPre(model, clean, cache, metric), Patching.GetActPatchMlpOut(model, clean, cache, metric),
            Patching.GetActPatchAttnHeadOutByPos(model, clean, cache, metric), Patching.GetActPatchAttnHeadPatternAllPos(model, clean, cache, metric),
            Patching.GetActPatchAttnHeadQAllPos(model, clean, cache, metric, new PatchingOptions { Naive = true }),
        })
            foreach (var v in Values(r)) Assert.Equal(1.0, v, 4);
    }

    [Fact]
    public void Patching_every_position_of_a_layers_resid_pre_recovers_the_clean_metric_exactly()
    {
        using var model = new HookedTransformer(Tiny());
        using var scope = NewDisposeScope();
        var (clean, corrupted) = Prompts();
        var (cleanLogits, cache) = model.RunWithCache(clean);
        using var _ = cache;
        double mClean = Patching.MetricValue(LogitDiff, cleanLogits), mCorrupt = Patching.MetricValue(LogitDiff, model.forward(corrupted));
        Assert.True(Math.Abs(mClean - mCorrupt) > 1e-3, $"the prompts must differ in the metric ({mClean} vs {mCorrupt})");
        PatchSetter everything = (c, _, cl) => c.copy_(cl);
        foreach (bool naive in new[] { false, true })
        {
            var r = Patching.GenericActivationPatch(model, corrupted, cache, LogitDiff, everything, "resid_pre", ["layer"], new PatchingOptions { Naive = naive });
            Assert.Equal(new long[] { 2 }, r.shape);
            foreach (var v in Values(r)) Assert.Equal(mClean, v, 4);
        }
        // One position only is not the whole stream: at layer 0, position 1 (a corrupted token) moves the metric but does not recover it.
        var byPos = Patching.GetActPatchResidPre(model, corrupted, cache, LogitDiff);
        Assert.Equal(new long[] { 2, 6 }, byPos.shape);
        // Positions 0, 2 hold the same token in both prompts: patching them at layer 0 changes nothing.
        Assert.Equal(mCorrupt, byPos[0, 0].item<double>(), 4);
        Assert.Equal(mCorrupt, byPos[0, 2].item<double>(), 4);
        // After the last block only the position the metric reads matters: patching resid_post there recovers the clean metric.
        var post = Patching.GetActPatchResidPost(model, corrupted, cache, LogitDiff);
        Assert.Equal(mClean, post[1, 5].item<double>(), 4);
        Assert.Equal(mCorrupt, post[1, 4].item<double>(), 4);
    }

    [Theory]
    [InlineData(false, 3, true, 4, false)]
    [InlineData(false, 1000, false, 1, false)]
    [InlineData(false, 5, true, 6, true)]
    [InlineData(true, 4, true, 4, false)]
    [InlineData(true, 4, true, 4, true)]
    public void The_batched_sweep_equals_the_one_forward_per_cell_loop(bool padded, int maxRows, bool startAtLayer, int positionGroups, bool lastPositionOnly)
    {
        using var model = new HookedTransformer(Tiny());
        using var scope = NewDisposeScope();
        var (clean, corrupted) = Prompts();
        Tensor? mask = null;
        if (padded)
        {
            // Row 1 is left-padded by two positions (token 0 stands in for padding).
            mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1 }, new long[] { 2, 6 });
            clean = clean.masked_fill(mask.eq(0), 0L);
            corrupted = corrupted.masked_fill(mask.eq(0), 0L);
        }
        var (_, cache) = model.RunWithCache(clean, attentionMask: mask);
        using var _c = cache;
        var batched = new PatchingOptions
        {
            AttentionMask = mask, MaxRowsPerPass = maxRows, UseStartAtLayer = startAtLayer, PositionGroups = positionGroups,
            MetricPositions = lastPositionOnly ? [-1] : null,
        };
        var naive = new PatchingOptions { AttentionMask = mask, Naive = true };
        var sweeps = new Func<PatchingOptions, Tensor>[]
        {
            o => Patching.GetActPatchBlockEvery(model, corrupted, cache, LogitDiff, o),
            o => Patching.GetActPatchResidMid(model, corrupted, cache, LogitDiff, o),
            o => Patching.GetActPatchAttnHeadByPosEvery(model, corrupted, cache, LogitDiff, o),
            o => Patching.GetActPatchAttnHeadAllPosEvery(model, corrupted, cache, LogitDiff, o),
        };
        foreach (var sweep in sweeps)
        {
            var a = sweep(batched);
            var b = sweep(naive);
            Assert.Equal(b.shape, a.shape);
            double diff = (a - b).abs().max().item<double>();
            Assert.True(diff < 1e-4, $"batched vs naive: max |diff| = {diff}");
            Assert.True((b - b.mean()).abs().max().item<double>() > 1e-3, "the sweep must not be constant");
        }
    }

    [Theory]
    [InlineData("standard", true)]
    [InlineData("standard", false)]
    [InlineData("parallel", true)]
    [InlineData("attn_only", true)]
    [InlineData("rotary", true)]
    public void The_staggered_resid_pre_sweep_equals_one_forward_per_cell_to_1e_5(string kind, bool lastPositionOnly)
    {
        // Three layers, 9 positions: copies of different layers share a pass, and the last block computes only the metric's query.
        var cfg = Tiny(attnOnly: kind == "attn_only") with
        {
            NLayers = 3, ParallelAttnMlp = kind == "parallel",
            PositionalEmbedding = kind == "rotary" ? PositionalEmbeddingType.Rotary : PositionalEmbeddingType.Standard,
        };
        using var model = new HookedTransformer(cfg);
        using var scope = NewDisposeScope();
        var (clean, corrupted) = Prompts(pos: 9);
        var (_, cache) = model.RunWithCache(clean);
        using var _c = cache;
        var naive = Patching.GetActPatchResidPre(model, corrupted, cache, LogitDiff, new PatchingOptions { Naive = true });
        var options = new[]
        {
            new PatchingOptions { MetricPositions = lastPositionOnly ? [-1] : null },                                  // defaults: one pass per position
            new PatchingOptions { MetricPositions = lastPositionOnly ? [-1] : null, PositionGroups = 2, MaxRowsPerPass = 8 }, // passes split mid-layer
        };
        foreach (var o in options)
        {
            var fast = Patching.GetActPatchResidPre(model, corrupted, cache, LogitDiff, o);
            Assert.Equal(new long[] { 3, 9 }, fast.shape);
            double diff = (fast - naive).abs().max().item<double>();
            Assert.True(diff < 1e-5, $"{kind}: staggered vs one forward per cell: max |diff| = {diff}");
        }
        Assert.True((naive - naive.mean()).abs().max().item<double>() > 1e-3, "the sweep must not be constant");
        // The same for a hooked activation (attn_out is patched inside the block, by a hook that touches only its copies' rows).
        var attnNaive = Patching.GetActPatchAttnOut(model, corrupted, cache, LogitDiff, new PatchingOptions { Naive = true });
        var attnFast = Patching.GetActPatchAttnOut(model, corrupted, cache, LogitDiff, new PatchingOptions { MetricPositions = lastPositionOnly ? [-1] : null });
        Assert.True((attnFast - attnNaive).abs().max().item<double>() < 1e-5, "attn_out: staggered vs one forward per cell");
    }

    [Fact]
    public void The_every_sweeps_have_TransformerLens_shapes_and_grouped_key_value_heads_pad_with_NaN()
    {
        using var model = new HookedTransformer(Tiny(kvHeads: 1));
        using var scope = NewDisposeScope();
        var (clean, corrupted) = Prompts(batch: 1, pos: 5);
        var (_, cache) = model.RunWithCache(clean);
        using var _c = cache;
        Assert.Equal(new long[] { 3, 2, 5 }, Patching.GetActPatchBlockEvery(model, corrupted, cache, LogitDiff).shape);
        Assert.Equal(new long[] { 2, 1 }, Patching.GetActPatchAttnHeadKAllPos(model, corrupted, cache, LogitDiff).shape);
        Assert.Equal(new long[] { 2, 2, 5 }, Patching.GetActPatchAttnHeadPatternByPos(model, corrupted, cache, LogitDiff).shape);
        Assert.Equal(new long[] { 2, 2, 5, 5 }, Patching.GetActPatchAttnHeadPatternDestSrcPos(model, corrupted, cache, LogitDiff).shape);
        var every = Patching.GetActPatchAttnHeadAllPosEvery(model, corrupted, cache, LogitDiff);
        Assert.Equal(new long[] { 5, 2, 2 }, every.shape);
        Assert.True(double.IsNaN(every[2, 0, 1].item<double>()) && double.IsNaN(every[3, 1, 1].item<double>()));
        Assert.False(double.IsNaN(every[2, 0, 0].item<double>()) || double.IsNaN(every[1, 1, 1].item<double>()));
        Assert.Equal(new long[] { 5, 2, 5, 2 }, Patching.GetActPatchAttnHeadByPosEvery(model, corrupted, cache, LogitDiff).shape);
    }

    [Fact]
    public void Normalize_and_labels_follow_the_hand_worked_values()
    {
        using var r = tensor(new double[] { 2, 4, 6, 1 });
        Assert.Equal(new[] { 0.0, 0.5, 1.0, -0.25 }, Values(Patching.Normalize(r, cleanMetric: 6, corruptedMetric: 2)));
        var f = Patching.NormalizedMetric(l => l.sum(), 6, 2);
        Assert.Equal(0.5, f(tensor(new double[] { 1, 3 })).item<double>(), 12);
        Assert.Equal(new[] { "L0H0", "L0H1", "L0H2", "L1H0", "L1H1", "L1H2" }, Patching.HeadLabels(2, 3));
        Assert.Equal(new[] { "<bos>_0", "When_1", " John_2" }, Patching.PositionLabels(["<bos>", "When", " John"]));
        Assert.Equal(new[] { "0", "1" }, Patching.PositionLabels(null, 2));
        var e = Assert.Throws<ArgumentException>(() => Patching.Normalize(r, 3, 3));
        Assert.Contains("choose prompts", e.Message);
    }

    [Fact]
    public void Bad_metrics_names_and_shapes_fail_with_the_fix_in_the_message()
    {
        using var model = new HookedTransformer(Tiny());
        using var scope = NewDisposeScope();
        var (clean, corrupted) = Prompts();
        var (_, cache) = model.RunWithCache(clean);
        using var _c = cache;
        var e1 = Assert.Throws<ArgumentException>(() => Patching.GetActPatchResidPre(model, corrupted, cache, l => l[.., -1, 3]));
        Assert.Contains("shape [2]", e1.Message);
        Assert.Contains(".mean()", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() =>
            Patching.GenericActivationPatch(model, corrupted, cache, LogitDiff, Patching.LayerPosPatchSetter, "resid_pree", ["layer", "pos"]));
        Assert.Contains("resid_pre", e2.Message);
        var (shortClean, _) = Prompts(pos: 4);
        var (_, shortCache) = model.RunWithCache(shortClean);
        using var _s = shortCache;
        var e3 = Assert.Throws<ArgumentException>(() => Patching.GetActPatchAttnOut(model, corrupted, shortCache, LogitDiff));
        Assert.Contains("blocks.0.hook_attn_out", e3.Message);
        Assert.Contains("AttentionMask", e3.Message);
        var (_, residOnly) = model.RunWithCache(clean, n => n.EndsWith("resid_pre"));
        using var _r = residOnly;
        var e4 = Assert.Throws<ArgumentException>(() => Patching.GetActPatchAttnHeadOutAllPos(model, corrupted, residOnly, LogitDiff));
        Assert.Contains("blocks.0.attn.hook_z", e4.Message);
        Assert.Contains("namesFilter", e4.Message);
        var e6 = Assert.Throws<ArgumentException>(() => Patching.GetActPatchResidPre(model, corrupted, cache, LogitDiff, new PatchingOptions { MetricPositions = [0] }));
        Assert.Contains("MetricPositions", e6.Message);
        Assert.Contains("list every position", e6.Message);
        var e5 = Assert.Throws<ArgumentException>(() =>
            Patching.GenericActivationPatch(model, corrupted, cache, LogitDiff, Patching.LayerPosPatchSetter, "resid_pre", ["layer", "position"]));
        Assert.Contains("\"pos\"", e5.Message);
    }
}
