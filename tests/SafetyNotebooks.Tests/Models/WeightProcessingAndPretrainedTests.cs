using SafetyNotebooks.Models;
using SafetyNotebooks.Models.Components;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

public class WeightProcessingAndPretrainedTests
{
    static WeightProcessingAndPretrainedTests() => TorchRuntime.EnsureLoaded();

    static Tensor Tokens => Gpt2ParityTests.InputIds;

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    static Tensor LogProbs(HookedTransformer m)
    {
        using var _ = no_grad();
        return m.forward(Tokens).log_softmax(-1);
    }

    public static IEnumerable<object[]> Steps() => new[]
    {
        new object[] { "fold_ln" }, new object[] { "center_writing" }, new object[] { "center_unembed" },
        new object[] { "fold_value_biases" }, new object[] { "all" },
    };

    [Theory]
    [MemberData(nameof(Steps))]
    public void Each_processing_step_preserves_log_probs(string step)
    {
        var m = Gpt2ParityTests.LoadFixtureModel();
        var before = LogProbs(m);
        switch (step)
        {
            case "fold_ln": m.FoldLayerNorm(); break;
            case "center_writing": m.CenterWritingWeights(); break;
            case "center_unembed": m.CenterUnembed(); break;
            case "fold_value_biases": m.FoldValueBiases(); break;
            default: m.ProcessWeights(); break;
        }
        var after = LogProbs(m);
        Assert.True(MaxAbs(before, after) < 1e-4, $"{step}: max |Δ log p| = {MaxAbs(before, after)}");
    }

    [Fact]
    public void Processing_leaves_TransformerLens_invariants()
    {
        var m = Gpt2ParityTests.LoadFixtureModel().ProcessWeights();
        using var _ = no_grad();
        Assert.Equal(NormalizationType.LNPre, m.Cfg.Normalization);
        Assert.IsType<LayerNormPre>(m.blocks[0].ln1);
        Assert.IsType<LayerNormPre>(m.blocks[1].ln2);
        Assert.IsType<LayerNormPre>(m.ln_final);
        Assert.Equal(0f, m.b_V.abs().max().item<float>());
        Assert.True(m.W_E.mean(new long[] { -1 }).abs().max().item<float>() < 1e-6);      // writing weights centered
        Assert.True(m.W_out.mean(new long[] { -1 }).abs().max().item<float>() < 1e-6);
        Assert.True(m.W_U.mean(new long[] { -1 }).abs().max().item<float>() < 1e-6);      // unembed centered
        Assert.True(m.W_Q.mean(new long[] { 2 }).abs().max().item<float>() < 1e-6);       // reading weights centered over d_model
        Assert.Contains("blocks.0.ln1.hook_scale", m.HookNames);
        // Hooks on the new LNPre modules work.
        var (_, cache) = m.RunWithCache(Tokens, n => n.StartsWith("ln_final"));
        using (cache) Assert.Equal(2, cache.Count);
    }

    [Fact]
    public void Processing_a_fresh_tied_model_preserves_log_probs()
    {
        var cfg = new HookedTransformerConfig { NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 16, DVocab = 40, TiedEmbeddings = true, Seed = 1, InitRange = 0.3 };
        var m = new HookedTransformer(cfg);
        Assert.True(m.unembed.IsTied);
        var tokens = randint(0, 40, new long[] { 3, 10 });
        using var _ = no_grad();
        var before = m.forward(tokens).log_softmax(-1);
        m.ProcessWeights();
        Assert.False(m.unembed.IsTied);
        Assert.True(MaxAbs(before, m.forward(tokens).log_softmax(-1)) < 1e-4);
    }

