using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

/// <summary>Feature-dashboard data (top contexts, density, histogram, quantile bands, logit effects) against hand-worked values.</summary>
public class FeatureDashboardDataTests
{
    static FeatureDashboardDataTests() => TorchRuntime.EnsureLoaded();

    // Feature activations [2 rows, 5 positions] and tokens 10..14, 20..24.
    //   row 0: 0  1  0  3  0.5
    //   row 1: 2  0  3  0  0
    static Tensor Acts() => tensor(new float[] { 0, 1, 0, 3, 0.5f, 2, 0, 3, 0, 0 }, new long[] { 2, 5 });
    static Tensor Tokens() => tensor(new long[] { 10, 11, 12, 13, 14, 20, 21, 22, 23, 24 }, new long[] { 2, 5 });

    /// <summary>
    /// Top 3 with one token either side: the two 3s (row 0 first on a tie), then the 2 at row 1 position 0 (its window is clipped
    /// to the row start): windows [12 13 14]/[0 3 0.5], [21 22 23]/[0 3 0], [20 21]/[2 0].
    /// </summary>
    [Fact]
    public void Top_activating_contexts_of_a_hand_built_matrix_are_the_largest_entries_with_their_windows()
    {
        var top = FeatureDashboards.TopActivatingContexts(Acts(), Tokens(), k: 3, before: 1, after: 1);
        Assert.Equal(3, top.Count);
        Assert.Equal((0, 3, 3.0, 1), (top[0].Sequence, top[0].Position, top[0].Activation, top[0].FocusIndex));
        Assert.Equal(new long[] { 12, 13, 14 }, top[0].TokenIds);
        Assert.Equal(new[] { 0, 3, 0.5 }, top[0].Activations);
        Assert.Equal((1, 2, 3.0), (top[1].Sequence, top[1].Position, top[1].Activation));
        Assert.Equal(new long[] { 21, 22, 23 }, top[1].TokenIds);
        Assert.Equal((1, 0, 2.0, 0), (top[2].Sequence, top[2].Position, top[2].Activation, top[2].FocusIndex));
        Assert.Equal(new long[] { 20, 21 }, top[2].TokenIds);
        Assert.Equal(new[] { 2.0, 0 }, top[2].Activations);
        // Only 5 entries are > 0: asking for 8 gives 5, ending with the smallest positive one (0.5 at row 0, position 4).
        var all = FeatureDashboards.TopActivatingContexts(Acts(), Tokens(), k: 8);
        Assert.Equal(5, all.Count);
        Assert.Equal((0, 4, 0.5), (all[^1].Sequence, all[^1].Position, all[^1].Activation));
    }

    /// <summary>Masking out row 1 position 2 (e.g. a BOS token): it is never an example and shows 0 inside another example's window.</summary>
    [Fact]
    public void Unscored_positions_are_skipped_and_show_zero_in_windows()
    {
        var scored = ones(2, 5, dtype: ScalarType.Bool);
        scored[1, 2] = false;
        var top = FeatureDashboards.TopActivatingContexts(Acts(), Tokens(), k: 2, before: 0, after: 2, scored: scored);
        Assert.Equal((0, 3), (top[0].Sequence, top[0].Position));
        Assert.Equal((1, 0), (top[1].Sequence, top[1].Position));
        Assert.Equal(new[] { 2.0, 0, 0 }, top[1].Activations);                     // position 2's 3 is hidden
        var d = FeatureDashboards.FromActivations(7, Acts(), Tokens(), scored: scored);
        Assert.Equal(9, d.TokensScored);
        Assert.Equal(4, d.ActiveTokens);
    }

