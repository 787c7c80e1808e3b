using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>
/// Padded batches and the key/value cache on the rotary families (Llama with grouped-query attention, GPT-NeoX with
/// partial rotary and parallel blocks): rotary angles come from the position ids of the real tokens, so every padded row
/// must give the logits it gives alone, and cached generation must equal uncached generation token for token.
/// </summary>
public class RotaryPaddingAndCacheTests
{
    static RotaryPaddingAndCacheTests() => TorchRuntime.EnsureLoaded();

    static readonly Dictionary<string, Lazy<HookedTransformer>> Models = new()
    {
        ["hf-llama-tiny"] = new(() => HookedTransformer.FromPretrained(TestPaths.Fixture("hf-llama-tiny"))),
        ["hf-gptneox-tiny"] = new(() => HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gptneox-tiny"))),
    };

    static long[][] Rows(int seed, params int[] lengths)
    {
        var rng = new Random(seed);   // ids 3…511: no special tokens inside prompts
        return lengths.Select(n => Enumerable.Range(0, n).Select(_ => (long)rng.Next(3, 512)).ToArray()).ToArray();
    }

    static (Tensor Tokens, Tensor Mask) Batch(long[][] rows, bool left) => PaddingAndKvCacheTests.Batch(rows, left, pad: 0);

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData("hf-llama-tiny", true)]
    [InlineData("hf-llama-tiny", false)]
    [InlineData("hf-gptneox-tiny", true)]
    [InlineData("hf-gptneox-tiny", false)]
    public void Every_padded_row_matches_the_row_run_alone(string fixture, bool left)
    {
        using var _ = no_grad();
        var model = Models[fixture].Value;
        var rows = Rows(11, 4, 9, 1, 7);
        var (tokens, mask) = Batch(rows, left);
        var logits = model.forward(tokens, mask);
        int width = rows.Max(r => r.Length);
        for (int b = 0; b < rows.Length; b++)
        {
            var alone = model.forward(tensor(rows[b]).unsqueeze(0))[0];
            var inBatch = logits[b].narrow(0, left ? width - rows[b].Length : 0, rows[b].Length);
            Assert.True(MaxAbs(alone, inBatch) < 1e-5, $"{fixture} row {b} ({(left ? "left" : "right")} padded): max |Δ| = {MaxAbs(alone, inBatch)}");
        }
    }

    [Theory]
    [InlineData("hf-llama-tiny")]
    [InlineData("hf-gptneox-tiny")]
    public void Cached_forward_one_token_at_a_time_equals_the_full_forward(string fixture)
    {
        using var _ = no_grad();
        var model = Models[fixture].Value;
        var (tokens, mask) = Batch(Rows(12, 3, 8), left: true);
        var full = model.forward(tokens, mask);
        using var cache = new HookedTransformerKeyValueCache(model);
        var steps = new List<Tensor> { model.forward(tokens.narrow(1, 0, 5), mask.narrow(1, 0, 5), cache) };
        for (int t = 5; t < 8; t++) steps.Add(model.forward(tokens.narrow(1, t, 1), mask.narrow(1, t, 1), cache));
        var stitched = cat(steps.ToArray(), 1);
        Assert.True(MaxAbs(full[0].narrow(0, 5, 3), stitched[0].narrow(0, 5, 3)) < 1e-5);
        Assert.True(MaxAbs(full[1], stitched[1]) < 1e-5, $"{fixture}: max |Δ| = {MaxAbs(full[1], stitched[1])}");
    }

    [Theory]
    [InlineData("hf-llama-tiny")]
    [InlineData("hf-gptneox-tiny")]
    public void Cached_greedy_generation_equals_uncached_and_each_row_alone(string fixture)
    {
        var model = Models[fixture].Value;
        var rows = Rows(13, 2, 6, 4);
        var (tokens, mask) = Batch(rows, left: true);
        var o = GenerationOptions.Greedy(10) with { EosTokenId = null };
        using var cached = Generation.Generate(model, tokens, o, mask);
        using var uncached = Generation.Generate(model, tokens, o with { UseCache = false }, mask);
        Assert.Equal(uncached.Tokens.data<long>().ToArray(), cached.Tokens.data<long>().ToArray());
        for (int b = 0; b < rows.Length; b++)
        {
            using var alone = Generation.Generate(model, tensor(rows[b]).unsqueeze(0), o);
            Assert.Equal(alone.Tokens[0].narrow(0, rows[b].Length, 10).data<long>().ToArray(),
                cached.Tokens[b].narrow(0, 6, 10).data<long>().ToArray());
        }
    }
}
