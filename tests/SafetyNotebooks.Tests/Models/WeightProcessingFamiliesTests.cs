using SafetyNotebooks.Models;
using SafetyNotebooks.Models.Components;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>
/// TransformerLens' weight processing on the Llama (RMSNorm, gated MLP, grouped-query) and GPT-NeoX (LayerNorm, parallel
/// attention + MLP) families: log-probabilities unchanged, and the processed weights equal the hand-folded raw ones.
/// </summary>
public class WeightProcessingFamiliesTests
{
    static WeightProcessingFamiliesTests() => TorchRuntime.EnsureLoaded();

    static HookedTransformer Load(string fixture) => HookedTransformer.FromPretrained(TestPaths.Fixture(fixture));

    static Tensor Tokens(int seed, int batch = 2, int pos = 9)
    {
        var rng = new Random(seed);
        return tensor(Enumerable.Range(0, batch * pos).Select(_ => (long)rng.Next(3, 512)).ToArray(), new long[] { batch, pos });
    }

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData("hf-llama-tiny")]
    [InlineData("hf-gptneox-tiny")]
    public void Compatibility_mode_keeps_log_probs(string fixture)
    {
        using var model = Load(fixture);
        using var scope = NewDisposeScope();
        var tokens = Tokens(4);
        var before = model.forward(tokens).log_softmax(-1);
        model.EnableCompatibilityMode();
        var after = model.forward(tokens).log_softmax(-1);
        Assert.True(MaxAbs(after, before) < 1e-4, $"{fixture}: max |Δ log p| = {MaxAbs(after, before)}");
        Assert.True(model.CompatibilityMode);
    }

    [Fact]
    public void Llama_folds_rms_weights_into_every_reader_and_centers_nothing_but_the_unembed()
    {
        using var raw = Load("hf-llama-tiny");
        using var model = Load("hf-llama-tiny").EnableCompatibilityMode();
        using var scope = NewDisposeScope();
        Assert.Equal(NormalizationType.RMSPre, model.Cfg.Normalization);
        Assert.IsType<RMSNormPre>(model.blocks[0].ln1);
        Assert.IsType<RMSNormPre>(model.blocks[1].ln2);
        Assert.IsType<RMSNormPre>(model.ln_final);
        for (int l = 0; l < 2; l++)
        {
            var (r, m) = (raw.blocks[l], model.blocks[l]);
            var w1 = r.ln1!.w!.view(1, -1, 1);                                  // [1, d_model, 1]
            Assert.True(MaxAbs(m.attn.W_Q, r.attn.W_Q * w1) < 1e-6);
            Assert.Equal(r.attn.W_K.shape, m.attn.W_K.shape);                 // grouped: [n_key_value_heads, d_model, d_head]
            Assert.Equal(2, m.attn.W_K.shape[0]);
            Assert.True(MaxAbs(m.attn.W_K, r.attn.W_K * w1) < 1e-6);
            Assert.True(MaxAbs(m.attn.W_V, r.attn.W_V * w1) < 1e-6);
            var w2 = r.ln2!.w!.view(-1, 1);                                     // [d_model, 1]
            Assert.True(MaxAbs(m.mlp!.W_in, r.mlp!.W_in * w2) < 1e-6);
            Assert.True(MaxAbs(((GatedMlp)m.mlp).W_gate, ((GatedMlp)r.mlp).W_gate * w2) < 1e-6);
            // Writing weights are not centered for RMSNorm (TL skips center_writing_weights): W_O, W_out as loaded.
            Assert.Equal(0.0, MaxAbs(m.attn.W_O, r.attn.W_O));
            Assert.Equal(0.0, MaxAbs(m.mlp.W_out, r.mlp.W_out));
        }
        Assert.Equal(0.0, MaxAbs(model.embed.W_E, raw.embed.W_E));
        var wu = (Tensor)raw.unembed.W_U * raw.ln_final!.w!.view(-1, 1);       // folded, then centered over the vocabulary
        Assert.True(MaxAbs((Tensor)model.unembed.W_U, wu - wu.mean(new long[] { -1 }, keepdim: true)) < 1e-6);
    }

    [Fact]
    public void NeoX_folds_and_centers_as_for_gpt2()
    {
        using var raw = Load("hf-gptneox-tiny");
        using var model = Load("hf-gptneox-tiny").EnableCompatibilityMode();
        using var scope = NewDisposeScope();
        Assert.Equal(NormalizationType.LNPre, model.Cfg.Normalization);
        Assert.True(model.Cfg.ParallelAttnMlp);
        for (int l = 0; l < 2; l++)
        {
            var (r, m) = (raw.blocks[l], model.blocks[l]);
            // Writing weights centered over d_model.
            Assert.True(m.attn.W_O.mean(new long[] { -1 }).abs().max().item<float>() < 1e-6);
            Assert.True(m.mlp!.W_out.mean(new long[] { -1 }).abs().max().item<float>() < 1e-6);
            // Reading weights: ln.w folded, then centered over d_model; ln.b folded into the bias.
            var wq = r.attn.W_Q * r.ln1!.w!.view(1, -1, 1);
            Assert.True(MaxAbs(m.attn.W_Q, wq - wq.mean(new long[] { 1 }, keepdim: true)) < 1e-6);
            Assert.True(MaxAbs(m.attn.b_Q, r.attn.b_Q + einsum("d,hde->he", r.ln1.b!, r.attn.W_Q)) < 1e-5);
            var win = r.mlp!.W_in * r.ln2!.w!.view(-1, 1);
            Assert.True(MaxAbs(m.mlp.W_in, win - win.mean(new long[] { 0 }, keepdim: true)) < 1e-6);
            Assert.Equal(0.0, m.attn.b_V.abs().max().item<float>());          // value biases folded into b_O
        }
    }

    [Fact]
    public void Grouped_query_value_biases_fold_once_per_query_head()
    {
        var cfg = new HookedTransformerConfig
        {
            NLayers = 1, DModel = 16, NHeads = 4, NKeyValueHeads = 2, DHead = 4, DMlp = 32, NCtx = 16, DVocab = 20, ActFn = "silu",
            Normalization = NormalizationType.RMS, PositionalEmbedding = PositionalEmbeddingType.Rotary, GatedMlp = true, Seed = 3,
        };
        using var model = new HookedTransformer(cfg);
        using var scope = NewDisposeScope();
        var a = model.blocks[0].attn;
        using (no_grad()) { a.b_V.copy_(randn(2, 4, generator: new TorchSharp.torch.Generator(5))); a.b_O.copy_(randn(16, generator: new TorchSharp.torch.Generator(6))); }
        var tokens = tensor(new long[] { 1, 5, 7, 2, 9, 11 }, new long[] { 1, 6 });
        var before = model.forward(tokens).log_softmax(-1);
        // By hand: query heads 0,1 read key/value head 0; heads 2,3 read head 1.
        var expected = a.b_O.clone();
        for (int h = 0; h < 4; h++) expected += a.b_V[h / 2].matmul(a.W_O[h]);
        model.FoldValueBiases();
        Assert.True(MaxAbs(a.b_O, expected) < 1e-5);
        Assert.Equal(0.0, a.b_V.abs().max().item<float>());
        Assert.True(MaxAbs(model.forward(tokens).log_softmax(-1), before) < 1e-5);
    }

    [Fact]
    public void Rms_fold_moves_norm_hooks_and_refuses_a_second_fold()
    {
        using var model = Load("hf-llama-tiny");
        using var scope = NewDisposeScope();
        var tokens = Tokens(7, batch: 1);
        var (_, rawCache) = model.RunWithCache(tokens);
        int calls = 0;
        model.AddHook("blocks.1.ln2.hook_normalized", (x, _) => { calls++; return null; }, permanent: true);
        model.FoldLayerNorm();
        var (_, cache) = model.RunWithCache(tokens);
        Assert.Equal(1, calls);
        // hook_scale and hook_normalized fire before the weight, so folding does not change them.
        Assert.True(MaxAbs(cache["blocks.1.ln2.hook_normalized"], rawCache["blocks.1.ln2.hook_normalized"]) < 1e-5);
        var e = Assert.Throws<InvalidOperationException>(() => model.FoldLayerNorm());
        Assert.Contains("RMSPre", e.Message);
    }

    [Fact]
    public void Layer_norm_with_a_gated_mlp_is_refused_with_the_fix()
    {
        var cfg = new HookedTransformerConfig
        {
            NLayers = 1, DModel = 8, NHeads = 2, DHead = 4, DMlp = 16, NCtx = 8, DVocab = 10, ActFn = "silu", GatedMlp = true,
        };
        using var model = new HookedTransformer(cfg);
        var e = Assert.Throws<InvalidOperationException>(() => model.FoldLayerNorm());
        Assert.Contains("ProcessWeights(foldLn: false)", e.Message);
        Assert.Equal(NormalizationType.LN, model.Cfg.Normalization);
    }
}