    /// <summary>
    /// Active values 1, 3, 0.5, 2, 3 of 10 tokens: density 0.5, max 3, mean 9.5/5 = 1.9. Three bins over [0, 3] (edges 0, 1, 2, 3):
    /// 0.5 → bin 0, 1 → bin 1, 2, 3, 3 → bin 2. Three bands (2, 3], (1, 2], (0, 1] hold 2, 1 and 2 tokens; one example per band is
    /// the band's highest (3 at row 0 pos 3; 2 at row 1 pos 0; 1 at row 0 pos 1).
    /// </summary>
    [Fact]
    public void Density_histogram_and_quantile_bands_match_hand_counts()
    {
        var d = FeatureDashboards.FromActivations(7, Acts(), Tokens(), options: new FeatureDashboardOptions { HistogramBins = 3, QuantileGroups = 3, ExamplesPerQuantile = 1 });
        Assert.Equal(7, d.Feature);
        Assert.Equal(10, d.TokensScored);
        Assert.Equal(5, d.ActiveTokens);
        Assert.Equal(0.5, d.Density, 12);
        Assert.Equal(Math.Log10(0.5 + 1e-10), d.Log10Density, 9);
        Assert.Equal(3.0, d.MaxActivation, 6);
        Assert.Equal(1.9, d.MeanActiveActivation, 6);
        Assert.Equal(new[] { 0.0, 1, 2, 3 }, d.HistogramEdges);
        Assert.Equal(new long[] { 1, 1, 3 }, d.HistogramCounts);
        Assert.Equal(new long[] { 2, 1, 2 }, d.Quantiles.Select(q => q.Count));
        Assert.Equal(new[] { 2.0, 1, 0 }, d.Quantiles.Select(q => q.Lower));
        Assert.Equal(new[] { (0, 3), (1, 0), (0, 1) }, d.Quantiles.Select(q => (q.Examples[0].Sequence, q.Examples[0].Position)));
        Assert.Empty(d.TopLogits);
    }

    /// <summary>d = [1, 0, −1, 2] times a hand W_U [4, 5] gives [1, 0, −1, 2, 4]: top 2 tokens 4 (4) and 3 (2); bottom 2 tokens 2 (−1) and 1 (0).</summary>
    [Fact]
    public void Logit_effects_are_the_direction_times_W_U_sorted()
    {
        var wU = tensor(new float[]
        {
            1, 0, 0, 0, 2,
            0, 1, 0, 0, 0,
            0, 0, 1, 0, -1,
            0, 0, 0, 1, 0.5f,
        }, new long[] { 4, 5 });
        var effects = FeatureDashboards.LogitEffects(tensor(new float[] { 1, 0, -1, 2 }), wU);
        Assert.Equal(new float[] { 1, 0, -1, 2, 4 }, effects.data<float>().ToArray());
        var (top, bottom) = FeatureDashboards.TopLogitEffects(effects, 2);
        Assert.Equal(new[] { new LogitEffect(4, 4), new LogitEffect(3, 2) }, top);
        Assert.Equal(new[] { new LogitEffect(2, -1), new LogitEffect(1, 0) }, bottom);
        var e = Assert.Throws<ArgumentException>(() => FeatureDashboards.LogitEffects(tensor(new float[] { 1, 2, 3 }), wU));
        Assert.Contains("W_U", e.Message);
    }

    static HookedTransformer SmallModel() =>
        new(new HookedTransformerConfig { NLayers = 1, DModel = 4, NHeads = 1, DHead = 4, DMlp = 6, NCtx = 8, DVocab = 5, ActFn = "relu", Seed = 3 });

