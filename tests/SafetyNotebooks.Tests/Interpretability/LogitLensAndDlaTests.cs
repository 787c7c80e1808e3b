using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

/// <summary>Logit lens and direct logit attribution against the model's own logits and hand formulas.</summary>
public class LogitLensAndDlaTests
{
    static LogitLensAndDlaTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Logit_lens_at_the_last_layer_equals_the_model_logits_with_either_norm()
    {
        using var _ = no_grad();
        var model = AnalysisTestModels.Tiny();
        var (logits, cache) = model.RunWithCache(AnalysisTestModels.Tokens);
        using (cache)
        {
            foreach (var norm in new[] { LensNorm.RecomputeLn, LensNorm.CachedScale })
            {
                var (lens, labels) = LogitLens.Logits(cache, norm);
                Assert.Equal(new[] { "0_pre", "1_pre", "final_post" }, labels);
                AnalysisTestModels.Close(logits, lens[-1], 1e-4, $"final layer ({norm})");
            }
            // CachedScale on layer 1 by hand: (x − mean x) / final scale ∘ w + b, then W_U and b_U.
            var x = cache["resid_pre", 1];
            var lnf = model.ln_final!;
            var byHand = matmul((x - x.mean(new long[] { -1 }, keepdim: true)) / cache["ln_final.hook_scale"] * lnf.w! + lnf.b!, model.W_U) + model.b_U;
            AnalysisTestModels.Close(byHand, LogitLens.Logits(cache, LensNorm.CachedScale).Logits[1], 1e-4, "cached scale, layer 1");
            // One position only.
            var (last, _) = LogitLens.Logits(cache, posSlice: TensorIndex.Single(-1));
            AnalysisTestModels.Close(logits.select(1, -1), last[-1], 1e-4, "last position");
        }
    }

    [Fact]
    public void Ranks_count_strictly_larger_logits_and_the_target_table_reads_the_final_layer_like_the_model()
    {
        var logits = tensor(new float[] { 1, 3, 2, 3, 0 });
        Assert.Equal(2L, LogitLens.Ranks(logits, tensor(2L)).item<long>());
        Assert.Equal(0L, LogitLens.Ranks(logits, tensor(3L)).item<long>());
        Assert.Equal(4L, LogitLens.Ranks(logits, tensor(4L)).item<long>());

        using var _ = no_grad();
        var model = AnalysisTestModels.Tiny();
        var (modelLogits, cache) = model.RunWithCache(AnalysisTestModels.Tokens);
        using (cache)
        {
            var table = LogitLens.TargetTable(cache, target: 5, position: 3, batchIndex: 1);
            Assert.Equal(3, table.Rows.Count);
            var row = modelLogits[1, 3].to_type(ScalarType.Float64);
            var p = row.softmax(0)[5].item<double>();
            long rank = Enumerable.Range(0, 13).Count(t => row[t].item<double>() > row[5].item<double>());
            Assert.Equal(p, (double)table["prob"][2], 4);
            Assert.Equal(rank, (long)table["rank"][2]);
            Assert.Equal(row.argmax().item<long>().ToString(), (string)table["top_token"][2]);
            var bad = Assert.Throws<ArgumentOutOfRangeException>(() => LogitLens.TargetTable(cache, target: 13));
            Assert.Contains("outside the vocabulary", bad.Message);
            var (grid, _) = LogitLens.NextTokenProbs(cache, AnalysisTestModels.Tokens, batchIndex: 0);
            Assert.Equal(modelLogits[0, 2].softmax(0)[AnalysisTestModels.Tokens[0, 3].item<long>()].item<float>(), grid[2, 2], 4);
        }
    }

    [Fact]
    public void Direct_logit_attributions_per_layer_head_and_neuron_sum_to_the_logit_difference()
    {
        using var _ = no_grad();
        var model = AnalysisTestModels.Tiny();
        var tokens = AnalysisTestModels.Tokens;
        var (logits, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            var correct = tensor(new long[] { 3, 8 });
            var incorrect = tensor(new long[] { 5, 2 });
            var diff = DirectLogitAttribution.LogitDiff(logits, correct, incorrect);          // [2]
            var constant = DirectLogitAttribution.ConstantTerm(model, correct, incorrect);
            // Hand reference for the logit difference.
            Assert.Equal((logits[0, -1, 3] - logits[0, -1, 5]).item<float>(), diff[0].item<float>(), 5);

            var (layers, layerLabels) = DirectLogitAttribution.PerLayer(cache, correct, incorrect);
            Assert.Equal(new[] { "embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out" }, layerLabels);
            AnalysisTestModels.Close(diff, layers.sum(new long[] { 0 }) + constant, 1e-4, "Σ per-layer DLA + constant");

            var (heads, headLabels) = DirectLogitAttribution.PerHead(cache, correct, incorrect, inclRemainder: true);
            Assert.Equal("L1H1", headLabels[3]);
            AnalysisTestModels.Close(diff, heads.sum(new long[] { 0 }) + constant, 1e-4, "Σ per-head DLA + remainder + constant");

            var (neurons, neuronLabels) = DirectLogitAttribution.PerNeuron(cache, correct, incorrect, inclRemainder: true);
            Assert.Equal(2 * 32 + 1, neuronLabels.Length);
            AnalysisTestModels.Close(diff, neurons.sum(new long[] { 0 }) + constant, 1e-4, "Σ per-neuron DLA + remainder + constant");

            // One head by hand: z · W_O at the last position, centred, divided by the cached final scale, times w, dotted with the direction.
            var z = cache["z", 1][0, -1, 0];                                                   // [d_head]
            var r = matmul(z, model.blocks[1].attn.W_O[0]);
            var scaled = (r - r.mean()) / cache["ln_final.hook_scale"][0, -1] * model.ln_final!.w!;
            var dir = model.W_U[TensorIndex.Colon, 3] - model.W_U[TensorIndex.Colon, 5];
            Assert.Equal((scaled * dir).sum().item<float>(), heads[2, 0].item<float>(), 4);
            var grid = DirectLogitAttribution.PerHeadGrid(cache, correct, incorrect);
            Assert.Equal(heads[2].mean().item<float>(), grid[1, 0], 4);

            var wrong = Assert.Throws<ArgumentException>(() => DirectLogitAttribution.PerLayer(cache, tensor(new long[] { 1, 2, 3 }), incorrect));
            Assert.Contains("one token id per batch entry", wrong.Message);
            var table = DirectLogitAttribution.Table(heads, headLabels, top: 2);
            Assert.Equal(2, table.Rows.Count);
        }
    }
}
