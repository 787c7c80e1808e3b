using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

public class SteeringTests
{
    public SteeringTests() => TorchRuntime.EnsureLoaded();

    static HookedTransformer Model() => new(new HookedTransformerConfig
    {
        NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 24, DVocab = 7, Seed = 5,
    });

    static Tensor Tokens(int batch, int len, int seed)
    {
        var rng = new Random(seed);
        return tensor(Enumerable.Range(0, batch * len).Select(_ => (long)rng.Next(7)).ToArray(), new long[] { batch, len });
    }

    [Fact]
    public void The_steering_vector_is_the_hand_computed_mean_difference()
    {
        // positive mean (2, 3), negative mean (1, 0): the vector is (1, 3).
        using var v = SteeringVector.FromActivations("resid_pre1", tensor(new[] { 1f, 2, 3, 4 }, new long[] { 2, 2 }), tensor(new[] { 0f, 1, 2, -1, 1, 0 }, new long[] { 3, 2 }));
        Assert.Equal(new[] { 1f, 3f }, v.Vector.data<float>().ToArray());
        Assert.Equal("blocks.1.hook_resid_pre", v.HookName);

        // From a model: last real token (the negative prompts are right-padded) and mean over real positions, against plain indexing of the cache.
        using var model = Model();
        using var pos = Tokens(3, 5, 1);
        using var neg = Tokens(2, 6, 2);
        using var negMask = tensor(new long[] { 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1 }, new long[] { 2, 6 });
        var (l1, c1) = model.RunWithCache(pos, n => n == "blocks.1.hook_resid_pre");
        var (l2, c2) = model.RunWithCache(neg, n => n == "blocks.1.hook_resid_pre", attentionMask: negMask);
        var ap = c1["resid_pre", 1]; var an = c2["resid_pre", 1];
        var expectedLast = (ap[0, 4] + ap[1, 4] + ap[2, 4]) / 3 - (an[0, 3] + an[1, 5]) / 2;
        var expectedMean = (ap[0].mean(new long[] { 0 }) + ap[1].mean(new long[] { 0 }) + ap[2].mean(new long[] { 0 })) / 3
            - (an[0, ..4].mean(new long[] { 0 }) + an[1].mean(new long[] { 0 })) / 2;
        using var last = SteeringVector.FromMeanDifference(model, "resid_pre1", pos, neg, SteeringReduction.LastToken, negativeMask: negMask);
        using var mean = SteeringVector.FromMeanDifference(model, "blocks.1.hook_resid_pre", pos, neg, SteeringReduction.MeanOverPositions, negativeMask: negMask);
        Assert.True(last.Vector.allclose(expectedLast, rtol: 1e-5, atol: 1e-6));
        Assert.True(mean.Vector.allclose(expectedMean, rtol: 1e-5, atol: 1e-6));
        c1.Dispose(); c2.Dispose(); l1.Dispose(); l2.Dispose();
    }

    [Fact]
    public void Adding_at_resid_pre_changes_the_logits_exactly_as_a_hand_written_hook()
    {
        using var model = Model();
        using var tokens = Tokens(3, 8, 3);
        torch.random.manual_seed(4);
        using var direction = torch.randn(16);
        using var v = SteeringVector.FromDirection("resid_pre1", direction);
        using var steered = Steering.Run(model, tokens, v, 2.5);
        using var byHand = model.RunWithHooks(tokens, ("blocks.1.hook_resid_pre", (x, _) => x + direction * 2.5f));
        using var clean = model.forward(tokens);
        Assert.True(steered.equal(byHand).all().item<bool>(), "All positions: same logits as x + 2.5·v");
        Assert.False(steered.allclose(clean), "the vector changes the logits");

        // Columns 2..4 only: the hand hook edits a clone at those columns.
        using var ranged = Steering.Run(model, tokens, v, 2.5, SteeringPositions.Range(2, 5));
        using var rangedByHand = model.RunWithHooks(tokens, ("blocks.1.hook_resid_pre", (x, _) =>
        {
            var y = x.clone();
            y[.., 2..5] += direction * 2.5f;
            return y;
        }));
        Assert.True(ranged.allclose(rangedByHand, rtol: 0, atol: 1e-6));
        // Causal model: columns before 2 are untouched.
        Assert.True(ranged[.., ..2].equal(clean[.., ..2]).all().item<bool>());
        Assert.Equal(0, model.HookCount);
    }

    [Fact]
    public void Coefficient_zero_is_a_no_op()
    {
        using var model = Model();
        using var tokens = Tokens(2, 6, 4);
        using var v = SteeringVector.FromDirection("resid_pre0", torch.ones(16) * 100);
        using var clean = model.forward(tokens);
        using var zero = Steering.Run(model, tokens, v, 0);
        Assert.True(zero.equal(clean).all().item<bool>());
        using var prompt = Tokens(2, 3, 5);
        using var plain = Generation.Generate(model, prompt, GenerationOptions.Greedy(6));
        using var steered = Steering.Generate(model, prompt, v, 0, GenerationOptions.Greedy(6));
        Assert.True(plain.Tokens.equal(steered.Tokens).all().item<bool>());
        Assert.True(plain.LogProbs.equal(steered.LogProbs).all().item<bool>());
    }