    /// <summary>A residual SAE's feature maps to W_dec[f] · W_U; an MLP-neuron SAE's to W_dec[f] · W_out · W_U (both worked by loops here).</summary>
    [Fact]
    public void A_features_logit_effects_follow_its_hook_into_the_residual_stream()
    {
        using var model = SmallModel();
        var wU = new float[] { 1, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0, 0, 1, 0, -1, 0, 0, 0, 1, 0.5f };
        using (no_grad()) model.W_U.copy_(tensor(wU, new long[] { 4, 5 }));
        using var resid = new SparseAutoencoder(new SaeConfig { DIn = 4, DSae = 3, HookName = "blocks.0.hook_resid_post", Seed = 1 });
        using (no_grad()) resid.W_dec[1].copy_(tensor(new float[] { 1, 0, -1, 2 }));
        Assert.Equal(new float[] { 1, 0, -1, 2, 4 }, FeatureDashboards.LogitEffects(model, resid, 1).data<float>().ToArray());

        using var neurons = new SparseAutoencoder(new SaeConfig { DIn = 6, DSae = 3, HookName = "blocks.0.mlp.hook_post", Seed = 1 });
        var row = neurons.W_dec[2].data<float>().ToArray();
        var wOut = model.blocks[0].mlp!.W_out.data<float>().ToArray();          // [6, 4]
        var expected = new double[5];
        for (int v = 0; v < 5; v++)
            for (int m = 0; m < 4; m++)
            {
                double dir = 0;
                for (int n = 0; n < 6; n++) dir += row[n] * wOut[n * 4 + m];
                expected[v] += dir * wU[m * 5 + v];
            }
        var got = FeatureDashboards.LogitEffects(model, neurons, 2).data<float>().ToArray();
        for (int v = 0; v < 5; v++) Assert.Equal(expected[v], got[v], 5);

        using var pre = new SparseAutoencoder(new SaeConfig { DIn = 6, DSae = 3, HookName = "blocks.0.mlp.hook_pre", Seed = 1 });
        var e = Assert.Throws<ArgumentException>(() => FeatureDashboards.LogitEffects(model, pre, 0));
        Assert.Contains("blocks.0.mlp.hook_pre", e.Message);
        Assert.Contains("FeatureDashboards.LogitEffects(direction, model.W_U)", e.Message);
    }

    /// <summary>
    /// End to end on a model: the best example's activation is what the spliced SAE's hook_sae_acts_post shows at that token, the
    /// excluded BOS id is never scored, and the neighbours are ranked by decoder cosine.
    /// </summary>
    [Fact]
    public void Compute_reads_the_spliced_saes_activations_and_skips_excluded_tokens()
    {
        using var model = SmallModel();
        using var sae = new SparseAutoencoder(new SaeConfig { DIn = 4, DSae = 6, HookName = "blocks.0.hook_resid_post", Seed = 2 });
        var rng = new Random(5);
        var ids = new long[3 * 8];
        for (int i = 0; i < ids.Length; i++) ids[i] = i % 8 == 0 ? 0 : rng.Next(1, 5);     // token 0 = BOS at position 0
        var tokens = tensor(ids, new long[] { 3, 8 });
        var data = FeatureDashboards.Compute(model, sae, tokens, new[] { 1, 4 }, new FeatureDashboardOptions { ExcludeTokenIds = new long[] { 0 }, BatchSize = 2 });
        Assert.Equal(new[] { 1, 4 }, data.Select(d => d.Feature));
        var (_, cache) = SaeSplicing.RunWithSaeCache(model, tokens, sae);
        var acts = cache["blocks.0.hook_resid_post.hook_sae_acts_post"];
        foreach (var (d, f) in data.Zip(new[] { 1, 4 }))
        {
            Assert.Equal(3 * 7, d.TokensScored);
            Assert.Equal("blocks.0.hook_resid_post", d.HookName);
            Assert.Equal(5, d.TopLogits.Count);                                       // all 5 tokens (fewer than the 10 asked)
            Assert.All(d.TopExamples, ex => Assert.NotEqual(0, ex.Position));
            var own = acts.select(-1, f).narrow(1, 1, 7);
            Assert.Equal(own.gt(0).sum().item<long>(), d.ActiveTokens);
            if (d.TopExamples.Count > 0)
            {
                var ex = d.TopExamples[0];
                Assert.Equal(acts[ex.Sequence, ex.Position, f].item<float>(), ex.Activation, 4);
                Assert.Equal(own.max().item<float>(), ex.Activation, 4);
            }
            var rows = sae.W_dec.detach();
            var cos = nn.functional.cosine_similarity(rows, rows[f].unsqueeze(0).expand(6, -1), dim: 1).data<float>().ToArray();
            var best = Enumerable.Range(0, 6).Where(j => j != f).OrderByDescending(j => cos[j]).First();
            Assert.Equal(best, d.Neighbors[0].Feature);
            Assert.Equal(sae.W_dec[f].norm().item<float>(), d.DecoderNorm, 4);
        }
        foreach (var t in cache.Values) t.Dispose();
        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => FeatureDashboards.Compute(model, sae, tokens, new[] { 6 }));
        Assert.Contains("0..5", bad.Message);
    }
}
