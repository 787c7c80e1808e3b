using SafetyNotebooks.IO;
using SafetyNotebooks.Models;
using SafetyNotebooks.Models.Components;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>
/// Parity of <see cref="HookedTransformer.FromPretrained(string)"/> with the Hugging Face reference outputs of the tiny Llama
/// (RMSNorm, full rotary, SwiGLU, grouped-query attention) and GPT-NeoX (partial rotary, parallel residual, per-head interleaved
/// fused QKV) fixtures; see each fixture's README.md for what was reproduced.
/// </summary>
public class FamilyParityTests
{
    static FamilyParityTests() => TorchRuntime.EnsureLoaded();

    static readonly Dictionary<string, Lazy<HookedTransformer>> Models = new()
    {
        ["hf-llama-tiny"] = new(() => HookedTransformer.FromPretrained(TestPaths.Fixture("hf-llama-tiny"))),
        ["hf-gptneox-tiny"] = new(() => HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gptneox-tiny"))),
    };
    static readonly Dictionary<string, Lazy<Dictionary<string, Tensor>>> Expected = new()
    {
        ["hf-llama-tiny"] = new(() => Safetensors.Load(Path.Combine(TestPaths.Fixture("hf-llama-tiny"), "expected.safetensors"))),
        ["hf-gptneox-tiny"] = new(() => Safetensors.Load(Path.Combine(TestPaths.Fixture("hf-gptneox-tiny"), "expected.safetensors"))),
    };

    static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Fact]
    public void Llama_config_is_read_from_config_json()
    {
        var cfg = Models["hf-llama-tiny"].Value.Cfg;
        Assert.Equal((2, 32, 4, 2, 8, 88, 512), (cfg.NLayers, cfg.DModel, cfg.NHeads, cfg.NKeyValueHeads, cfg.DHead, cfg.DMlp, cfg.DVocab));
        Assert.Equal(NormalizationType.RMS, cfg.Normalization);
        Assert.Equal(PositionalEmbeddingType.Rotary, cfg.PositionalEmbedding);
        Assert.Equal(8, cfg.EffectiveRotaryDim);
        Assert.Equal(10000.0, cfg.RotaryBase);
        Assert.Equal(1e-6, cfg.LayerNormEps);
        Assert.Equal("silu", cfg.ActFn);
        Assert.True(cfg.GatedMlp);
        Assert.False(cfg.ParallelAttnMlp);
    }

    [Fact]
    public void Gpt_NeoX_config_is_read_from_config_json()
    {
        var cfg = Models["hf-gptneox-tiny"].Value.Cfg;
        Assert.Equal((2, 32, 4, 8, 128, 512), (cfg.NLayers, cfg.DModel, cfg.NHeads, cfg.DHead, cfg.DMlp, cfg.DVocab));
        Assert.Equal(4, cfg.EffectiveNKeyValueHeads);
        Assert.Equal(NormalizationType.LN, cfg.Normalization);
        Assert.Equal(4, cfg.EffectiveRotaryDim);   // rotary_pct 0.5 of d_head 8
        Assert.Equal("gelu", cfg.ActFn);           // exact erf GELU
        Assert.True(cfg.ParallelAttnMlp);
        Assert.False(cfg.GatedMlp);
    }

    [Theory]
    [InlineData("hf-llama-tiny")]
    [InlineData("hf-gptneox-tiny")]
    public void Logits_match_huggingface(string fixture)
    {
        using var _ = no_grad();
        var e = Expected[fixture].Value;
        var logits = Models[fixture].Value.forward(e["input_ids"]);
        Assert.Equal(e["logits"].shape, logits.shape);
        Assert.True(MaxAbsDiff(logits, e["logits"]) < 1e-4, $"{fixture}: max |Δlogits| = {MaxAbsDiff(logits, e["logits"])}");
    }

