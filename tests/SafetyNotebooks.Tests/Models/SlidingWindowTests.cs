using System.Text.Json.Nodes;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>
/// Mistral's <c>sliding_window</c>: a query at index i sees only keys j with i − j &lt; w. The reference is the same
/// checkpoint without a window, with every layer's attention scores masked by hand (−inf where i − j ≥ w) in a hook.
/// </summary>
public class SlidingWindowTests
{
    static SlidingWindowTests() => TorchRuntime.EnsureLoaded();

    /// <summary>The Llama fixture re-labelled as Mistral with <paramref name="window"/> (null: field written as JSON null).</summary>
    static HookedTransformer Mistral(int? window, Action<JsonObject>? edit = null)
    {
        var src = TestPaths.Fixture("hf-llama-tiny");
        var dir = Path.Combine(Path.GetTempPath(), $"sn-mistral-{window?.ToString() ?? "null"}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(src, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(src, "config.json")))!.AsObject();
        cfg["model_type"] = "mistral";
        cfg["architectures"] = new JsonArray("MistralForCausalLM");
        cfg["sliding_window"] = window is int w ? JsonValue.Create(w) : null;
        edit?.Invoke(cfg);
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        try { return HookedTransformer.FromPretrained(dir); }
        finally { Directory.Delete(dir, true); }
    }

    static Tensor Tokens(int seed, int batch, int pos)
    {
        var rng = new Random(seed);
        return tensor(Enumerable.Range(0, batch * pos).Select(_ => (long)rng.Next(3, 512)).ToArray(), new long[] { batch, pos });
    }

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    /// <summary>Runs <paramref name="plain"/> with the window enforced by hand on every layer's scores.</summary>
    static Tensor HandMasked(HookedTransformer plain, Tensor tokens, int w) =>
        plain.RunWithHooks(tokens, n => n.EndsWith("attn.hook_attn_scores"), (scores, _) =>
        {
            long q = scores.shape[2], k = scores.shape[3];
            var outside = ones(q, k, dtype: ScalarType.Bool).tril(-w);        // key j ≤ i − w
            return scores.masked_fill(outside, double.NegativeInfinity);
        });

    [Fact]
    public void A_sliding_window_gives_the_logits_of_hand_masked_attention()
    {
        using var noGrad = no_grad();
        using var plain = Mistral(null);
        using var windowed = Mistral(3);
        Assert.Null(plain.Cfg.SlidingWindow);
        Assert.Equal(3, windowed.Cfg.SlidingWindow);
        var tokens = Tokens(1, 2, 9);
        var got = windowed.forward(tokens);
        var reference = HandMasked(plain, tokens, 3);
        Assert.True(MaxAbs(got, reference) < 1e-5, $"max |Δ| = {MaxAbs(got, reference)}");
        var full = plain.forward(tokens);
        Assert.True(MaxAbs(got.narrow(1, 0, 3), full.narrow(1, 0, 3)) < 1e-5);   // the first w positions see everything anyway
        Assert.True(MaxAbs(got.narrow(1, 3, 6), full.narrow(1, 3, 6)) > 1e-3);   // later ones do not (the window matters)
        // The hooked (explicit) attention path masks the same way.
        var hooked = windowed.RunWithHooks(tokens, n => n.EndsWith("hook_pattern"), (x, _) => null);
        Assert.True(MaxAbs(hooked, reference) < 1e-5, $"explicit path: max |Δ| = {MaxAbs(hooked, reference)}");
    }

    [Fact]
    public void A_window_at_least_the_sequence_length_changes_nothing()
    {
        using var noGrad = no_grad();
        using var plain = Mistral(null);
        using var windowed = Mistral(9);
        var tokens = Tokens(2, 2, 9);
        Assert.True(MaxAbs(windowed.forward(tokens), plain.forward(tokens)) < 1e-6);
    }

    [Fact]
    public void The_window_holds_with_the_key_value_cache_and_in_padded_batches()
    {
        using var noGrad = no_grad();
        using var plain = Mistral(null);
        using var windowed = Mistral(3);
        var tokens = Tokens(3, 1, 8);
        var reference = HandMasked(plain, tokens, 3);
        using var cache = new HookedTransformerKeyValueCache(windowed);
        var steps = new List<Tensor> { windowed.forward(tokens.narrow(1, 0, 5), null, cache) };
        for (int t = 5; t < 8; t++) steps.Add(windowed.forward(tokens.narrow(1, t, 1), null, cache));
        var stitched = cat(steps.ToArray(), 1);
        Assert.True(MaxAbs(stitched, reference) < 1e-5, $"cached: max |Δ| = {MaxAbs(stitched, reference)}");

        // Left- and right-padded rows give the logits of the row run alone.
        var shortRow = Tokens(4, 1, 5);
        foreach (bool left in new[] { true, false })
        {
            var padRow = zeros(1, 3, dtype: ScalarType.Int64);
            var batch = cat(new[] { tokens, left ? cat(new[] { padRow, shortRow }, 1) : cat(new[] { shortRow, padRow }, 1) }, 0);
            var realShort = ones(1, 5, dtype: ScalarType.Int64);
            var mask = cat(new[] { ones(1, 8, dtype: ScalarType.Int64), left ? cat(new[] { padRow, realShort }, 1) : cat(new[] { realShort, padRow }, 1) }, 0);
            var logits = windowed.forward(batch, mask);
            Assert.True(MaxAbs(logits[0], reference[0]) < 1e-5);
            var alone = HandMasked(plain, shortRow, 3)[0];
            var inBatch = logits[1].narrow(0, left ? 3 : 0, 5);
            Assert.True(MaxAbs(alone, inBatch) < 1e-5, $"{(left ? "left" : "right")} padded: max |Δ| = {MaxAbs(alone, inBatch)}");
        }
    }

    [Fact]
    public void Qwen2_with_use_sliding_window_is_refused_and_without_it_loads_unwindowed()
    {
        var e = Assert.Throws<InvalidDataException>(() => Mistral(4, c => { c["model_type"] = "qwen2"; c["architectures"] = new JsonArray("Qwen2ForCausalLM"); c["use_sliding_window"] = true; c["max_window_layers"] = 1; }));
        Assert.Contains("use_sliding_window", e.Message);
        using var off = Mistral(4, c => { c["model_type"] = "qwen2"; c["architectures"] = new JsonArray("Qwen2ForCausalLM"); c["use_sliding_window"] = false; c["max_window_layers"] = 1; });
        Assert.Null(off.Cfg.SlidingWindow);
    }
}
