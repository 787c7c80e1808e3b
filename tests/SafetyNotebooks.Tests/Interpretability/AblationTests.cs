using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

/// <summary>
/// Ablation hooks (<see cref="Ablation"/>) against hand computations from the cache: a zero-ablated head removes exactly its
/// z·W_O term from attn_out, a zero-ablated neuron its post·W_out term from mlp_out, mean ablation writes the reference mean,
/// resampling is seeded, and mean-ablating everything with the run itself as reference changes nothing.
/// </summary>
public class AblationTests
{
    static AblationTests() => TorchRuntime.EnsureLoaded();

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    static ActivationCache CacheWith(HookedTransformer model, Tensor tokens, params (string, Func<Tensor, HookPoint, Tensor?>)[] hooks)
    {
        using (model.Hooks(hooks)) return model.RunWithCache(tokens).Cache;
    }

    [Fact]
    public void Zero_ablating_a_head_removes_exactly_its_output_term_from_attn_out()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny());
        using var scope = NewDisposeScope();
        var (tokens, _) = PatchingTests.Prompts();
        using var clean = model.RunWithCache(tokens).Cache;
        using var ablated = CacheWith(model, tokens, Ablation.ZeroHead(0, 1));
        var z = clean["z", 0].select(2, 1);                                    // [batch, pos, d_head]
        var expected = clean["attn_out", 0] - matmul(z, model.blocks[0].attn.W_O[1]);
        Assert.True(MaxAbs(ablated["attn_out", 0], expected) < 1e-5);
        Assert.Equal(0.0, ablated["z", 0].select(2, 1).abs().max().item<float>());
        Assert.True(MaxAbs(ablated["z", 0].select(2, 0), clean["z", 0].select(2, 0)) == 0);
        Assert.True(MaxAbs(ablated["attn_out", 0], clean["attn_out", 0]) > 1e-3);
    }

    [Fact]
    public void Zero_ablating_a_neuron_removes_exactly_its_term_from_mlp_out()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny());
        using var scope = NewDisposeScope();
        var (tokens, _) = PatchingTests.Prompts();
        using var clean = model.RunWithCache(tokens).Cache;
        using var ablated = CacheWith(model, tokens, Ablation.ZeroNeuron(1, 7));
        var post = clean["post", 1].narrow(2, 7, 1);                           // [batch, pos, 1]
        var expected = clean["mlp_out", 1] - post * model.blocks[1].mlp!.W_out[7];
        Assert.True(MaxAbs(ablated["mlp_out", 1], expected) < 1e-5);
    }

    [Fact]
    public void Mean_ablation_writes_the_reference_batch_mean_and_keeps_other_heads()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny());
        using var scope = NewDisposeScope();
        var (tokens, reference) = PatchingTests.Prompts();
        using var refCache = model.RunWithCache(reference).Cache;
        using var clean = model.RunWithCache(tokens).Cache;
        var refZ = refCache["z", 0].select(2, 0);                              // [2, pos, d_head]
        using (var ablated = CacheWith(model, tokens, Ablation.MeanHead(0, 0, refCache)))
        {
            var byHand = (refZ[0] + refZ[1]) / 2;                             // the two reference prompts, per position
            Assert.True(MaxAbs(ablated["z", 0].select(2, 0)[0], byHand) < 1e-6);
            Assert.True(MaxAbs(ablated["z", 0].select(2, 0)[1], byHand) < 1e-6);
            Assert.True(MaxAbs(ablated["z", 0].select(2, 1), clean["z", 0].select(2, 1)) == 0);
        }
        using (var ablated = CacheWith(model, tokens, Ablation.MeanHead(0, 0, refCache, overPositions: true)))
        {
            var byHand = refZ.sum(new long[] { 0, 1 }) / (2 * 6);
            Assert.True(MaxAbs(ablated["z", 0][1, 4, 0], byHand) < 1e-6);
        }
        using (var ablated = CacheWith(model, tokens, Ablation.MeanNeuron(0, 3, refCache)))
            Assert.True(MaxAbs(ablated["post", 0][1, .., 3], refCache["post", 0][.., .., 3].mean(new long[] { 0 })) < 1e-6);
    }

    [Fact]
    public void Resample_ablation_is_seeded_and_copies_the_drawn_reference_rows()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny());
        using var scope = NewDisposeScope();
        var (tokens, _) = PatchingTests.Prompts();
        var rng = new Random(3);
        var reference = tensor(Enumerable.Range(0, 8 * 6).Select(_ => (long)rng.Next(24)).ToArray(), new long[] { 8, 6 });
        using var refCache = model.RunWithCache(reference).Cache;
        var draw = new Random(42);
        var rows = new[] { draw.Next(8), draw.Next(8) };                        // what seed 42 draws, independently
        Assert.Equal(rows, Ablation.ResampleRows(2, 8, 42));
        using var a = CacheWith(model, tokens, Ablation.ResampleHead(1, 1, refCache, seed: 42));
        using var b = CacheWith(model, tokens, Ablation.ResampleHead(1, 1, refCache, seed: 42));
        for (int i = 0; i < 2; i++)
            Assert.True(MaxAbs(a["z", 1][i, .., 1], refCache["z", 1][rows[i], .., 1]) == 0);
        Assert.True(MaxAbs(a["resid_post", 1], b["resid_post", 1]) == 0);
        Assert.NotEqual(Ablation.ResampleRows(16, 8, 42), Ablation.ResampleRows(16, 8, 43));
        using var n = CacheWith(model, tokens, Ablation.ResampleNeuron(0, 2, refCache, seed: 42));
        Assert.True(MaxAbs(n["post", 0][1, .., 2], refCache["post", 0][rows[1], .., 2]) == 0);
    }

    [Fact]
    public void Mean_ablating_every_head_but_a_circuit_against_the_run_itself_changes_nothing()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny());
        using var scope = NewDisposeScope();
        var (tokens, reference) = PatchingTests.Prompts();
        var single = tokens.narrow(0, 0, 1);
        using var own = model.RunWithCache(single).Cache;
        var expected = model.forward(single);
        var hooks = Ablation.MeanAblateAllHeadsExcept(model, [(1, 0)], own);
        Assert.Equal(2, hooks.Length);                                        // one hook per layer
        Assert.True(MaxAbs(model.RunWithHooks(single, hooks), expected) < 1e-5);   // the mean of one prompt is itself

        using var refCache = model.RunWithCache(reference).Cache;
        using var ablated = CacheWith(model, tokens, Ablation.MeanAblateAllHeadsExcept(model, [(0, 1)], refCache));
        using var clean = model.RunWithCache(tokens).Cache;
        Assert.True(MaxAbs(ablated["z", 0].select(2, 1), clean["z", 0].select(2, 1)) == 0);   // kept, and layer 0 sees no ablation upstream
        Assert.True(MaxAbs(ablated["z", 0].select(2, 0)[1], refCache["z", 0].select(2, 0).mean(new long[] { 0 })) < 1e-6);
        Assert.Empty(Ablation.MeanAblateAllHeadsExcept(model, [(0, 0), (0, 1), (1, 0), (1, 1)], refCache));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ablation.MeanAblateAllHeadsExcept(model, [(0, 5)], refCache));
        Assert.Contains("heads 0…1", e.Message);
        var e2 = Assert.Throws<InvalidOperationException>(() => model.RunWithHooks(tokens, Ablation.ZeroHead(0, 9)));
        Assert.Contains("below n_heads", e2.Message);
    }
}

