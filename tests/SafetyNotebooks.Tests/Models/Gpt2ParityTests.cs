using SafetyNotebooks.IO;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>Compares the model against Hugging Face's own outputs for the tiny GPT-2 fixture.</summary>
public class Gpt2ParityTests
{
    static Gpt2ParityTests() => TorchRuntime.EnsureLoaded();

    static readonly Lazy<HookedTransformer> Model = new(() => HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gpt2-tiny")));
    static readonly Lazy<Dictionary<string, Tensor>> Expected = new(() =>
        Safetensors.Load(Path.Combine(TestPaths.Fixture("hf-gpt2-tiny"), "expected.safetensors")));

    internal static HookedTransformer LoadFixtureModel() => HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gpt2-tiny"));
    internal static Tensor InputIds => Expected.Value["input_ids"];

    static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Fact]
    public void Config_is_read_from_config_json()
    {
        var cfg = Model.Value.Cfg;
        Assert.Equal(2, cfg.NLayers);
        Assert.Equal(32, cfg.DModel);
        Assert.Equal(4, cfg.NHeads);
        Assert.Equal(8, cfg.DHead);
        Assert.Equal(128, cfg.DMlp);
        Assert.Equal(64, cfg.NCtx);
        Assert.Equal(50257, cfg.DVocab);
        Assert.Equal("gelu_new", cfg.ActFn);
    }

    [Fact]
    public void Logits_match_huggingface()
    {
        using var _ = no_grad();
        var logits = Model.Value.forward(InputIds);
        Assert.Equal(Expected.Value["logits"].shape, logits.shape);
        Assert.True(MaxAbsDiff(logits, Expected.Value["logits"]) < 1e-4, $"max |Δlogits| = {MaxAbsDiff(logits, Expected.Value["logits"])}");
    }

    [Fact]
    public void Hidden_states_match_resid_streams_and_ln_final()
    {
        using var _ = no_grad();
        var (logits, cache) = Model.Value.RunWithCache(InputIds);
        using (cache)
        {
            var e = Expected.Value;
            Assert.True(MaxAbsDiff(cache["resid_pre", 0], e["hidden_states.0"]) < 1e-5);
            Assert.True(MaxAbsDiff(cache["resid_pre", 1], e["hidden_states.1"]) < 1e-5);
            Assert.True(MaxAbsDiff(cache["resid_post", 0], e["hidden_states.1"]) < 1e-5);
            // hook_normalized fires before ln_final's weight and bias (TransformerLens); HF's last hidden state includes them.
            var lnf = Model.Value.ln_final!;
            var lnOut = cache["ln_final.hook_normalized"] * lnf.w! + lnf.b!;
            Assert.True(MaxAbsDiff(lnOut, e["hidden_states.2"]) < 1e-4, $"max |Δ| = {MaxAbsDiff(lnOut, e["hidden_states.2"])}");
            // ... and is itself the centered residual divided by the cached scale (zero mean, unit RMS per position).
            var resid = cache["resid_post", 1];
            var byHand = (resid - resid.mean(new long[] { -1 }, keepdim: true)) / cache["ln_final.hook_scale"];
            Assert.True(MaxAbsDiff(cache["ln_final.hook_normalized"], byHand) < 1e-5);
            Assert.True(MaxAbsDiff(logits, e["logits"]) < 1e-4); // the slow (hooked) attention path agrees too
        }
    }

    [Fact]
    public void Loss_matches_huggingface()
    {
        using var _ = no_grad();
        var loss = Model.Value.Loss(InputIds).item<float>();
        var expected = Expected.Value["loss"].reshape(-1)[0].item<float>();
        Assert.True(Math.Abs(loss - expected) < 1e-5, $"loss {loss} vs HF {expected}");
    }
}
