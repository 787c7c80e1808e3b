using System.Text.Json.Nodes;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>
/// TransformerLens-faithful analysis (issue 7): norms, logit attribution on raw and processed weights, negative layers,
/// scoped and backward hooks, gradient caches, neuron/full decompositions and FactoredMatrix. References are hand formulas,
/// finite differences or directly formed matrices.
/// </summary>
public class TransformerLensV2Tests
{
    static TransformerLensV2Tests() => TorchRuntime.EnsureLoaded();

    static Tensor Tokens => Gpt2ParityTests.InputIds;                          // [2, 12]

    static void Close(Tensor expected, Tensor actual, double tol, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        var d = (expected.to_type(ScalarType.Float64) - actual.to_type(ScalarType.Float64)).abs().max().item<double>();
        Assert.True(d <= tol, $"{what}: max |Δ| = {d} > {tol}");
    }

    /// <summary>The fixture with non-trivial norm weights and biases (HF initialises them to 1 and 0, which would hide bugs).</summary>
    static HookedTransformer RawModelWithAffineNorms()
    {
        var m = Gpt2ParityTests.LoadFixtureModel();
        var gen = new Generator(1234);
        using var _ = no_grad();
        foreach (var norm in m.blocks.SelectMany(b => new[] { b.ln1!, b.ln2! }).Append(m.ln_final!))
        {
            norm.w!.copy_(rand(new long[] { 32 }, generator: gen) + 0.5);
            norm.b!.copy_(randn(new long[] { 32 }, generator: gen) * 0.3);
        }
        return m;
    }

    static HookedTransformer TinyModel(NormalizationType norm = NormalizationType.LN) => new(new HookedTransformerConfig
    {
        NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 8, DVocab = 11, Normalization = norm, Seed = 7,
    });

    // ---- hook_normalized placement ------------------------------------------------------------------------------

    [Fact]
    public void Layer_norm_hook_normalized_is_the_centered_scaled_input_before_weight_and_bias()
    {
        using var _ = no_grad();
        var m = RawModelWithAffineNorms();
        // Both the fused path (only hook_normalized hooked) and the generic one (hook_scale hooked too).
        foreach (var filter in new Func<string, bool>[] { n => n.EndsWith("hook_normalized") || n.EndsWith("resid_pre"), _ => true })
        {
            var (logits, cache) = m.RunWithCache(Tokens, filter);
            using (cache)
            {
                var x = cache["resid_pre", 1];
                var c = x - x.mean(new long[] { -1 }, keepdim: true);
                var byHand = c / (c.pow(2).mean(new long[] { -1 }, keepdim: true) + 1e-5).sqrt();
                Close(byHand, cache["normalized", 1, "ln1"], 1e-5, "ln1.hook_normalized = (x - μ)/σ");
                Close(m.forward(Tokens), logits, 1e-5, "hooking hook_normalized leaves the logits unchanged");
            }
        }
    }

    [Fact]
    public void RMS_norm_hook_normalized_fires_before_the_weight()
    {
        using var _ = no_grad();
        var m = TinyModel(NormalizationType.RMS);
        m.ln_final!.w!.copy_(linspace(0.5, 2.0, 16));
        var tokens = tensor(new long[] { 1, 4, 2, 9, 3 }).unsqueeze(0);
        Tensor? resid = null, normalized = null;
        var logits = m.RunWithHooks(tokens,
            ("blocks.1.hook_resid_post", (x, _) => { resid = HookPoint.Keep(x.clone()); return null; }),
            ("ln_final.hook_normalized", (x, _) => { normalized = HookPoint.Keep(x.clone()); return null; }));
        var byHand = resid! / (resid!.pow(2).mean(new long[] { -1 }, keepdim: true) + 1e-5).sqrt();
        Close(byHand, normalized!, 1e-5, "x / rms(x)");
        Close(logits, matmul(byHand * m.ln_final.w!, m.W_U) + m.b_U, 1e-4, "logits = (normalized ∘ w) W_U + b_U");
    }

    // ---- FoldLayerNorm keeps hooks ------------------------------------------------------------------------------

