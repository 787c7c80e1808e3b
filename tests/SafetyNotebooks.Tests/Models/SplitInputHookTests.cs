using System.Text.Json;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>
/// TransformerLens' optional component-input hooks (<c>use_split_qkv_input</c>, <c>use_attn_in</c>, <c>use_hook_mlp_in</c>):
/// switching them on leaves the outputs unchanged, their shapes follow TL (k/v inputs have n_key_value_heads heads), they
/// fire in <see cref="HookedTransformer.HookNames"/> order, and patching one head's query input moves only that head's pattern.
/// </summary>
public class SplitInputHookTests
{
    static SplitInputHookTests() => TorchRuntime.EnsureLoaded();

    static HookedTransformer Load(string fixture) => HookedTransformer.FromPretrained(TestPaths.Fixture(fixture));

    static Tensor Tokens(int seed, int batch = 2, int pos = 7)
    {
        var rng = new Random(seed);
        return tensor(Enumerable.Range(0, batch * pos).Select(_ => (long)rng.Next(3, 512)).ToArray(), new long[] { batch, pos });
    }

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData("hf-gpt2-tiny", "split")]
    [InlineData("hf-gpt2-tiny", "attn_in")]
    [InlineData("hf-llama-tiny", "split")]
    [InlineData("hf-gptneox-tiny", "split")]
    [InlineData("hf-gptneox-tiny", "attn_in")]
    public void Flags_on_leave_the_logits_unchanged(string fixture, string mode)
    {
        using var model = Load(fixture);
        using var scope = NewDisposeScope();
        var tokens = Tokens(1);
        var reference = model.forward(tokens);
        if (mode == "split") model.SetUseSplitQkvInput(true); else model.SetUseAttnIn(true);
        model.SetUseHookMlpIn(true);
        var (logits, cache) = model.RunWithCache(tokens);
        Assert.True(MaxAbs(logits, reference) < 1e-5, $"{fixture} {mode}: max |Δlogit| = {MaxAbs(logits, reference)}");

        int nHeads = model.Cfg.NHeads, nKv = model.Cfg.EffectiveNKeyValueHeads, d = model.Cfg.DModel;
        if (mode == "split")
        {
            Assert.Equal(new long[] { 2, 7, nHeads, d }, cache["blocks.1.hook_q_input"].shape);
            Assert.Equal(new long[] { 2, 7, nKv, d }, cache["blocks.1.hook_k_input"].shape);
            Assert.Equal(new long[] { 2, 7, nKv, d }, cache["blocks.1.hook_v_input"].shape);
            // Every head's input is the block input itself (a copy per head).
            Assert.Equal(0.0, MaxAbs(cache["blocks.1.hook_k_input"], cache["blocks.1.hook_resid_pre"].unsqueeze(2)));
        }
        else Assert.Equal(new long[] { 2, 7, nHeads, d }, cache["blocks.1.hook_attn_in"].shape);
        Assert.Equal(new long[] { 2, 7, d }, cache["blocks.0.hook_mlp_in"].shape);
        var mlpReads = model.Cfg.ParallelAttnMlp ? "blocks.0.hook_resid_pre" : "blocks.0.hook_resid_mid";
        Assert.Equal(0.0, MaxAbs(cache["blocks.0.hook_mlp_in"], cache[mlpReads]));
        if (fixture == "hf-llama-tiny") Assert.Equal(2, nKv);   // grouped-query: 4 query heads, 2 key/value heads
    }

    [Theory]
    [InlineData("hf-llama-tiny")]
    [InlineData("hf-gptneox-tiny")]
    public void Flags_on_keep_padded_batches_and_cached_generation_unchanged(string fixture)
    {
        using var model = Load(fixture);
        using var scope = NewDisposeScope();
        // Left-padded batch: row 0 has two pad positions (id 0, mask 0).
        var tokens = Tokens(5, batch: 2, pos: 6);
        tokens[0, ..2] = tensor(0L);
        var mask = ones(2, 6, ScalarType.Int64);
        mask[0, ..2] = tensor(0L);
        var options = new GenerationOptions { MaxNewTokens = 5, DoSample = false, UseCache = true };
        var reference = model.forward(tokens, attentionMask: mask);
        using var refGen = Generation.Generate(model, tokens, options, mask);
        model.SetUseSplitQkvInput(true).SetUseHookMlpIn(true);
        var logits = model.forward(tokens, attentionMask: mask);
        Assert.True(MaxAbs(logits[.., 2..], reference[.., 2..]) < 1e-5, $"max |Δlogit| = {MaxAbs(logits[.., 2..], reference[.., 2..])}");
        using var gen = Generation.Generate(model, tokens, options, mask);
        Assert.Equal(refGen.Tokens.data<long>().ToArray(), gen.Tokens.data<long>().ToArray());
    }

    [Fact]
    public void Patching_one_heads_query_input_changes_only_that_heads_pattern()
    {
        using var model = Load("hf-gpt2-tiny").SetUseSplitQkvInput(true);
        using var scope = NewDisposeScope();
        var tokens = Tokens(2, batch: 1, pos: 6);
        const int head = 1;
        var (_, clean) = model.RunWithCache(tokens);
        var other = clean["blocks.0.hook_resid_pre"].flip(1);            // the residual stream in reverse order: a different query input
        ActivationCache patched;
        using (model.Hooks(("blocks.0.hook_q_input", (x, _) =>
               {
                   var y = x.clone();
                   y[.., .., head] = other[0];
                   return y;
               })))
            (_, patched) = model.RunWithCache(tokens);

        var cleanPattern = clean["blocks.0.attn.hook_pattern"];          // [1, head, q, k]
        var patchedPattern = patched["blocks.0.attn.hook_pattern"];
        for (int h = 0; h < model.Cfg.NHeads; h++)
            if (h != head) Assert.True(MaxAbs(patchedPattern[.., h], cleanPattern[.., h]) < 1e-6, $"head {h} moved");
        Assert.True(MaxAbs(patchedPattern[.., head], cleanPattern[.., head]) > 1e-3, "the patched head did not move");

        // Hand-computed: softmax(causal((ln1(other) W_Q[h] + b_Q[h]) · k_h^T / sqrt(d_head))) with the clean keys.
        var attn = model.blocks[0].attn;
        var q = model.blocks[0].ln1!.Apply(other[0]).matmul(attn.W_Q[head]) + attn.b_Q[head];  // [q, d_head]
        var k = clean["blocks.0.attn.hook_k"][0, .., head];                                      // [k, d_head]
        var scores = q.matmul(k.T) / Math.Sqrt(model.Cfg.DHead);
        scores = scores.masked_fill(ones(6, 6, ScalarType.Bool).triu(1), double.NegativeInfinity);
        Assert.True(MaxAbs(patchedPattern[0, head], scores.softmax(-1)) < 1e-5);
        // Downstream of the patched head, layer 1 changes (the edit is real, not a copy that is thrown away).
        var moved = MaxAbs(patched["blocks.1.hook_resid_pre"], clean["blocks.1.hook_resid_pre"]);
        Assert.True(moved > 1e-6, $"layer 1 input moved by {moved}");
        Assert.Equal(0.0, MaxAbs(patched["blocks.0.hook_resid_pre"], clean["blocks.0.hook_resid_pre"]));
    }

    [Theory]
    [InlineData("hf-gpt2-tiny", "split")]
    [InlineData("hf-llama-tiny", "split")]
    [InlineData("hf-gptneox-tiny", "attn_in")]
    public void Input_hooks_are_listed_in_the_order_they_fire(string fixture, string mode)
    {
        using var model = Load(fixture);
        if (mode == "split") model.SetUseSplitQkvInput(true); else model.SetUseAttnIn(true);
        model.SetUseHookMlpIn(true);
        using var scope = NewDisposeScope();
        var fired = new List<string>();
        model.RunWithHooks(Tokens(3), _ => true, (x, hp) => { if (!fired.Contains(hp.Name)) fired.Add(hp.Name); return null; });
        var names = model.HookNames.Where(fired.Contains).ToList();
        Assert.Equal(names, fired);
        var block0 = model.HookNames.Where(n => n.StartsWith("blocks.0.")).ToList();
        var expected = (mode == "split"
                ? new[] { "hook_resid_pre", "hook_q_input", "hook_k_input", "hook_v_input", "ln1.hook_scale", "attn.hook_q" }
                : new[] { "hook_resid_pre", "hook_attn_in", "ln1.hook_scale", "attn.hook_q" })
            .Concat(new[] { "hook_attn_out", "hook_mlp_in", "ln2.hook_scale", "mlp.hook_pre", "hook_mlp_out", "hook_resid_post" })
            .Select(n => "blocks.0." + n).ToList();
        Assert.Equal(expected, block0.Where(expected.Contains).ToList());
        Assert.Equal(expected.Count, block0.Count(expected.Contains));
    }

    [Fact]
    public void Input_hooks_are_absent_when_off_and_naming_one_says_which_flag_to_set()
    {
        using var model = Load("hf-gpt2-tiny");
        Assert.DoesNotContain(model.HookNames, n => n.EndsWith("_input") || n.EndsWith("hook_attn_in") || n.EndsWith("hook_mlp_in"));
        var e = Assert.Throws<ArgumentException>(() => model.GetHookPoint("blocks.0.hook_q_input"));
        Assert.Contains("SetUseSplitQkvInput(true)", e.Message);
        e = Assert.Throws<ArgumentException>(() => model.GetHookPoint("blocks.0.hook_mlp_in"));
        Assert.Contains("SetUseHookMlpIn(true)", e.Message);

        // Switching a flag off while a hook is attached would silently drop the hook: refused.
        model.SetUseSplitQkvInput(true);
        model.AddHook("blocks.1.hook_v_input", (x, _) => x);
        var off = Assert.Throws<InvalidOperationException>(() => model.SetUseSplitQkvInput(false));
        Assert.Contains("blocks.1.hook_v_input", off.Message);
        model.ResetHooks();
        model.SetUseSplitQkvInput(false);
        Assert.DoesNotContain(model.HookNames, n => n.EndsWith("hook_q_input"));
    }

    [Fact]
    public void Flags_round_trip_through_the_config()
    {
        var cfg = HookedTransformerConfig.AttnOnly2L() with { UseSplitQkvInput = true, UseHookMlpIn = true };
        var back = JsonSerializer.Deserialize<HookedTransformerConfig>(JsonSerializer.Serialize(cfg))!;
        Assert.True(back.UseSplitQkvInput);
        Assert.True(back.UseHookMlpIn);
        Assert.False(back.UseAttnIn);
        using var model = new HookedTransformer(back);
        Assert.Contains("blocks.1.hook_q_input", model.HookNames);
        Assert.DoesNotContain("blocks.1.hook_mlp_in", model.HookNames);   // attention-only: no MLP to read it
        model.SetUseSplitQkvInput(false).SetUseAttnIn(true);
        Assert.False(model.Cfg.UseSplitQkvInput);
        Assert.True(model.Cfg.UseAttnIn);
        Assert.Contains("blocks.0.hook_attn_in", model.HookNames);
    }

    [Fact]
    public void Incompatible_flags_are_refused_with_the_fix()
    {
        var both = Assert.Throws<ArgumentException>(() => (HookedTransformerConfig.AttnOnly2L() with { UseAttnIn = true, UseSplitQkvInput = true }).Validate());
        Assert.Contains("set only one of them", both.Message);
        using var llama = Load("hf-llama-tiny");
        var gqa = Assert.Throws<ArgumentException>(() => llama.SetUseAttnIn(true));
        Assert.Contains("use UseSplitQkvInput instead", gqa.Message);
        Assert.False(llama.Cfg.UseAttnIn);
    }

    /// <summary>
    /// With split inputs ln1's cached scale is per head [batch, pos, head, 1]; ApplyLnToStack on layer 1 must still equal the
    /// hand-computed LayerNorm of the residual stream, (x - mean) / sqrt(var + eps) ∘ w (the stack sums to hook_resid_pre).
    /// </summary>
    [Theory]
    [InlineData("split")]
    [InlineData("attn_in")]
    public void Apply_ln_to_stack_with_split_inputs_equals_the_hand_computed_layer_norm(string mode)
    {
        using var model = Load("hf-gpt2-tiny");
        if (mode == "split") model.SetUseSplitQkvInput(true); else model.SetUseAttnIn(true);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (_, cache) = model.RunWithCache(Tokens(5));
        using (cache)
        {
            var x = cache["blocks.1.hook_resid_pre"];                           // [2, 7, d]
            var centered = x - x.mean(new long[] { -1 }, keepdim: true);
            var hand = centered / (centered.pow(2).mean(new long[] { -1 }, keepdim: true) + model.Cfg.LayerNormEps).sqrt() * model.blocks[1].ln1!.w!;
            var (stack, _) = cache.DecomposeResid(1, applyLn: true);            // [c, 2, 7, d]
            Assert.True(MaxAbs(stack.sum(dim: 0), hand) < 1e-4, $"{mode}: max |Δ| = {MaxAbs(stack.sum(dim: 0), hand)}");
            var (raw, _) = cache.DecomposeResid(1);
            var last = cache.ApplyLnToStack(raw.select(2, -1), 1, posSlice: TensorIndex.Single(-1));
            Assert.True(MaxAbs(last.sum(dim: 0), hand.select(1, -1)) < 1e-4, $"{mode} posSlice -1: max |Δ| = {MaxAbs(last.sum(dim: 0), hand.select(1, -1))}");
        }
    }

    [Fact]
    public void Apply_ln_to_stack_refuses_split_inputs_that_a_hook_edited_or_that_were_not_cached()
    {
        using var model = Load("hf-gpt2-tiny").SetUseSplitQkvInput(true);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var tokens = Tokens(6);
        ActivationCache edited;
        using (model.Hooks(("blocks.1.hook_q_input", (x, hp) => x * tensor(Enumerable.Range(0, (int)x.shape[2]).Select(h => h == 1 ? 2f : 1f).ToArray()).reshape(-1, 1))))
            (_, edited) = model.RunWithCache(tokens);
        using (edited)
        {
            var (stack, _) = edited.DecomposeResid(1);
            var e = Assert.Throws<InvalidOperationException>(() => edited.ApplyLnToStack(stack, 1));
            Assert.Contains("'blocks.1.hook_q_input' differs", e.Message);
            // Layer 0 was not edited: still fine; the MLP input (ln2) and the final norm are not split.
            edited.ApplyLnToStack(edited.DecomposeResid(0).Stack, 0);
            edited.ApplyLnToStack(stack, 1, mlpInput: true);
        }
        var (_, partial) = model.RunWithCache(tokens, n => !n.EndsWith("hook_k_input"));
        using (partial)
        {
            var e = Assert.Throws<KeyNotFoundException>(() => partial.ApplyLnToStack(partial.DecomposeResid(1).Stack, 1));
            Assert.Contains("'blocks.1.hook_k_input'", e.Message);
            Assert.Contains("SetUseSplitQkvInput(false)", e.Message);
        }
    }
}