    [Fact]
    public void Steered_generation_is_the_same_with_and_without_the_key_value_cache()
    {
        using var model = Model();
        using var prompt = Tokens(2, 4, 6);
        torch.random.manual_seed(8);
        using var v = SteeringVector.FromDirection("resid_pre1", torch.randn(16) * 3);
        var greedy = GenerationOptions.Greedy(8);
        using var plain = Generation.Generate(model, prompt, greedy);
        foreach (var positions in new[] { SteeringPositions.All, SteeringPositions.Range(1, 6), SteeringPositions.Generated, SteeringPositions.LastPromptToken })
        {
            using var cached = Steering.Generate(model, prompt, v, 4, greedy, positions: positions);
            using var uncached = Steering.Generate(model, prompt, v, 4, greedy with { UseCache = false }, positions: positions);
            Assert.True(cached.Tokens.equal(uncached.Tokens).all().item<bool>(), $"{positions}: cached and uncached steered generations differ");
            Assert.True(cached.LogProbs.allclose(uncached.LogProbs, rtol: 1e-4, atol: 1e-5), $"{positions}: log-probs differ");
            Assert.False(cached.LogProbs.allclose(plain.LogProbs), $"{positions}: steering changed nothing (did the hook fire?)");
        }
        // Cached steps see the hook, on the new column only: the first pass is the 4-column prompt, then one column per step.
        var widths = new List<long>();
        using (model.Hooks(("blocks.1.hook_resid_pre", (x, _) => { widths.Add(x.shape[1]); return null; })))
        using (Steering.Generate(model, prompt, v, 4, greedy)) { }
        Assert.Equal(new long[] { 4, 1, 1, 1, 1, 1, 1, 1 }, widths);
        Assert.Equal(0, model.HookCount);
    }

    [Fact]
    public void Steered_sampling_is_deterministic_under_a_seed()
    {
        using var model = Model();
        using var prompt = Tokens(3, 2, 7);
        using var v = SteeringVector.FromDirection("resid_pre1", torch.ones(16));
        var options = new GenerationOptions { MaxNewTokens = 10, Seed = 123, Temperature = 1.5 };
        using var a = Steering.Generate(model, prompt, v, 2, options);
        torch.random.manual_seed(999);                                           // the global generator does not matter
        using var b = Steering.Generate(model, prompt, v, 2, options);
        using var c = Steering.Generate(model, prompt, v, 2, options with { Seed = 124 });
        Assert.True(a.Tokens.equal(b.Tokens).all().item<bool>());
        Assert.False(a.Tokens.equal(c.Tokens).all().item<bool>());
    }

    [Fact]
    public void The_sweep_table_reports_the_change_from_the_unsteered_run()
    {
        using var model = Model();
        using var tokens = Tokens(4, 5, 8);
        torch.random.manual_seed(2);
        using var direction = torch.randn(16);
        using var v = SteeringVector.FromDirection("resid_pre1", direction);
        Tensor Metric(Tensor logits) => Steering.LogitDifference(logits, -1, 3, 1);
        var table = SteeringSweep.Logits(model, tokens, v, new[] { -2.0, 0, 2 }, Metric, metricName: "logit_diff");
        Assert.Equal(new[] { "coefficient", "logit_diff", "logit_diff_stderr", "change", "n" }, table.Columns.Select(c => c.Name));
        double Expected(double c)
        {
            using var logits = model.RunWithHooks(tokens, ("blocks.1.hook_resid_pre", (x, _) => x + direction * (float)c));
            var last = logits[.., -1];
            return (last[.., 3] - last[.., 1]).mean().item<float>();
        }
        double baseline = Expected(0);
        for (int i = 0; i < 3; i++)
        {
            double c = (double)table["coefficient"][i]!;
            Assert.Equal(Expected(c), (double)table["logit_diff"][i]!, 1e-5);
            Assert.Equal(Expected(c) - baseline, (double)table["change"][i]!, 1e-5);
            Assert.Equal(4, (int)table["n"][i]!);
        }
        Assert.Equal(0.0, (double)table["change"][1]!);
    }

    [Fact]
    public void The_logit_difference_is_target_minus_baseline_at_the_position()
    {
        using var logits = tensor(new[] { 0f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 }, new long[] { 2, 2, 3 });
        using var d = Steering.LogitDifference(logits, -1, targetToken: 2, baselineToken: 0);
        Assert.Equal(new[] { 2f, 2f }, d.data<float>().ToArray());
        using var d0 = Steering.LogitDifference(logits, 0, targetToken: 0, baselineToken: 1);
        Assert.Equal(new[] { -1f, -1f }, d0.data<float>().ToArray());
    }

    [Fact]
    public void A_vector_of_the_wrong_shape_fails_naming_the_hook_and_the_shape()
    {
        using var model = Model();
        using var tokens = Tokens(1, 4, 9);
        using var v = SteeringVector.FromDirection("resid_pre1", torch.ones(5));
        var e = Assert.Throws<InvalidOperationException>(() => Steering.Run(model, tokens, v, 1));
        Assert.Contains("blocks.1.hook_resid_pre", e.Message);
        Assert.Contains("d_model", e.Message);
        Assert.Equal(0, model.HookCount);
        using var bad = SteeringVector.FromDirection("resid_pre9", torch.ones(16));
        Assert.Throws<ArgumentException>(() => Steering.Generate(model, tokens, bad, 1, GenerationOptions.Greedy(2)));
    }
}
