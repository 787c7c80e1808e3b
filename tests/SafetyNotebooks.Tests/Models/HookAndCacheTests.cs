using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>Hook and cache invariants, checked against hand computations on the tiny GPT-2 fixture.</summary>
public class HookAndCacheTests
{
    static HookAndCacheTests() => TorchRuntime.EnsureLoaded();

    static readonly Lazy<HookedTransformer> Model = new(Gpt2ParityTests.LoadFixtureModel);
    static Tensor Tokens => Gpt2ParityTests.InputIds;

    static void Close(Tensor expected, Tensor actual, double tol = 1e-5, string what = "")
    {
        Assert.Equal(expected.shape, actual.shape);
        var d = (expected - actual).abs().max().item<float>();
        Assert.True(d <= tol, $"{what}: max |Δ| = {d} ≥ {tol}");
    }

    [Fact]
    public void Patterns_are_causal_and_rows_sum_to_one()
    {
        using var _ = no_grad();
        var (_, cache) = Model.Value.RunWithCache(Tokens, n => n.EndsWith("hook_pattern"));
        using (cache)
        {
            for (int l = 0; l < 2; l++)
            {
                var p = cache["pattern", l];                                          // [batch, head, q, k]
                Assert.Equal(new long[] { 2, 4, 12, 12 }, p.shape);
                Close(ones(2, 4, 12), p.sum(-1), 1e-5, "row sums");
                var above = p.triu(1);
                Assert.Equal(0f, above.abs().max().item<float>());
            }
        }
    }

    [Fact]
    public void Residual_stream_adds_up()
    {
        using var _ = no_grad();
        var (_, cache) = Model.Value.RunWithCache(Tokens, _ => true); // a filter that passes everything also caches hook_result
        using (cache)
        {
            Close(cache["embed"] + cache["pos_embed"], cache["resid_pre", 0], 1e-6, "embed + pos");
            for (int l = 0; l < 2; l++)
            {
                Close(cache["resid_pre", l] + cache["attn_out", l], cache["resid_mid", l], 1e-6, "resid_mid");
                Close(cache["resid_mid", l] + cache["mlp_out", l], cache["resid_post", l], 1e-6, "resid_post");
                var b_O = Model.Value.blocks[l].attn.b_O;
                Close(cache["result", l].sum(2) + b_O, cache["attn_out", l], 1e-5, "Σ heads result + b_O");
                Assert.Equal(new long[] { 2, 12, 4, 32 }, cache["result", l].shape);
                Assert.Equal(new long[] { 2, 12, 4, 8 }, cache["z", l].shape);
                Assert.Equal(new long[] { 2, 12, 4, 8 }, cache["q", l].shape);
                Assert.Equal(new long[] { 2, 12, 128 }, cache["post", l].shape);
                Assert.Equal(new long[] { 2, 12, 1 }, cache["scale", l, "ln1"].shape);
            }
        }
    }

    [Fact]
    public void Decompose_resid_and_head_results_sum_to_the_residual()
    {
        using var _ = no_grad();
        var (_, cache) = Model.Value.RunWithCache(Tokens);
        using (cache)
        {
            var (stack, labels) = cache.DecomposeResid();
            Assert.Equal(new[] { "embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out" }, labels);
            Close(cache["resid_post", 1], stack.sum(new long[] { 0 }), 1e-5, "final");
            var (stack1, labels1) = cache.DecomposeResid(layer: 1);
            Assert.Equal(4, labels1.Length);
            Close(cache["resid_pre", 1], stack1.sum(new long[] { 0 }), 1e-5, "layer 1");

            var (heads, headLabels) = cache.StackHeadResults();
            Assert.Equal(new[] { "L0H0", "L0H1", "L0H2", "L0H3", "L1H0", "L1H1", "L1H2", "L1H3" }, headLabels);
            Close(cache["attn_out", 1] - Model.Value.blocks[1].attn.b_O, heads.narrow(0, 4, 4).sum(new long[] { 0 }), 1e-5, "layer 1 heads");

            var (acc, accLabels) = cache.AccumulatedResid(inclMid: true);
            Assert.Equal(new[] { "0_pre", "0_mid", "1_pre", "1_mid", "final_post" }, accLabels);
            Close(cache["resid_post", 1], acc.select(0, 4), 0, "final_post");

            // ApplyLnToStack (which applies ln_final's weight on a raw model) plus the bias reproduces ln_final's output.
            var lnf = Model.Value.ln_final!;
            var normed = cache.ApplyLnToStack(acc.narrow(0, 4, 1)).select(0, 0) + lnf.b!;
            Close(cache["ln_final.hook_normalized"] * lnf.w! + lnf.b!, normed, 1e-5, "ApplyLnToStack");
        }
    }