    [Fact]
    public void Save_then_load_round_trips_the_fixture_and_a_fresh_model()
    {
        var dir = Directory.CreateTempSubdirectory("pretrained-rt").FullName;
        try
        {
            using var _ = no_grad();
            var m = Gpt2ParityTests.LoadFixtureModel();
            m.SavePretrained(Path.Combine(dir, "fixture"));
            var back = HookedTransformer.FromPretrained(Path.Combine(dir, "fixture"));
            Assert.Equal(m.Cfg with { TiedEmbeddings = false }, back.Cfg with { TiedEmbeddings = false });
            Assert.Equal(0.0, MaxAbs(m.forward(Tokens), back.forward(Tokens)));
            using (var f = SafetyNotebooks.IO.Safetensors.Open(Path.Combine(dir, "fixture", "model.safetensors")))
            {
                Assert.False(f.Contains("lm_head.weight"));
                Assert.Equal(new long[] { 32, 96 }, f.Info("transformer.h.0.attn.c_attn.weight").Shape);
            }

            var cfg = new HookedTransformerConfig { NLayers = 1, DModel = 8, NHeads = 2, DHead = 4, DMlp = 24, NCtx = 8, DVocab = 11, ActFn = "relu", Seed = 3 };
            var fresh = new HookedTransformer(cfg);
            fresh.unembed.b_U.normal_();                                   // untied W_U and a bias
            fresh.unembed.W_U.normal_();
            fresh.SavePretrained(Path.Combine(dir, "fresh"));
            var freshBack = HookedTransformer.FromPretrained(Path.Combine(dir, "fresh"));
            Assert.Equal(24, freshBack.Cfg.DMlp);
            Assert.Equal("relu", freshBack.Cfg.ActFn);
            var t = randint(0, 11, new long[] { 2, 8 });
            Assert.Equal(0.0, MaxAbs(fresh.forward(t), freshBack.forward(t)));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Missing_pretrained_files_are_clear_errors()
    {
        var dir = Directory.CreateTempSubdirectory("pretrained-missing").FullName;
        try
        {
            var e = Assert.Throws<FileNotFoundException>(() => HookedTransformer.FromPretrained(dir));
            Assert.Contains("config.json", e.Message);
            Assert.Contains(dir, e.Message);
            File.Copy(Path.Combine(TestPaths.Fixture("hf-gpt2-tiny"), "config.json"), Path.Combine(dir, "config.json"));
            e = Assert.Throws<FileNotFoundException>(() => HookedTransformer.FromPretrained(dir));
            Assert.Contains("model.safetensors", e.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Weights_have_TransformerLens_shapes()
    {
        var m = Gpt2ParityTests.LoadFixtureModel();
        Assert.Equal(new long[] { 50257, 32 }, m.W_E.shape);
        Assert.Equal(new long[] { 64, 32 }, m.W_pos.shape);
        Assert.Equal(new long[] { 2, 4, 32, 8 }, m.W_Q.shape);
        Assert.Equal(new long[] { 2, 4, 8, 32 }, m.W_O.shape);
        Assert.Equal(new long[] { 2, 4, 8 }, m.b_K.shape);
        Assert.Equal(new long[] { 2, 32, 128 }, m.W_in.shape);
        Assert.Equal(new long[] { 2, 128, 32 }, m.W_out.shape);
        Assert.Equal(new long[] { 32, 50257 }, m.W_U.shape);
        Assert.Equal(new long[] { 4, 32, 8 }, m.blocks[1].attn.W_V.shape);
    }

    [Fact]
    public void Config_validation_names_the_field_and_the_fix()
    {
        var ok = HookedTransformerConfig.Gpt2Small();
        var e = Assert.Throws<ArgumentException>(() => (ok with { NHeads = 0 }).Validate());
        Assert.Contains("NHeads", e.Message);
        e = Assert.Throws<ArgumentException>(() => new HookedTransformer(ok with { ActFn = "swish" }));
        Assert.Contains("ActFn", e.Message);
        Assert.Contains("gelu_new", e.Message);
        e = Assert.Throws<ArgumentException>(() => (ok with { DMlp = 0 }).Validate());
        Assert.Contains("AttnOnly", e.Message);
        (ok with { DMlp = 0, AttnOnly = true }).Validate();
    }

    [Fact]
    public void Training_a_tiny_attention_only_model_reduces_loss()
    {
        var cfg = HookedTransformerConfig.AttnOnly2L(dVocab: 16, nCtx: 16) with { DModel = 32, NHeads = 4, DHead = 8, Seed = 0 };
        var m = new HookedTransformer(cfg);
        var opt = optim.AdamW(m.parameters(), 1e-2);
        // Repeated random sequences: the second half is predictable from the first (induction).
        random.manual_seed(0);
        var half = randint(0, 16, new long[] { 32, 8 });
        var tokens = cat(new[] { half, half }, 1);
        float first = 0, last = 0;
        for (int step = 0; step < 60; step++)
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var loss = m.Loss(tokens);
            loss.backward();
            opt.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        Assert.True(last < first - 0.3, $"loss {first} → {last}");
    }
}
