using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>Padded batches (attention masks) and the key/value cache, on the tiny GPT-2 fixture: every padded row must match the row run alone.</summary>
public class PaddingAndKvCacheTests
{
    static PaddingAndKvCacheTests() => TorchRuntime.EnsureLoaded();

    static readonly Lazy<HookedTransformer> Model = new(() => HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gpt2-tiny")));
    const long Pad = 50256;

    static long[][] Rows(int seed, params int[] lengths)
    {
        var rng = new Random(seed);
        return lengths.Select(n => Enumerable.Range(0, n).Select(_ => (long)rng.Next(0, 50257)).ToArray()).ToArray();
    }

    /// <summary>Pads rows by hand into tokens and a 1/0 mask, on the left or the right.</summary>
    internal static (Tensor Tokens, Tensor Mask) Batch(long[][] rows, bool left, long pad = Pad)
    {
        int width = rows.Max(r => r.Length);
        var tok = new long[rows.Length * width];
        var mask = new long[rows.Length * width];
        Array.Fill(tok, pad);
        for (int b = 0; b < rows.Length; b++)
        {
            int start = b * width + (left ? width - rows[b].Length : 0);
            Array.Copy(rows[b], 0, tok, start, rows[b].Length);
            Array.Fill(mask, 1L, start, rows[b].Length);
        }
        return (tensor(tok, new long[] { rows.Length, width }), tensor(mask, new long[] { rows.Length, width }));
    }

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]   // a hook on hook_pattern forces the explicit (non-fused) attention path
    [InlineData(false, true)]
    public void Every_padded_row_matches_the_row_run_alone(bool left, bool explicitPath)
    {
        using var _ = no_grad();
        var model = Model.Value;
        var rows = Rows(1, 5, 9, 2, 9);
        var (tokens, mask) = Batch(rows, left);
        Func<Tensor, HookPoint, Tensor?> noop = (x, h) => null;
        if (explicitPath) model.AddHook(n => n.EndsWith("hook_pattern"), noop);
        try
        {
            var logits = model.forward(tokens, mask);
            Assert.False(logits.isnan().any().item<bool>(), "padded positions must not produce NaN (fully masked query rows)");
            int width = rows.Max(r => r.Length);
            for (int b = 0; b < rows.Length; b++)
            {
                var alone = model.forward(tensor(rows[b]).unsqueeze(0))[0];                 // [len, vocab]
                int start = left ? width - rows[b].Length : 0;
                var inBatch = logits[b].narrow(0, start, rows[b].Length);
                Assert.True(MaxAbs(alone, inBatch) < 1e-5, $"row {b} ({(left ? "left" : "right")} padded): max |Δ| = {MaxAbs(alone, inBatch)}");
            }
        }
        finally { model.ResetHooks(); }
    }