    [Fact]
    public void Caching_everything_leaves_out_per_head_results_unless_asked_for_as_in_TransformerLens()
    {
        using var _ = no_grad();
        using var model = Gpt2ParityTests.LoadFixtureModel();
        var resultNames = model.HookNames.Where(n => n.EndsWith(".attn.hook_result")).ToArray();
        Assert.Equal(model.Cfg.NLayers, resultNames.Length);
        var (_, plain) = model.RunWithCache(Tokens);
        using (plain)
        {
            Assert.Equal(model.HookNames.Count - model.Cfg.NLayers, plain.Count);
            Assert.DoesNotContain(plain.Keys, k => k.EndsWith("hook_result"));
            var e = Assert.Throws<KeyNotFoundException>(() => plain["result", 0]);
            Assert.Contains("SetUseAttnResult(true)", e.Message);
            // Still available without it: z · W_O per head, plus b_O, is attn_out.
            var (heads, _) = plain.StackHeadResults();                           // [layer·head, batch, pos, d_model]
            var layer0 = heads.narrow(0, 0, model.Cfg.NHeads).sum(new long[] { 0 }) + model.blocks[0].attn.b_O;
            Close(plain["attn_out", 0], layer0, 1e-5, "Σ heads (from z) + b_O");
        }
        Assert.Same(model, model.SetUseAttnResult(true));
        Assert.True(model.Cfg.UseAttnResult);
        var (_, withResult) = model.RunWithCache(Tokens);
        using (withResult)
        {
            Assert.Equal(model.HookNames.Count, withResult.Count);
            Close(withResult["result", 0].sum(new long[] { 2 }) + model.blocks[0].attn.b_O, withResult["attn_out", 0], 1e-5, "Σ heads result + b_O");
        }
        model.SetUseAttnResult(false);
        var (_, named) = model.RunWithCache(Tokens, n => n == resultNames[1]);  // a filter that names it still caches it
        using (named) Assert.Equal(new[] { resultNames[1] }, named.Keys);
    }

    [Fact]
    public void Head_results_can_be_computed_from_z_when_result_is_not_cached()
    {
        using var _ = no_grad();
        var (_, full) = Model.Value.RunWithCache(Tokens, n => n.Contains("hook_result"));
        var (_, zOnly) = Model.Value.RunWithCache(Tokens, n => n.EndsWith("hook_z"));
        using (full) using (zOnly)
            Close(full.StackHeadResults().Stack, zOnly.StackHeadResults().Stack, 1e-5, "from z");
    }

    [Fact]
    public void Cache_holds_only_filtered_names_and_detached_tensors()
    {
        var (_, cache) = Model.Value.RunWithCache(Tokens, n => n.EndsWith("hook_pattern"));
        using (cache)
        {
            Assert.Equal(new[] { "blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern" }, cache.Keys.OrderBy(k => k));
            Assert.False(cache["pattern0"].requires_grad);
            var e = Assert.Throws<KeyNotFoundException>(() => cache["resid_pre", 0]);
            Assert.Contains("not cached", e.Message);
        }
        Assert.Equal(0, Model.Value.HookCount);
    }

    [Fact]
    public void Shorthand_names_resolve_like_TransformerLens()
    {
        Assert.Equal("blocks.0.attn.hook_pattern", Utils.GetActName("pattern", 0));
        Assert.Equal("blocks.3.hook_resid_pre", Utils.GetActName("resid_pre", 3));
        Assert.Equal("blocks.3.hook_resid_pre", Utils.GetActName("resid_pre3"));
        Assert.Equal("hook_embed", Utils.GetActName("embed"));
        Assert.Equal("blocks.1.ln2.hook_normalized", Utils.GetActName("normalized", 1, "ln2"));
        Assert.Equal("ln_final.hook_scale", Utils.GetActName("scale"));
        Assert.Equal("blocks.2.mlp.hook_post", Utils.GetActName("post", 2));
        Assert.Equal("blocks.0.attn.hook_k", Utils.GetActName("k0"));
        Assert.Equal("blocks.5.hook_mlp_out", Utils.GetActName("mlp_out", 5));
        Assert.Equal("blocks.0.attn.hook_z", Utils.GetActName("blocks.0.attn.hook_z"));
    }

