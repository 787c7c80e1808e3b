using SafetyNotebooks.Alignment;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

public class RolloutTests
{
    public RolloutTests() => TorchRuntime.EnsureLoaded();

    internal static HookedTransformerConfig Tiny => new() { NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 16, DVocab = 7, Seed = 3, InitRange = 0.2 };

    static float[] F(Tensor t) => t.to_type(ScalarType.Float32).data<float>().ToArray();

    /// <summary>A model whose every next-token distribution is (almost) all on <paramref name="token"/>: W_U = 0, b_U = 40 at that token.</summary>
    static HookedTransformer AlwaysEmits(long token)
    {
        var m = new HookedTransformer(Tiny);
        using (no_grad())
        {
            m.unembed.W_U.zero_();
            var b = new float[Tiny.DVocab];
            b[token] = 40;
            m.unembed.b_U.copy_(tensor(b));
        }
        return m;
    }

    // The value head reads the final residual stream after ln_final: with weight w and bias b,
    // V = ln_final(resid_post of the last block) · w + b, the same numbers RunWithCache's ln_final.hook_normalized gives
    // after the LayerNorm's affine (its w, b are 1 and 0 in a fresh model).
    [Fact]
    public void The_value_head_is_a_linear_read_of_the_normalized_final_residual_stream()
    {
        using var model = new HookedTransformer(Tiny);
        using var pv = new HookedTransformerWithValueHead(model);
        using (no_grad())
        {
            pv.VHead.weight.copy_(arange(16, dtype: ScalarType.Float32) / 10);
            pv.VHead.bias.fill_(0.5);
        }
        using var tokens = tensor(new long[] { 1, 2, 3, 4, 0, 6, 5, 1 }, new long[] { 2, 4 });
        var (logits, values) = pv.Forward(tokens);
        var (expectedLogits, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            var hidden = cache["ln_final.hook_normalized"];
            var expected = (hidden * (arange(16, dtype: ScalarType.Float32) / 10)).sum(-1) + 0.5;
            Assert.Equal(new long[] { 2, 4 }, values.shape);
            Assert.Equal(F(expected), F(values), (a, b) => Math.Abs(a - b) < 1e-4);
            Assert.Equal(F(expectedLogits), F(logits), (a, b) => Math.Abs(a - b) < 1e-5);
        }
        Assert.Equal(0, model.HookCount);
    }

    // The rollout's cheaper passes (no unembedding for the values; the prompt's positions not unembedded for the
    // log-probs) give the numbers of the full forward pass.
    [Fact]
    public void The_value_pass_and_the_reference_pass_match_the_full_forward_pass()
    {
        using var model = new HookedTransformer(Tiny);
        using var pv = new HookedTransformerWithValueHead(model);
        using (no_grad()) pv.VHead.weight.copy_(arange(16, dtype: ScalarType.Float32) / 10 - 0.7);
        using var tokens = tensor(new long[] { 1, 2, 3, 4, 5, 0, 6, 5, 1, 2 }, new long[] { 2, 5 });
        var (logits, values) = pv.Forward(tokens);
        Assert.Equal(F(values), F(pv.Values(tokens)), (a, b) => Math.Abs(a - b) < 1e-5);
        Assert.Equal(F(Rollouts.CompletionLogProbs(logits, tokens, 2, 0.7)), F(Rollouts.CompletionLogProbs(model, tokens, null, 2, 0.7)),
            (a, b) => Math.Abs(a - b) < 1e-5);
    }

    [Fact]
    public void The_frozen_reference_has_the_policy_s_outputs_and_no_trainable_parameters()
    {
        using var model = new HookedTransformer(Tiny);
        using var reference = Rollouts.FrozenReference(model);
        using var tokens = tensor(new long[] { 1, 2, 3, 4 }, new long[] { 1, 4 });
        Assert.Equal(F(model.forward(tokens)), F(reference.forward(tokens)));
        Assert.DoesNotContain(reference.parameters(), p => p.requires_grad);
        using (no_grad()) model.unembed.b_U.add_(1);                   // training the policy leaves the copy alone
        Assert.NotEqual(F(model.forward(tokens)), F(reference.forward(tokens)));
    }