    [Fact]
    public void Position_ids_count_real_tokens_only()
    {
        using var _ = no_grad();
        var model = Model.Value;
        var (tokens, mask) = Batch(Rows(2, 2, 5), left: true);           // row 0: 3 pads then 2 real tokens
        Tensor? seen = null;
        model.RunWithHooks(tokens, mask, ("hook_pos_embed", (x, h) => { seen = HookPoint.Keep(x.clone()); return null; }));
        // Hand-worked: row 0 positions 0,0,0,0,1 (pads clamped to 0); row 1 positions 0..4.
        var wpos = model.W_pos;
        Assert.True(MaxAbs(seen![0], wpos.index_select(0, tensor(new long[] { 0, 0, 0, 0, 1 }))) == 0);
        Assert.True(MaxAbs(seen![1], wpos.narrow(0, 0, 5)) == 0);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Loss_with_mask_equals_per_row_losses_combined_by_hand(bool left)
    {
        using var _ = no_grad();
        var model = Model.Value;
        var rows = Rows(3, 4, 7, 2);
        var (tokens, mask) = Batch(rows, left);
        // By hand: every row alone gives len-1 next-token losses; the batch mean is their total over their count.
        double total = 0; int count = 0;
        var perRow = new List<float[]>();
        foreach (var r in rows)
        {
            var l = model.Loss(tensor(r).unsqueeze(0), perToken: true)[0].data<float>().ToArray();
            perRow.Add(l);
            total += l.Sum(x => (double)x); count += l.Length;
        }
        Assert.Equal(total / count, model.Loss(tokens, attentionMask: mask).item<float>(), 5);
        // Per token: the row's losses at its real predictions, 0 where the position or its target is padding.
        var perToken = model.Loss(tokens, perToken: true, attentionMask: mask);
        int width = rows.Max(r => r.Length);
        for (int b = 0; b < rows.Length; b++)
        {
            var got = perToken[b].data<float>().ToArray();
            int start = left ? width - rows[b].Length : 0;
            for (int i = 0; i < width - 1; i++)
            {
                int k = i - start;                                              // index in the row's own losses
                float expected = k >= 0 && k < perRow[b].Length ? perRow[b][k] : 0f;
                Assert.True(Math.Abs(expected - got[i]) < 1e-4, $"row {b} position {i}: expected {expected}, got {got[i]}");
            }
        }
    }

    [Fact]
    public void Run_with_cache_takes_the_mask()
    {
        using var _ = no_grad();
        var model = Model.Value;
        var rows = Rows(4, 3, 6);
        var (tokens, mask) = Batch(rows, left: true);
        var (logits, cache) = model.RunWithCache(tokens, attentionMask: mask);
        using (cache)
        {
            var (aloneLogits, aloneCache) = model.RunWithCache(tensor(rows[0]).unsqueeze(0));
            using (aloneCache)
            {
                Assert.True(MaxAbs(cache["resid_post", 1][0].narrow(0, 3, 3), aloneCache["resid_post", 1][0]) < 1e-5);
                // The pattern of a padded row puts no weight on padding keys.
                Assert.Equal(0f, cache["pattern", 0][0].narrow(2, 0, 3).abs().sum().item<float>());
                Assert.True(MaxAbs(logits[0].narrow(0, 3, 3), aloneLogits[0]) < 1e-5);
            }
        }
    }

    [Fact]
    public void A_bad_mask_is_refused_with_the_fix()
    {
        var model = Model.Value;
        using var tokens = tensor(new long[] { 1, 2, 3 }).unsqueeze(0);
        var e = Assert.Throws<ArgumentException>(() => model.forward(tokens, ones(1, 4, dtype: ScalarType.Int64)));
        Assert.Contains("attentionMask has shape [1, 4]", e.Message);
        e = Assert.Throws<ArgumentException>(() => model.forward(tokens, tensor(new long[] { 1, 2, 1 }).unsqueeze(0)));
        Assert.Contains("only 1 (real token) and 0 (padding)", e.Message);
    }

    [Fact]
    public void Cached_forward_one_token_at_a_time_equals_the_full_forward()
    {
        using var _ = no_grad();
        var model = Model.Value;
        var rows = Rows(5, 4, 7);
        var (tokens, mask) = Batch(rows, left: true);
        var full = model.forward(tokens, mask);                              // [2, 7, vocab]
        using var cache = new HookedTransformerKeyValueCache(model);
        var prefix = model.forward(tokens.narrow(1, 0, 4), mask.narrow(1, 0, 4), cache);
        Assert.Equal(4, cache.Length);
        var steps = new List<Tensor> { prefix };
        for (int t = 4; t < 7; t++) steps.Add(model.forward(tokens.narrow(1, t, 1), mask.narrow(1, t, 1), cache));
        var stitched = cat(steps.ToArray(), 1);
        // Real positions only (row 0 has 3 left pads).
        Assert.True(MaxAbs(full[0].narrow(0, 3, 4), stitched[0].narrow(0, 3, 4)) < 1e-5);
        Assert.True(MaxAbs(full[1], stitched[1]) < 1e-5, $"max |Δ| = {MaxAbs(full[1], stitched[1])}");
    }

    [Fact]
    public void Cached_greedy_generation_is_token_identical_to_uncached_and_to_each_row_alone()
    {
        var model = Model.Value;
        var rows = Rows(6, 3, 6, 1);
        var (tokens, mask) = Batch(rows, left: true);
        var o = GenerationOptions.Greedy(12);
        using var cached = Generation.Generate(model, tokens, o, mask);
        using var uncached = Generation.Generate(model, tokens, o with { UseCache = false }, mask);
        Assert.Equal(uncached.Tokens.data<long>().ToArray(), cached.Tokens.data<long>().ToArray());
        Assert.True(MaxAbs(uncached.LogProbs, cached.LogProbs) < 1e-5);
        for (int b = 0; b < rows.Length; b++)
        {
            using var alone = Generation.Generate(model, tensor(rows[b]).unsqueeze(0), o with { UseCache = false });
            Assert.Equal(alone.Tokens[0].narrow(0, rows[b].Length, 12).data<long>().ToArray(),
                cached.Tokens[b].narrow(0, 6, 12).data<long>().ToArray());
            Assert.True(MaxAbs(alone.LogProbs[0], cached.LogProbs[b]) < 1e-5);
        }
    }

    [Fact]
    public void Generation_refuses_right_padded_prompts_with_the_fix()
    {
        var (tokens, mask) = Batch(Rows(8, 3, 5), left: false);
        var e = Assert.Throws<ArgumentException>(() => Generation.Generate(Model.Value, tokens, GenerationOptions.Greedy(2), mask));
        Assert.Contains("pad prompts on the left", e.Message);
    }

    [Fact]
    public void Hooks_fire_on_the_new_position_in_cached_steps()
    {
        var model = Model.Value;
        var (tokens, mask) = Batch(Rows(7, 3, 5), left: true);
        var shapes = new List<long[]>();
        model.AddHook("blocks.1.hook_resid_post", (x, h) => { shapes.Add(x.shape); return null; });
        try { using var r = Generation.Generate(model, tokens, GenerationOptions.Greedy(4), mask); }
        finally { model.ResetHooks(); }
        // The prompt pass sees the whole prompt; the 3 cached steps see one position each.
        Assert.Equal(new[] { new long[] { 2, 5, 32 }, new long[] { 2, 1, 32 }, new long[] { 2, 1, 32 }, new long[] { 2, 1, 32 } }, shapes);
    }
}

/// <summary>TransformerLens' stop_at_layer / start_at_layer.</summary>
public class PartialForwardTests
{
    static PartialForwardTests() => TorchRuntime.EnsureLoaded();

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Fact]
    public void Stop_at_layer_returns_resid_pre_and_start_at_layer_resumes_from_it()
    {
        using var _ = no_grad();
        var model = HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gpt2-tiny"));
        using var tokens = tensor(new long[] { 464, 3290, 318, 257, 1332 }).unsqueeze(0);
        var (logits, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            var stopped = model.forward(tokens, stopAtLayer: 1);
            Assert.Equal(new long[] { 1, 5, 32 }, stopped.shape);
            Assert.True(MaxAbs(stopped, cache["resid_pre", 1]) < 1e-6);
            Assert.True(MaxAbs(model.forward(tokens, stopAtLayer: -1), cache["resid_pre", 1]) < 1e-6);   // −1 = before the last block
            Assert.True(MaxAbs(model.forward(tokens, stopAtLayer: 0), cache["hook_embed"] + cache["hook_pos_embed"]) < 1e-6);
            var resumed = model.forward(cache["resid_pre", 1], startAtLayer: 1);
            Assert.True(MaxAbs(resumed, logits) < 1e-5);
            // start 0 takes the embedded stream; start and stop together run a slice of blocks.
            Assert.True(MaxAbs(model.forward(cache["resid_pre", 0], startAtLayer: 0), logits) < 1e-5);
            Assert.True(MaxAbs(model.forward(cache["resid_pre", 0], startAtLayer: 0, stopAtLayer: 1), cache["resid_pre", 1]) < 1e-6);
            var (partial, partialCache) = model.RunWithCache(tokens, stopAtLayer: 1);
            using (partialCache)
            {
                Assert.True(MaxAbs(partial, cache["resid_pre", 1]) < 1e-6);
                Assert.DoesNotContain("blocks.1.hook_resid_pre", partialCache.Keys);
            }
        }
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => model.forward(tokens, stopAtLayer: 3));
        Assert.Contains("stopAtLayer = 3 is outside the model's 2 layers", e.Message);
        Assert.Throws<ArgumentException>(() => model.forward(tokens, startAtLayer: 1));   // tokens are not a residual stream
    }
}

/// <summary>The trainer's language-modelling objective on a padded batch.</summary>
public class PaddedTrainingObjectiveTests
{
    static PaddedTrainingObjectiveTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Objective_with_attention_mask_averages_over_real_predictions_only()
    {
        using var _ = no_grad();
        var model = HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gpt2-tiny"));
        // Row 0: 2 left pads then 3 real tokens (2 predictions); row 1: 5 real tokens (4 predictions).
        using var tokens = tensor(new long[] { 0, 0, 464, 3290, 318, 40, 588, 262, 3290, 11 }, new long[] { 2, 5 });
        using var mask = tensor(new long[] { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 }, new long[] { 2, 5 });
        var a = model.Loss(tokens.narrow(0, 0, 1).narrow(1, 2, 3), perToken: true).sum().item<float>();
        var b = model.Loss(tokens.narrow(0, 1, 1), perToken: true).sum().item<float>();
        var objective = new SafetyNotebooks.Training.LanguageModelingObjective(model);
        var output = objective.Compute(new SafetyNotebooks.Training.TrainingBatch(tokens, AttentionMask: mask));
        Assert.Equal((a + b) / 6, output.Loss.item<float>(), 5);
        Assert.Equal(6f, output.Weight!.item<float>());
    }
}