    [Fact]
    public void Hook_names_cover_TransformerLens_hooks()
    {
        var names = Model.Value.HookNames;
        foreach (var n in new[] { "hook_embed", "hook_pos_embed", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post",
                     "blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v", "blocks.0.attn.hook_z", "blocks.0.attn.hook_attn_scores",
                     "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_result", "blocks.0.hook_attn_out", "blocks.0.mlp.hook_pre",
                     "blocks.0.mlp.hook_post", "blocks.0.hook_mlp_out", "blocks.0.ln1.hook_scale", "blocks.0.ln1.hook_normalized",
                     "blocks.0.ln2.hook_scale", "blocks.0.ln2.hook_normalized", "ln_final.hook_scale", "ln_final.hook_normalized" })
            Assert.Contains(n, names);
        Assert.Equal(2 + 2 * 18 + 2, names.Count);
    }

    [Fact]
    public void Zeroing_hook_changes_logits_and_hooks_are_removed_even_on_exception()
    {
        using var _ = no_grad();
        var m = Model.Value;
        var clean = m.forward(Tokens);
        int calls = 0;
        var ablated = m.RunWithHooks(Tokens, ("blocks.0.hook_mlp_out", (x, hp) => { calls++; return zeros_like(x); }));
        Assert.Equal(1, calls);
        Assert.True((clean - ablated).abs().max().item<float>() > 1e-3);
        Assert.Equal(0, m.HookCount);
        Close(clean, m.forward(Tokens), 0, "clean again");

        Assert.Throws<InvalidOperationException>(() =>
            m.RunWithHooks(Tokens, ("pattern0", (x, hp) => throw new InvalidOperationException("boom"))));
        Assert.Equal(0, m.HookCount);
        Close(clean, m.forward(Tokens), 0, "after exception");

        // Predicate form: zeroing every head's pattern leaves only biases in attention.
        var noAttn = m.RunWithHooks(Tokens, n => n.EndsWith("hook_pattern"), (x, hp) => zeros_like(x));
        Assert.True((clean - noAttn).abs().max().item<float>() > 1e-3);
        Assert.Equal(0, m.HookCount);
    }

    [Fact]
    public void Replacing_an_activation_with_itself_changes_nothing()
    {
        using var _ = no_grad();
        var m = Model.Value;
        var clean = m.forward(Tokens);
        var same = m.RunWithHooks(Tokens, n => true, (x, hp) => x * 1);
        Close(clean, same, 1e-5, "identity hooks everywhere");
    }