    // A model that always emits token 5: with EOS = 5 every completion is [5] (ends at once, contains its EOS, no
    // penalty); with EOS = 6 (never emitted) every completion runs the full 3 tokens and pays the missing-EOS penalty.
    [Fact]
    public void Collect_ends_completions_at_eos_and_penalises_the_ones_without_it()
    {
        using var model = AlwaysEmits(5);
        using var pv = new HookedTransformerWithValueHead(model);
        using var reference = Rollouts.FrozenReference(model);
        using var prompts = tensor(new long[] { 1, 2, 3, 4 }, new long[] { 2, 2 });
        var seen = new List<long[]>();
        ScoreFunction score = c => { seen.Add(c.ResponseTokens(0)); return tensor(new[] { 1f, 2f }); };
        var options = new GenerationOptions { MaxNewTokens = 3, EosTokenId = 5, Seed = 1 };
        using (var r = Rollouts.Collect(pv, reference, new PromptBatch(prompts), score, options, missingEosPenalty: 0.5))
        {
            Assert.Equal(new long[] { 5 }, seen[0]);
            Assert.Equal(new[] { true, true }, r.ResponseMask.data<bool>().ToArray());
            Assert.Equal(new[] { 1f, 2f }, F(r.Scores));
            Assert.Equal(new[] { true, true }, r.ContainsEos.data<bool>().ToArray());
            Assert.Equal(new long[] { 2, 1 }, r.Values!.shape);
        }
        using (var r = Rollouts.Collect(pv, reference, new PromptBatch(prompts), score, options with { EosTokenId = 6 }, missingEosPenalty: 0.5))
        {
            Assert.Equal(new long[] { 5, 5, 5 }, seen[1]);
            Assert.Equal(new[] { 0.5f, 1.5f }, F(r.Scores));
            Assert.Equal(new long[] { 2, 3 }, r.LogProbs.shape);
            // The policy and its frozen copy agree, so the reference log-probs equal the policy's (≈ 0: p ≈ 1).
            Assert.Equal(F(r.LogProbs), F(r.RefLogProbs!), (a, b) => Math.Abs(a - b) < 1e-4);
        }
    }

    // Completions that end at different steps: everything after a row's EOS is masked (log-probs, values 0).
    [Fact]
    public void Collect_masks_every_per_token_tensor_after_each_completion_s_end()
    {
        using var model = new HookedTransformer(Tiny);
        using var pv = new HookedTransformerWithValueHead(model);
        using (no_grad()) pv.VHead.bias.fill_(1);                     // values are 1 on real tokens
        using var reference = Rollouts.FrozenReference(model);
        using var prompts = tensor(new long[] { 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2 }, new long[] { 6, 2 });
        var options = new GenerationOptions { MaxNewTokens = 8, EosTokenId = 0, Seed = 4 };
        using var r = Rollouts.Collect(pv, reference, new PromptBatch(prompts), _ => zeros(6), options);
        var mask = r.ResponseMask.data<bool>().ToArray();
        var resp = r.Responses.data<long>().ToArray();
        var lp = F(r.LogProbs);
        var v = F(r.Values!);
        int T = (int)r.ResponseLength;
        bool sawEnd = false;
        for (int b = 0; b < 6; b++)
        {
            int firstEos = Enumerable.Range(0, T).FirstOrDefault(t => resp[b * T + t] == 0, -1);
            for (int t = 0; t < T; t++)
            {
                bool real = firstEos < 0 || t <= firstEos;
                Assert.Equal(real, mask[b * T + t]);
                if (!real) { Assert.Equal(0f, lp[b * T + t]); Assert.Equal(0f, v[b * T + t]); sawEnd = true; }
                else { Assert.True(lp[b * T + t] < 0); Assert.Equal(1f, v[b * T + t], 5); }
            }
        }
        Assert.True(sawEnd, "the seed should make at least one completion end early; pick another seed if the model changed");
    }

    // logits over 3 positions, vocabulary 4: position 0 [0, 0, 9, 9], position 1 [1, 2, 0, 0]; tokens [0, 0, 2].
    //   P = 2: the one completion token (2) is read from position 1: log p = 0 − log(e + e² + 2).
    //   P = 1, temperature 2: token 0 from position 0 / 2 → −log(2 + 2e^4.5); token 2 from position 1 / 2 → −log(e^0.5 + e + 2).
    [Fact]
    public void Completion_log_probs_read_the_logits_one_position_before_each_completion_token()
    {
        using var logits = tensor(new[] { 0f, 0f, 9f, 9f, 1f, 2f, 0f, 0f, 0f, 0f, 0f, 0f }, new long[] { 1, 3, 4 });
        using var tokens = tensor(new long[] { 0, 0, 2 }, new long[] { 1, 3 });
        var lp = F(Rollouts.CompletionLogProbs(logits, tokens, 2));
        Assert.Equal(new[] { (float)-Math.Log(Math.E + Math.E * Math.E + 2) }, lp, (a, b) => Math.Abs(a - b) < 1e-5);
        var tempered = F(Rollouts.CompletionLogProbs(logits, tokens, 1, temperature: 2.0));
        Assert.Equal(new[] { (float)-Math.Log(2 + 2 * Math.Exp(4.5)), (float)-Math.Log(Math.Exp(0.5) + Math.E + 2) }, tempered, (a, b) => Math.Abs(a - b) < 1e-5);
        var e = Assert.Throws<ArgumentException>(() => Rollouts.CompletionLogProbs(logits, tokens, 3));
        Assert.Contains("contextLength", e.Message);
    }
}