    [Fact]
    public void Fold_layer_norm_keeps_temporary_and_permanent_norm_hooks()
    {
        using var _ = no_grad();
        var m = RawModelWithAffineNorms();
        var seen = new List<Tensor>();
        m.AddHook("blocks.0.ln1.hook_normalized", (x, _) => { seen.Add(HookPoint.Keep(x.clone())); return null; }, permanent: true);
        int scaleCalls = 0;
        m.AddHook("ln_final.hook_scale", (x, _) => { scaleCalls++; return null; });
        m.forward(Tokens);
        m.FoldLayerNorm();
        Assert.Equal(2, m.HookCount);
        m.forward(Tokens);
        Assert.Equal(2, seen.Count);
        Assert.Equal(2, scaleCalls);
        // hook_normalized fires before the affine map, so folding the map away leaves it unchanged.
        Close(seen[0], seen[1], 1e-5, "ln1.hook_normalized before vs after folding");
        m.ResetHooks();
        Assert.Equal(1, m.HookCount);                                          // the permanent one survives a plain reset
        m.ResetHooks(includePermanent: true);
    }

    // ---- ApplyLnToStack / LogitAttrs on raw and processed weights -----------------------------------------------

    [Fact]
    public void Apply_ln_to_stack_refuses_a_stack_that_would_broadcast_and_takes_a_position_slice()
    {
        using var _ = no_grad();
        var m = RawModelWithAffineNorms();
        var (_, cache) = m.RunWithCache(Tokens);
        using (cache)
        {
            var (stack, _) = cache.DecomposeResid();                            // [6, 2, 12, 32]
            var lastKeepDim = stack.narrow(2, 11, 1);                           // [6, 2, 1, 32]: used to broadcast to [6, 2, 12, 32]
            var e = Assert.Throws<ArgumentException>(() => cache.ApplyLnToStack(lastKeepDim));
            Assert.Contains("posSlice", e.Message);
            var full = cache.ApplyLnToStack(stack);
            Close(full.select(2, 11), cache.ApplyLnToStack(stack.select(2, 11), posSlice: TensorIndex.Single(-1)), 1e-6, "posSlice -1");
            Close(full.narrow(2, 11, 1), cache.ApplyLnToStack(lastKeepDim, posSlice: TensorIndex.Slice(11, 12)), 1e-6, "posSlice 11:12");
            Close(full.narrow(1, 1, 1), cache.ApplyLnToStack(stack, batchSlice: TensorIndex.Slice(1, 2)), 1e-6, "batchSlice");
        }
    }

    /// <summary>
    /// logits[b, p, t] = Σ_c LN(c)·W_U[:, t] + (ln_final.b·W_U[:, t] + b_U[t]) on the raw model, where LN(c) = (c - mean c)/scale ∘ w.
    /// </summary>
    [Fact]
    public void Logit_attributions_sum_to_the_logits_on_raw_and_processed_weights()
    {
        using var _ = no_grad();
        var raw = RawModelWithAffineNorms();
        var lnb = raw.ln_final!.b!.clone();
        var wu = raw.W_U.clone();
        var bu = raw.b_U.clone();
        var (logits, cache) = raw.RunWithCache(Tokens);
        var (attrs, labels) = cache.LogitAttrs(cache.DecomposeResid(), Tokens);   // [6, 2, 12]
        Assert.Equal(6, labels.Length);
        var chosen = logits.gather(2, Tokens.unsqueeze(2)).squeeze(2);          // [2, 12]
        var constant = (matmul(lnb, wu) + bu)[Tokens];                          // ln_final.b·W_U[:, t] + b_U[t]
        Close(chosen, attrs.sum(new long[] { 0 }) + constant, 2e-3, "Σ attrs + constant = logits (raw)");

        // Logit-difference attributions are the same numbers after EnableCompatibilityMode (folded and centered weights).
        var incorrect = (Tokens + 1) % 50257;
        var (diffRaw, _) = cache.LogitAttrs(cache.DecomposeResid(), Tokens, incorrect);
        var proc = RawModelWithAffineNorms().EnableCompatibilityMode();
        Assert.True(proc.CompatibilityMode);
        var (procLogits, procCache) = proc.RunWithCache(Tokens);
        using (cache) using (procCache)
        {
            var (diffProc, _) = procCache.LogitAttrs(procCache.DecomposeResid(), Tokens, incorrect);
            Close(diffRaw, diffProc, 2e-3, "logit-difference attributions, raw vs processed");
            var procChosen = procLogits.gather(2, Tokens.unsqueeze(2)).squeeze(2);
            var (attrsProc, _) = procCache.LogitAttrs(procCache.DecomposeResid(), Tokens);
            Close(procChosen, attrsProc.sum(new long[] { 0 }) + proc.b_U[Tokens], 2e-3, "Σ attrs + b_U = logits (processed)");

            // One position: a [c, batch, d] stack with tokens [batch] and posSlice.
            var (lastAttrs, _) = cache.LogitAttrs((cache.DecomposeResid().Stack.select(2, -1), labels), Tokens.select(1, -1), posSlice: TensorIndex.Single(-1));
            Close(attrs.select(2, -1), lastAttrs, 1e-5, "last position only");
        }
        var twice = Assert.Throws<InvalidOperationException>(() => proc.EnableCompatibilityMode());
        Assert.Contains("already", twice.Message);
    }