    [Fact]
    public void Unknown_hook_name_lists_close_names()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            Model.Value.RunWithHooks(Tokens, ("blocks.0.attn.hook_patern", (x, hp) => null)));
        Assert.Contains("blocks.0.attn.hook_pattern", e.Message);
        Assert.Contains("hook_patern", e.Message);
        Assert.Equal(0, Model.Value.HookCount);
    }

    [Fact]
    public void Permanent_hooks_survive_reset_unless_included()
    {
        var m = Model.Value;
        m.AddHook("embed", (x, hp) => null, permanent: true);
        m.AddHook(n => n.EndsWith("hook_q"), (x, hp) => null);
        Assert.Equal(3, m.HookCount);
        m.ResetHooks();
        Assert.Equal(1, m.HookCount);
        m.ResetHooks(includePermanent: true);
        Assert.Equal(0, m.HookCount);
    }

    [Fact]
    public void Gradients_flow_through_hooks_to_a_kept_activation()
    {
        var m = Model.Value;
        Tensor? kept = null;
        var logits = m.RunWithHooks(Tokens, ("ln_final.hook_normalized", (x, hp) =>
        {
            var y = x * 1;               // a replacing hook keeps the graph
            y.retain_grad();
            kept = HookPoint.Keep(y);
            return y;
        }));
        logits.sum().backward();
        Assert.NotNull(kept);
        var grad = kept!.grad;
        Assert.NotNull(grad);
        // hook_normalized fires before ln_final's affine map (TransformerLens): logits = (x ∘ w + b) @ W_U + b_U,
        // so d(Σ logits)/dx[b, p, :] = w ∘ Σ_v W_U[:, v] for every position.
        using var _ = no_grad();
        var expected = (m.ln_final!.w! * m.W_U.sum(1)).expand(2, 12, 32);
        Close(expected, grad!, 1e-3, "gradient");
        foreach (var p in m.parameters()) p.grad?.zero_();
        m.zero_grad();
        kept.Dispose();
    }

    [Fact]
    public void Undetached_cache_allows_gradients_with_respect_to_activations()
    {
        var m = Model.Value;
        var (logits, cache) = m.RunWithCache(Tokens, n => n == "ln_final.hook_normalized" || n == "blocks.0.hook_resid_pre", detach: false);
        using (cache)
        {
            Assert.True(cache["ln_final.hook_normalized"].requires_grad);
            var grads = TorchSharp.torch.autograd.grad(new[] { logits.sum() }, new[] { cache["ln_final.hook_normalized"] });
            using var _ = no_grad();
            Close((m.ln_final!.w! * m.W_U.sum(1)).expand(2, 12, 32), grads[0], 1e-3, "d Σlogits / d normalized = w ∘ Σ_v W_U");
        }
        m.zero_grad();
    }

    [Fact]
    public void Logit_attrs_of_decomposed_residual_recover_the_logits()
    {
        using var _ = no_grad();
        var m = Gpt2ParityTests.LoadFixtureModel().ProcessWeights();
        var (logits, cache) = m.RunWithCache(Tokens);
        using (cache)
        {
            var decomposed = cache.DecomposeResid();                                  // LogitAttrs applies ln_final's scale itself (as TL)
            var (attrs, labels) = cache.LogitAttrs(decomposed, Tokens);              // [components, batch, pos]
            Assert.Equal(decomposed.Labels, labels);
            Assert.Equal(new long[] { 6, 2, 12 }, attrs.shape);
            var chosen = logits.gather(2, Tokens.unsqueeze(2)).squeeze(2);           // [batch, pos]
            Close(chosen, attrs.sum(new long[] { 0 }) + m.b_U[Tokens], 1e-3, "Σ attrs + b_U");
        }
    }
}

public class ModelInputTests
{
    static ModelInputTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Hook_names_are_listed_in_forward_order()
    {
        var m = new HookedTransformer(new HookedTransformerConfig { NLayers = 1, DModel = 8, NHeads = 2, DHead = 4, DMlp = 16, NCtx = 8, DVocab = 10 });
        var fired = new List<string>();
        using (no_grad()) m.RunWithHooks(tensor(new long[] { 1, 2, 3 }), n => true, (x, hp) => { fired.Add(hp.Name); return null; });
        Assert.Equal(m.HookNames.Where(n => !n.EndsWith("hook_result")), fired.Where(n => !n.EndsWith("hook_result")));
        Assert.Equal(m.HookNames.Count, fired.Count);
    }

    [Fact]
    public void Bad_tokens_give_clear_errors_and_per_token_loss_averages_to_the_loss()
    {
        var m = new HookedTransformer(new HookedTransformerConfig { NLayers = 1, DModel = 8, NHeads = 2, DHead = 4, DMlp = 16, NCtx = 8, DVocab = 10, Seed = 2 });
        using var _ = no_grad();
        var e = Assert.Throws<ArgumentException>(() => m.forward(tensor(new long[] { 1, 10 })));
        Assert.Contains("DVocab", e.Message);
        e = Assert.Throws<ArgumentException>(() => m.forward(zeros(1, 9, ScalarType.Int64)));
        Assert.Contains("NCtx", e.Message);
        var tokens = randint(0, 10, new long[] { 3, 8 });
        var perToken = m.Loss(tokens, perToken: true);
        Assert.Equal(new long[] { 3, 7 }, perToken.shape);
        Assert.True(Math.Abs(perToken.mean().item<float>() - m.Loss(tokens).item<float>()) < 1e-6);
    }
}
