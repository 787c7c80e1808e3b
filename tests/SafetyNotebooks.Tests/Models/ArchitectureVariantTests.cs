using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>Config variants other than GPT-2's, checked against formulas written out here.</summary>
public class ArchitectureVariantTests
{
    static ArchitectureVariantTests() => TorchRuntime.EnsureLoaded();

    static HookedTransformerConfig Small => new() { NLayers = 2, DModel = 12, NHeads = 3, DHead = 4, DMlp = 20, NCtx = 10, DVocab = 17, Seed = 5, InitRange = 0.5 };

    static void Close(Tensor expected, Tensor actual, double tol, string what)
    {
        var d = (expected - actual).abs().max().item<float>();
        Assert.True(d <= tol, $"{what}: max |Δ| = {d}");
    }

    [Theory]
    [InlineData("gelu_new")]
    [InlineData("gelu")]
    [InlineData("relu")]
    [InlineData("solu")]
    public void Mlp_activation_matches_its_formula(string act)
    {
        var m = new HookedTransformer(Small with { ActFn = act });
        using var _ = no_grad();
        var (_, cache) = m.RunWithCache(randint(0, 17, new long[] { 2, 6 }), n => n.Contains("mlp.hook"));
        using (cache)
        {
            var x = cache["pre", 1];
            Tensor expected = act switch
            {
                "gelu_new" => 0.5 * x * (1 + tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x.pow(3)))),
                "gelu" => 0.5 * x * (1 + special.erf(x / Math.Sqrt(2))),
                "relu" => x.clamp_min(0),
                _ => x * x.exp() / x.exp().sum(new long[] { -1 }, keepdim: true),
            };
            Close(expected, cache["post", 1], 1e-5, act);
        }
    }

    [Fact]
    public void RMS_norm_matches_its_formula()
    {
        var m = new HookedTransformer(Small with { Normalization = NormalizationType.RMS });
        using var _ = no_grad();
        m.blocks[0].ln1!.w!.normal_();
        var (_, cache) = m.RunWithCache(randint(0, 17, new long[] { 2, 6 }), n => n.StartsWith("blocks.0"));
        using (cache)
        {
            var x = cache["resid_pre", 0];
            var normalized = x / (x.pow(2).mean(new long[] { -1 }, keepdim: true) + 1e-5).sqrt();
            // hook_normalized fires before the weight (TransformerLens); the layer's output is normalized * w.
            Close(normalized, cache["normalized", 0, "ln1"], 1e-5, "rms (hook_normalized)");
            Close(normalized * m.blocks[0].ln1!.w!, m.blocks[0].ln1!.forward(x), 1e-5, "rms * w (output)");
            Assert.False(m.blocks[0].ln1!.Centers);
        }
    }

    [Fact]
    public void Attention_only_model_without_positions_processes_weights_exactly()
    {
        var cfg = HookedTransformerConfig.AttnOnly2L(dVocab: 17, nCtx: 10) with { PositionalEmbedding = PositionalEmbeddingType.None, Seed = 7 };
        var m = new HookedTransformer(cfg);
        using var _ = no_grad();
        foreach (var (name, p) in m.named_parameters())
            if (!name.Contains("W_")) p.normal_(0.5, 0.3);                          // non-trivial LN weights and biases
        Assert.DoesNotContain("hook_pos_embed", m.HookNames);
        Assert.DoesNotContain("blocks.0.hook_resid_mid", m.HookNames);
        var tokens = randint(0, 17, new long[] { 3, 10 });
        var before = m.forward(tokens).log_softmax(-1);
        m.ProcessWeights();
        Close(before, m.forward(tokens).log_softmax(-1), 1e-4, "attn-only processed");
        var (_, cache) = m.RunWithCache(tokens);
        using (cache)
        {
            var (stack, labels) = cache.DecomposeResid();
            Assert.Equal(new[] { "embed", "0_attn_out", "1_attn_out" }, labels);
            Close(cache["resid_post", 1], stack.sum(new long[] { 0 }), 1e-5, "decompose");
        }
    }
}