    [Fact]
    public void Compatibility_mode_keeps_log_probabilities()
    {
        using var _ = no_grad();
        var raw = RawModelWithAffineNorms();
        Assert.False(raw.CompatibilityMode);
        var before = raw.forward(Tokens).log_softmax(-1);
        var after = raw.EnableCompatibilityMode().forward(Tokens).log_softmax(-1);
        Close(before, after, 1e-4, "log-probs");
        Assert.Equal(NormalizationType.LNPre, raw.Cfg.Normalization);
    }

    [Fact]
    public void Logit_lens_applies_the_full_final_norm_to_each_layer()
    {
        using var _ = no_grad();
        var m = RawModelWithAffineNorms();
        var (logits, cache) = m.RunWithCache(Tokens);
        using (cache)
        {
            var (acc, labels) = cache.AccumulatedResid(applyLn: true);
            Assert.Equal("final_post", labels[^1]);
            // The final entry through the unembed is the model's logits.
            Close(logits, matmul(acc[-1], m.W_U) + m.b_U, 1e-4, "final_post → logits");
            var x = cache["resid_pre", 1];
            var c = x - x.mean(new long[] { -1 }, keepdim: true);
            var byHand = c / (c.pow(2).mean(new long[] { -1 }, keepdim: true) + 1e-5).sqrt() * m.ln_final!.w! + m.ln_final.b!;
            Close(byHand, acc[1], 1e-5, "1_pre normalized with its own statistics");
        }
    }

    // ---- negative layers ----------------------------------------------------------------------------------------