    [Theory]
    [InlineData("hf-llama-tiny")]
    [InlineData("hf-gptneox-tiny")]
    public void Hidden_states_match_resid_streams_and_the_final_norm(string fixture)
    {
        using var _ = no_grad();
        var model = Models[fixture].Value;
        var e = Expected[fixture].Value;
        var (logits, cache) = model.RunWithCache(e["input_ids"]);
        using (cache)
        {
            Assert.True(MaxAbsDiff(cache["hook_embed"], e["hidden_states.0"]) < 1e-5);
            Assert.True(MaxAbsDiff(cache["resid_pre", 0], e["hidden_states.0"]) < 1e-5);
            Assert.True(MaxAbsDiff(cache["resid_post", 0], e["hidden_states.1"]) < 1e-4, $"{fixture}: max |Δ| = {MaxAbsDiff(cache["resid_post", 0], e["hidden_states.1"])}");
            // HF's last hidden state is the final norm of the last block's output; the norm is applied here by its formula
            // (README: RMSNorm x·rsqrt(mean(x²)+eps)·w for Llama, LayerNorm with weight and bias for NeoX).
            var x = cache["resid_post", 1];
            var ln = model.ln_final!;
            if (model.Cfg.Normalization == NormalizationType.LN) x = x - x.mean(new long[] { -1 }, keepdim: true);
            var normed = x * (x.pow(2).mean(new long[] { -1 }, keepdim: true) + model.Cfg.LayerNormEps).rsqrt() * ln.w!;
            if (ln.b is not null) normed = normed + ln.b;
            Assert.True(MaxAbsDiff(normed, e["hidden_states.2"]) < 1e-4, $"{fixture}: max |Δ| = {MaxAbsDiff(normed, e["hidden_states.2"])}");
            Assert.True(MaxAbsDiff(logits, e["logits"]) < 1e-4); // the slow (hooked) attention path agrees too
        }
    }

    [Theory]
    [InlineData("hf-llama-tiny")]
    [InlineData("hf-gptneox-tiny")]
    public void Loss_matches_huggingface(string fixture)
    {
        using var _ = no_grad();
        var e = Expected[fixture].Value;
        var loss = Models[fixture].Value.Loss(e["input_ids"]).item<float>();
        var expected = e["loss"].reshape(-1)[0].item<float>();
        Assert.True(Math.Abs(loss - expected) < 1e-5, $"{fixture}: loss {loss} vs HF {expected}");
    }

    [Fact]
    public void Llama_weights_have_TransformerLens_shapes_with_grouped_keys_and_values()
    {
        var a = Models["hf-llama-tiny"].Value.blocks[0].attn;
        Assert.True(a.IsGroupedQuery);
        Assert.Equal(new long[] { 4, 32, 8 }, a.W_Q.shape);
        Assert.Equal(new long[] { 2, 32, 8 }, a.W_K.shape);   // n_key_value_heads, as TransformerLens' _W_K
        Assert.Equal(new long[] { 2, 32, 8 }, a.W_V.shape);
        Assert.Equal(new long[] { 4, 8, 32 }, a.W_O.shape);
        var e = Assert.Throws<InvalidOperationException>(() => a.W_QKV);
        Assert.Contains("W_K", e.Message);
        var mlp = Assert.IsType<GatedMlp>(Models["hf-llama-tiny"].Value.blocks[0].mlp);
        Assert.Equal(new long[] { 32, 88 }, mlp.W_gate.shape);
        // Row 0 of HF's q_proj (head 0, dim 0) is column 0 of W_Q[0] (nn.Linear [out, in] → [in, out]).
        using var file = Safetensors.Open(Path.Combine(TestPaths.Fixture("hf-llama-tiny"), "model.safetensors"));
        var qProj = file.Read("model.layers.0.self_attn.q_proj.weight");
        Assert.True(MaxAbsDiff(a.W_Q[1].select(1, 3), qProj[1 * 8 + 3]) == 0);
        var kProj = file.Read("model.layers.0.self_attn.k_proj.weight");
        Assert.True(MaxAbsDiff(a.W_K[1].select(1, 2), kProj[1 * 8 + 2]) == 0);
    }

    [Fact]
    public void Gpt_NeoX_fused_qkv_is_read_per_head_interleaved()
    {
        // README: rows h*24 .. h*24+7 of query_key_value.weight are head h's query, +8..+15 its key, +16..+23 its value.
        var a = Models["hf-gptneox-tiny"].Value.blocks[1].attn;
        using var file = Safetensors.Open(Path.Combine(TestPaths.Fixture("hf-gptneox-tiny"), "model.safetensors"));
        var w = file.Read("gpt_neox.layers.1.attention.query_key_value.weight");
        var b = file.Read("gpt_neox.layers.1.attention.query_key_value.bias");
        Assert.True(MaxAbsDiff(a.W_Q[2].select(1, 5), w[2 * 24 + 5]) == 0);
        Assert.True(MaxAbsDiff(a.W_K[3].select(1, 0), w[3 * 24 + 8]) == 0);
        Assert.True(MaxAbsDiff(a.W_V[1].select(1, 7), w[1 * 24 + 16 + 7]) == 0);
        Assert.Equal(b[3 * 24 + 8].item<float>(), a.b_K[3][0].item<float>());
    }
}
