using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>A one-layer, one-head, d_model 2 model whose weights are set by hand, checked against arithmetic done here.</summary>
public class HandComputedAttentionTests
{
    static HandComputedAttentionTests() => TorchRuntime.EnsureLoaded();

    static HookedTransformer Build()
    {
        var model = new HookedTransformer(new HookedTransformerConfig
        {
            NLayers = 1, DModel = 2, NHeads = 1, DHead = 2, NCtx = 4, DVocab = 2, AttnOnly = true,
            Normalization = NormalizationType.None, PositionalEmbedding = PositionalEmbeddingType.None, Seed = 0,
        });
        using var _ = no_grad();
        var I = eye(2);
        model.W_E.copy_(I);                                     // token 0 → e0, token 1 → e1
        var attn = model.blocks[0].attn;
        attn.W_Q.copy_(I.unsqueeze(0));                         // views into the fused W_QKV
        attn.W_K.copy_(I.unsqueeze(0));
        attn.W_V.copy_(I.unsqueeze(0));
        attn.b_QKV.zero_();
        attn.W_O.copy_(I.unsqueeze(0));
        attn.b_O.zero_();
        model.unembed.W_U.copy_(I);
        model.unembed.b_U.zero_();
        return model;
    }

    [Fact]
    public void Pattern_and_output_match_hand_computation()
    {
        var model = Build();
        using var _ = no_grad();
        var tokens = tensor(new long[] { 0, 1, 0 }).view(1, 3);
        // Residual: e0, e1, e0. q = k = v = residual, scores = q·k / sqrt(2).
        double s = 1 / Math.Sqrt(2), E = Math.Exp(s);
        // pos 0 sees only itself. pos 1: scores [0, s] → [1, E]/(1+E). pos 2: scores [s, 0, s] → [E, 1, E]/(2E+1).
        var expectedPattern = new double[,] { { 1, 0, 0 }, { 1 / (1 + E), E / (1 + E), 0 }, { E / (2 * E + 1), 1 / (2 * E + 1), E / (2 * E + 1) } };
        // z = pattern @ v; with W_O = I, W_U = I: logits = residual + z.
        var expectedLogits = new double[,]
        {
            { 1 + 1, 0 },
            { expectedPattern[1, 0], 1 + expectedPattern[1, 1] },
            { 1 + expectedPattern[2, 0] + expectedPattern[2, 2], expectedPattern[2, 1] },
        };
        var (logits, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            var pattern = cache["pattern", 0];
            Assert.Equal(new long[] { 1, 1, 3, 3 }, pattern.shape);
            var scores = cache["attn_scores", 0];
            Assert.True(double.IsNegativeInfinity(scores[0, 0, 0, 1].item<float>()));
            Assert.Equal(s, scores[0, 0, 1, 1].item<float>(), 5);
            for (int q = 0; q < 3; q++)
                for (int k = 0; k < 3; k++)
                    Assert.Equal(expectedPattern[q, k], pattern[0, 0, q, k].item<float>(), 5);
            for (int p = 0; p < 3; p++)
                for (int v = 0; v < 2; v++)
                    Assert.Equal(expectedLogits[p, v], logits[0, p, v].item<float>(), 5);
        }
        // The fused (unhooked) kernel gives the same logits.
        var fast = model.forward(tokens);
        Assert.True((fast - logits).abs().max().item<float>() < 1e-6);
        Assert.Equal(new[] { "hook_embed", "blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.0.hook_attn_out",
            "blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v", "blocks.0.attn.hook_attn_scores",
            "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z", "blocks.0.attn.hook_result" }.OrderBy(n => n), model.HookNames.OrderBy(n => n));
    }

    [Fact]
    public void Patching_the_pattern_changes_the_output_as_computed_by_hand()
    {
        var model = Build();
        using var _ = no_grad();
        var tokens = tensor(new long[] { 0, 1, 0 }).view(1, 3);
        // Force every position to attend only to position 0 (value e0): logits = residual + e0.
        var logits = model.RunWithHooks(tokens, ("pattern0", (x, hp) =>
        {
            var p = zeros_like(x);
            p[TensorIndex.Ellipsis, 0] = tensor(1f);
            return p;
        }));
        var expected = tensor(new float[,] { { 2, 0 }, { 1, 1 }, { 2, 0 } }).unsqueeze(0);
        Assert.True((logits - expected).abs().max().item<float>() < 1e-6);
    }
}