/// <summary>Mean ablation over a padded reference batch: padding never enters the mean (hand-computed from the cache).</summary>
public class MaskedMeanAblationTests
{
    static MaskedMeanAblationTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Masked_mean_ablation_averages_only_the_real_tokens_of_the_reference_batch()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny());
        using var scope = NewDisposeScope();
        var (tokens, reference) = PatchingTests.Prompts();                    // reference: 2 prompts × 6 positions
        // Prompt 1 is left-padded by 2: its positions 0 and 1 are padding.
        var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1 }, new long[] { 2, 6 });
        using var refCache = model.RunWithCache(reference, attentionMask: mask).Cache;
        var refZ = refCache["z", 0].select(2, 0);                              // [2, pos, d_head]
        var hook = Ablation.MeanHead(0, 0, refCache, referenceMask: mask);
        using (model.Hooks([hook]))
        using (var ablated = model.RunWithCache(tokens).Cache)
        {
            var z = ablated["z", 0].select(2, 0);
            // Positions 0-1: only prompt 0 is real there, so the mean is prompt 0's value; positions 2-5: the average of both.
            Assert.True((z[0, 0] - refZ[0, 0]).abs().max().item<float>() < 1e-6);
            Assert.True((z[1, 1] - refZ[0, 1]).abs().max().item<float>() < 1e-6);
            Assert.True((z[0, 4] - (refZ[0, 4] + refZ[1, 4]) / 2).abs().max().item<float>() < 1e-6);
        }
        var overPositions = Ablation.MeanHead(0, 0, refCache, overPositions: true, referenceMask: mask);
        using (model.Hooks([overPositions]))
        using (var ablated = model.RunWithCache(tokens).Cache)
        {
            // sum(new long[] { 0 }), not sum(0): a literal 0 converts to ScalarType.Byte and would pick sum(dtype).
            var byHand = (refZ.select(0, 0).sum(new long[] { 0 }) + refZ.select(0, 1).narrow(0, 2, 4).sum(new long[] { 0 })) / 10;   // 6 + 4 real tokens
            Assert.True((ablated["z", 0][1, 3, 0] - byHand).abs().max().item<float>() < 1e-6);
        }
    }

    [Fact]
    public void A_mask_of_the_wrong_shape_or_an_all_padding_position_is_refused_with_the_fix()
    {
        using var model = new HookedTransformer(PatchingTests.Tiny());
        using var scope = NewDisposeScope();
        var (_, reference) = PatchingTests.Prompts();
        using var refCache = model.RunWithCache(reference).Cache;
        var wrong = Assert.Throws<ArgumentException>(() => Ablation.MeanHead(0, 0, refCache, referenceMask: ones(2, 5, dtype: ScalarType.Int64)));
        Assert.Contains("[batch, pos] = [2, 6]", wrong.Message);
        var allPad = tensor(new long[] { 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1 }, new long[] { 2, 6 });
        var e = Assert.Throws<ArgumentException>(() => Ablation.MeanHeads(0, [0, 1], refCache, referenceMask: allPad));
        Assert.Contains("overPositions: true", e.Message);
        Assert.Contains("mask column sums: 0, 2", e.Message);
        Ablation.MeanHead(0, 0, refCache, overPositions: true, referenceMask: allPad);   // over positions it is defined
    }
}