    [Fact]
    public void Negative_layers_count_from_the_end_in_the_cache_but_not_in_get_act_name()
    {
        using var _ = no_grad();
        var m = Gpt2ParityTests.LoadFixtureModel();
        var (_, cache) = m.RunWithCache(Tokens);
        using (cache)
        {
            Assert.Same(cache["pattern", 1], cache["pattern", -1]);
            Assert.Same(cache["scale", 0, "ln2"], cache["scale", -2, "ln2"]);
            Assert.Throws<ArgumentOutOfRangeException>(() => cache["pattern", -3]);
            Assert.Throws<ArgumentOutOfRangeException>(() => cache["pattern", 2]);
            Close(cache.AccumulatedResid().Stack, cache.AccumulatedResid(layer: -1).Stack, 0, "layer -1 = n_layers");
        }
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Utils.GetActName("pattern", -1));
        Assert.Contains("cache[", e.Message);
    }

    // ---- scoped hooks -------------------------------------------------------------------------------------------

    [Fact]
    public void Scoped_hooks_are_removed_at_the_end_of_the_block_even_on_error()
    {
        using var _ = no_grad();
        var m = TinyModel();
        var tokens = tensor(new long[] { 1, 2, 3 }).unsqueeze(0);
        int calls = 0;
        using (m.Hooks(("pattern0", (x, _) => { calls++; return null; }), ("blocks.1.hook_resid_pre", (x, _) => { calls++; return null; })))
        {
            Assert.Equal(2, m.HookCount);
            m.forward(tokens);
        }
        Assert.Equal(2, calls);
        Assert.Equal(0, m.HookCount);

        void ThrowInsideScope()
        {
            using var h = m.Hooks(("pattern0", (x, _) => null));
            Assert.Equal(1, m.HookCount);
            throw new InvalidOperationException("boom");
        }
        Assert.Throws<InvalidOperationException>(ThrowInsideScope);
        Assert.Equal(0, m.HookCount);

        // A bad name adds nothing.
        Assert.Throws<ArgumentException>(() => m.Hooks(("pattern0", (x, _) => null), ("no_such_hook", (x, _) => null)));
        Assert.Equal(0, m.HookCount);
    }

    // ---- gradients ----------------------------------------------------------------------------------------------

    [Fact]
    public void Gradient_cache_matches_finite_differences_and_the_hand_derived_ln_gradient()
    {
        var m = TinyModel();
        var tokens = tensor(new long[] { 1, 4, 2, 9, 3, 7 }).unsqueeze(0);
        const int target = 5;
        Func<Tensor, Tensor> metric = l => l[0, -1, target] - l[0, -1, 0];
        using var noGrad = no_grad();                                           // works under no_grad too
        var (logits, value, cache) = m.RunWithCacheAndGradients(tokens, metric);
        using (cache)
        {
            Assert.Equal((logits[0, -1, target] - logits[0, -1, 0]).item<float>(), value, 4);
            Assert.All(m.parameters(), p => Assert.True(p.grad is null || p.grad.abs().max().item<float>() == 0));

            // d metric / d ln_final.hook_normalized = w ∘ (W_U[:, t] - W_U[:, 0]) at the last position, 0 elsewhere.
            var g = m.ln_final!.w! * (m.W_U[.., target] - m.W_U[.., 0]);
            var gNorm = cache["ln_final.hook_normalized_grad"];
            Close(g, gNorm[0, -1], 1e-5, "grad at the last position");
            Assert.Equal(0f, gNorm[0].narrow(0, 0, tokens.shape[1] - 1).abs().max().item<float>());

            // Through LayerNorm by hand: y = (x - μ)/σ ⇒ dL/dx = (g - mean g - y·mean(g∘y)) / σ.
            var y = cache["ln_final.hook_normalized"][0, -1];
            var sigma = cache["ln_final.hook_scale"][0, -1];
            var dx = (g - g.mean() - y * (g * y).mean()) / sigma;
            Close(dx, cache["blocks.1.hook_resid_post_grad"][0, -1], 1e-5, "through LayerNorm");

            // Finite differences on an inner activation: <grad, v> ≈ (f(x + εv) - f(x - εv)) / 2ε.
            var v = randn(cache["blocks.0.attn.hook_z"].shape, generator: new Generator(3));
            double F(double eps)
            {
                var l = m.RunWithHooks(tokens, ("blocks.0.attn.hook_z", (x, _) => x + eps * v));
                return metric(l).item<float>();
            }
            const double h = 1e-2;
            var fd = (F(h) - F(-h)) / (2 * h);
            var analytic = (cache["blocks.0.attn.hook_z_grad"] * v).sum().item<float>();
            Assert.True(Math.Abs(fd - analytic) <= 2e-2 * Math.Max(1, Math.Abs(fd)), $"finite difference {fd} vs gradient {analytic}");
        }
    }

    [Fact]
    public void Gradient_cache_respects_causality()
    {
        var m = TinyModel();
        var tokens = tensor(new long[] { 1, 4, 2, 9 }).unsqueeze(0);
        var (_, _, cache) = m.RunWithCacheAndGradients(tokens, l => l[0, 1, 3], n => n.EndsWith("resid_pre"));
        using (cache)
        {
            Assert.Equal(4, cache.Count);                                       // 2 activations + 2 gradients
            var grad = cache["blocks.1.hook_resid_pre_grad"];                   // metric reads position 1 only
            Assert.True(grad[0, 1].abs().max().item<float>() > 0);
            Assert.Equal(0f, grad[0, 2..].abs().max().item<float>());
        }
    }

    [Fact]
    public void Backward_hooks_see_and_replace_gradients()
    {
        var m = TinyModel();
        var tokens = tensor(new long[] { 1, 4, 2, 9 }).unsqueeze(0);
        Func<Tensor, Tensor> metric = l => l[0, -1, 3];
        var (_, _, reference) = m.RunWithCacheAndGradients(tokens, metric, n => n == "blocks.1.hook_resid_pre");
        Tensor? seen = null;
        using (reference)
        using (m.Hooks(null, new (string, Func<Tensor, HookPoint, Tensor?>)[] { ("blocks.1.hook_resid_pre", (gr, _) => { seen = gr.clone(); return null; }) }))
        {
            m.Backward(metric(m.forward(tokens)));
            Assert.NotNull(seen);
            Close(reference["blocks.1.hook_resid_pre_grad"], seen!, 1e-6, "backward hook sees d metric / d activation");
        }
        m.zero_grad();

        // A replacing hook: zero gradient after ln_final cuts every path into the blocks, but b_U still gets its gradient.
        m.AddHook("ln_final.hook_normalized", (gr, _) => zeros_like(gr), dir: HookDirection.Bwd);
        m.Backward(metric(m.forward(tokens)));
        Assert.Equal(0f, m.blocks[0].attn.W_QKV.grad!.abs().max().item<float>());
        Assert.Equal(1f, m.b_U.grad![3].item<float>());
        m.ResetHooks();
        m.zero_grad();

        // A throwing backward hook surfaces after the pass.
        m.AddHook("ln_final.hook_normalized", (gr, _) => throw new FormatException("bad hook"), dir: HookDirection.Bwd);
        var e = Assert.Throws<InvalidOperationException>(() => m.Backward(metric(m.forward(tokens))));
        Assert.IsType<FormatException>(e.InnerException);
        Assert.Contains("ln_final.hook_normalized", e.Message);
        m.ResetHooks();
        m.zero_grad();
    }

    // ---- cache helpers ------------------------------------------------------------------------------------------

    [Fact]
    public void Stack_activation_remove_batch_dim_and_neuron_and_full_decompositions_add_up()
    {
        using var _ = no_grad();
        var m = Gpt2ParityTests.LoadFixtureModel();
        var (_, cache) = m.RunWithCache(Tokens);
        using (cache)
        {
            var patterns = cache.StackActivation("pattern");
            Close(stack(new[] { cache["pattern", 0], cache["pattern", 1] }), patterns, 0, "StackActivation");

            var (neurons, nLabels) = cache.StackNeuronResults();                // [2·128, 2, 12, 32]
            Assert.Equal(256, nLabels.Length);
            Assert.Equal("L1N0", nLabels[128]);
            Close(cache["mlp_out", 1] - m.blocks[1].mlp!.b_out, neurons.narrow(0, 128, 128).sum(new long[] { 0 }), 1e-4, "Σ neurons + b_out = mlp_out");
            var some = cache.GetNeuronResults(0, TensorIndex.Slice(3, 5));
            Close(cache["post", 0][.., .., 3].unsqueeze(-1) * m.blocks[0].mlp!.W_out[3], some.select(2, 0), 1e-6, "neuron 3 of layer 0");

            var (full, fLabels) = cache.GetFullResidDecomposition();
            Assert.Equal(new[] { "embed", "pos_embed", "bias" }, fLabels[^3..]);
            Assert.Equal(8 + 256 + 3, fLabels.Length);
            Close(cache["resid_post", 1], full.sum(new long[] { 0 }), 1e-4, "full decomposition sums to the final residual");
            var (coarse, cLabels) = cache.GetFullResidDecomposition(expandNeurons: false);
            Assert.Contains("1_mlp_out", cLabels);
            Close(cache["resid_post", 1], coarse.sum(new long[] { 0 }), 1e-4, "coarse decomposition");
            var (mid, _) = cache.GetFullResidDecomposition(layer: 1, mlpInput: true);
            Close(cache["resid_mid", 1], mid.sum(new long[] { 0 }), 1e-4, "MLP input of layer 1");
        }

        var (logitsOne, one) = m.RunWithCache(Tokens.narrow(0, 1, 1));
        var (logitsTwo, two) = m.RunWithCache(Tokens);
        using (one) using (two)
        {
            one.RemoveBatchDim();
            Assert.False(one.HasBatchDim);
            Assert.Equal(new long[] { 12, 32 }, one["resid_pre", 0].shape);
            var (a1, _) = one.LogitAttrs(one.DecomposeResid(), Tokens[1]);
            var (a2, _) = two.LogitAttrs(two.DecomposeResid(), Tokens);
            Close(a2.select(1, 1), a1, 1e-4, "attrs without a batch dimension");
            var e = Assert.Throws<InvalidOperationException>(() => two.RemoveBatchDim());
            Assert.Contains("batch of one", e.Message);
        }
    }

    // ---- FactoredMatrix -----------------------------------------------------------------------------------------

    [Fact]
    public void Factored_matrix_agrees_with_the_formed_product()
    {
        using var _ = no_grad();
        var gen = new Generator(11);
        var a = randn(new long[] { 3, 6, 2 }, dtype: ScalarType.Float64, generator: gen);
        var b = randn(new long[] { 3, 2, 6 }, dtype: ScalarType.Float64, generator: gen);
        var fm = new FactoredMatrix(a, b);
        var ab = matmul(a, b);
        Close(ab, fm.AB, 1e-12, "AB");
        Close(matmul(b, a), fm.BA, 1e-12, "BA");
        Close(ab.transpose(-2, -1), fm.T.AB, 1e-12, "T");
        Close(ab[1], fm[1].AB, 1e-12, "index");
        var svals = linalg.svdvals(ab).narrow(-1, 0, 2);                       // rank 2
        Close(svals, fm.S, 1e-10, "singular values");
        Close(ab, matmul(fm.U * fm.S.unsqueeze(-2), fm.V.transpose(-2, -1)), 1e-10, "U diag(S) Vᵀ");
        Close(linalg.norm(ab, dims: new long[] { -2, -1 }), fm.Norm(), 1e-10, "Frobenius norm");
        // Nonzero eigenvalues of AB = eigenvalues of BA: compare sorted |λ|.
        var eigFull = linalg.eigvals(ab).abs().sort(-1, descending: true).Values.narrow(-1, 0, 2);
        Close(eigFull, fm.Eigenvalues.abs().sort(-1, descending: true).Values, 1e-8, "eigenvalues");
        var m2 = randn(new long[] { 6, 4 }, dtype: ScalarType.Float64, generator: gen);
        Close(matmul(ab, m2), fm.MatMul(m2), 1e-10, "right multiplication");
        Assert.Throws<ArgumentException>(() => new FactoredMatrix(a, randn(3, 3, 6)));
        Assert.Throws<ArgumentException>(() => fm[0, 1, 2]);
    }

    [Fact]
    public void Model_OV_and_QK_are_the_per_head_circuits()
    {
        using var _ = no_grad();
        var m = Gpt2ParityTests.LoadFixtureModel();
        var ov = m.OV;
        Assert.Equal(new long[] { 2, 4, 32, 32 }, ov.Shape);
        var attn = m.blocks[1].attn;
        Close(matmul(attn.W_V[2], attn.W_O[2]), ov[1, 2].AB, 1e-6, "OV[1, 2] = W_V W_O");
        Close(matmul(attn.W_Q[3], attn.W_K[3].t()), m.QK[1, 3].AB, 1e-6, "QK[1, 3] = W_Q W_Kᵀ");
        Assert.Equal(8, m.OV.S.shape[^1]);                                     // rank ≤ d_head
    }

    // ---- GPT-2 config flags -------------------------------------------------------------------------------------

    [Theory]
    [InlineData("{\"scale_attn_weights\": false}", "scale_attn_weights")]
    [InlineData("{\"scale_attn_by_inverse_layer_idx\": true}", "scale_attn_by_inverse_layer_idx")]
    [InlineData("{\"reorder_and_upcast_attn\": \"yes\"}", "reorder_and_upcast_attn")]
    public void Gpt2_attention_flags_we_do_not_implement_are_refused(string json, string field)
    {
        var e = Assert.Throws<InvalidDataException>(() => Gpt2ConfigChecks.RefuseUnsupportedAttention((JsonObject)JsonNode.Parse(json)!, "cfg/config.json"));
        Assert.Contains(field, e.Message);
        Assert.Contains("cfg/config.json", e.Message);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"scale_attn_weights\": true, \"scale_attn_by_inverse_layer_idx\": false, \"reorder_and_upcast_attn\": true}")]
    public void Gpt2_default_attention_flags_are_accepted(string json) =>
        Gpt2ConfigChecks.RefuseUnsupportedAttention((JsonObject)JsonNode.Parse(json)!, "config.json");

    [Fact]
    public void From_pretrained_refuses_a_GPT2_config_whose_attention_we_would_compute_wrongly()
    {
        var dir = Directory.CreateTempSubdirectory("sn-gpt2-flags-").FullName;
        try
        {
            var src = TestPaths.Fixture("hf-gpt2-tiny");
            var cfg = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(src, "config.json")))!;
            cfg["scale_attn_by_inverse_layer_idx"] = true;
            File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
            File.Copy(Path.Combine(src, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
            var e = Assert.Throws<InvalidDataException>(() => HookedTransformer.FromPretrained(dir));
            Assert.Contains("scale_attn_by_inverse_layer_idx", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
