using SafetyNotebooks.IO;
using SafetyNotebooks.Models;
using SafetyNotebooks.Models.Components;
using SafetyNotebooks.Models.Conversion;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>The converter registry, rotary embeddings and their hooks, grouped-query attention, half-precision checkpoints.</summary>
public class ModelFamilyTests
{
    static ModelFamilyTests() => TorchRuntime.EnsureLoaded();

    static string CopyFixture(string fixture, string tag)
    {
        var dir = Directory.CreateTempSubdirectory(tag).FullName;
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(TestPaths.Fixture(fixture), f), Path.Combine(dir, f));
        return dir;
    }

    [Theory]
    [InlineData("\"model_type\": \"bert\"", "model_type \"bert\"")]
    [InlineData("\"architectures\": [\"T5ForConditionalGeneration\"]", "T5ForConditionalGeneration")]
    public void Unknown_families_are_refused_listing_the_supported_ones(string field, string named)
    {
        var dir = Directory.CreateTempSubdirectory("unknown-family").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), "{" + field + ", \"hidden_size\": 32}");
            var e = Assert.Throws<InvalidDataException>(() => HookedTransformer.FromPretrained(dir));
            Assert.Contains(named, e.Message);
            Assert.Contains(Path.Combine(dir, "config.json"), e.Message);
            foreach (var t in new[] { "\"gpt2\"", "\"llama\"", "\"mistral\"", "\"qwen2\"", "\"gpt_neox\"" })
                Assert.Contains(t, e.Message);
            Assert.Throws<InvalidDataException>(() => HookedTransformer.ReadHfConfig(dir));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void The_registry_dispatches_by_model_type_and_by_architectures()
    {
        var dir = Directory.CreateTempSubdirectory("dispatch").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), "{\"architectures\": [\"GPTNeoXForCausalLM\"]}");
            Assert.IsType<GptNeoXConverter>(PretrainedConverters.For(HfConfig.Read(dir)));
            File.WriteAllText(Path.Combine(dir, "config.json"), "{\"model_type\": \"qwen2\"}");
            Assert.IsType<LlamaConverter>(PretrainedConverters.For(HfConfig.Read(dir)));
            File.WriteAllText(Path.Combine(dir, "config.json"), "{\"n_embd\": 32}");   // old GPT-2 configs have neither
            Assert.IsType<Gpt2Converter>(PretrainedConverters.For(HfConfig.Read(dir)));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Unsupported_rope_scaling_is_refused_naming_the_field()
    {
        var dir = CopyFixture("hf-llama-tiny", "rope-scaling");
        try
        {
            var path = Path.Combine(dir, "config.json");
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"rope_scaling\": null",
                "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}"));
            var e = Assert.Throws<InvalidDataException>(() => HookedTransformer.FromPretrained(dir));
            Assert.Contains("'rope_scaling'", e.Message);
            Assert.Contains("llama3", e.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Rotary_rotates_pairs_of_half_dimensions_by_position_times_frequency()
    {
        // d_head = rotary_dim = 4, base 10000: θ = [1, 10000^(-1/2) = 0.01]; dimension i pairs with i + 2.
        var x = tensor(new float[] { 1, 0, 0, 0, 0, 1, 0, 0 }).view(1, 2, 1, 4);   // position 0: e0, position 1: e1
        var positions = tensor(new long[] { 1, 2 }).view(1, 2);
        var r = RotaryEmbedding.Apply(x, positions, 4, 10000.0).view(2, 4);
        // e0 at position 1 → (cos 1, 0, sin 1, 0); e1 at position 2 → (0, cos 0.02, 0, sin 0.02).
        var expected = tensor(new float[] { (float)Math.Cos(1), 0, (float)Math.Sin(1), 0, 0, (float)Math.Cos(0.02), 0, (float)Math.Sin(0.02) }).view(2, 4);
        Assert.True((r - expected).abs().max().item<float>() < 1e-6, r.ToString(TorchSharp.TensorStringStyle.Julia));
        // Partial: rotary_dim 2 of d_head 4 rotates (0, 1) only, with θ = 1; dimensions 2 and 3 pass unchanged.
        var y = tensor(new float[] { 1, 0, 5, 7 }).view(1, 1, 1, 4);
        var p = RotaryEmbedding.Apply(y, tensor(new long[] { 3 }).view(1, 1), 2, 10000.0).view(4);
        var pe = tensor(new float[] { (float)Math.Cos(3), (float)Math.Sin(3), 5, 7 });
        Assert.True((p - pe).abs().max().item<float>() < 1e-6);
        Assert.Throws<ArgumentException>(() => RotaryEmbedding.Apply(y, tensor(new long[] { 3 }).view(1, 1), 3, 10000.0));
    }

    [Fact]
    public void Rotary_hooks_fire_with_batch_pos_head_d_head_and_leave_position_0_and_unrotated_dims_alone()
    {
        using var _ = no_grad();
        using var neox = HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gptneox-tiny"));
        using var llama = HookedTransformer.FromPretrained(TestPaths.Fixture("hf-llama-tiny"));
        var tokens = tensor(new long[] { 1, 5, 9, 2, 7, 3, 4, 8, 6 }).view(1, 9).expand(2, 9).contiguous();

        Assert.Contains("blocks.0.attn.hook_rot_q", neox.HookNames);
        Assert.Contains("blocks.1.attn.hook_rot_k", llama.HookNames);
        var (_, cache) = neox.RunWithCache(tokens);
        using (cache)
        {
            Tensor q = cache["blocks.1.attn.hook_q"], rq = cache["blocks.1.attn.hook_rot_q"], k = cache["blocks.1.attn.hook_k"], rk = cache["blocks.1.attn.hook_rot_k"];
            Assert.Equal(new long[] { 2, 9, 4, 8 }, rq.shape);
            Assert.Equal(new long[] { 2, 9, 4, 8 }, rk.shape);
            // rotary_pct 0.5: dimensions 4..7 are not rotated; position 0 has angle 0; later positions are rotated.
            Assert.Equal(0f, (rq.narrow(-1, 4, 4) - q.narrow(-1, 4, 4)).abs().max().item<float>());
            Assert.Equal(0f, (rk.narrow(-1, 4, 4) - k.narrow(-1, 4, 4)).abs().max().item<float>());
            Assert.True((rq.select(1, 0) - q.select(1, 0)).abs().max().item<float>() < 1e-6);
            Assert.True((rq.select(1, 5).narrow(-1, 0, 4) - q.select(1, 5).narrow(-1, 0, 4)).abs().max().item<float>() > 1e-3);
        }
        var (_, lcache) = llama.RunWithCache(tokens);
        using (lcache)
        {
            Assert.Equal(new long[] { 2, 9, 4, 8 }, lcache["blocks.0.attn.hook_rot_q"].shape);
            Assert.Equal(new long[] { 2, 9, 2, 8 }, lcache["blocks.0.attn.hook_rot_k"].shape);   // key/value heads, as in TransformerLens
            Assert.Equal(new long[] { 2, 9, 2, 8 }, lcache["blocks.0.attn.hook_v"].shape);
            Assert.Equal(new long[] { 2, 9, 4, 8 }, lcache["blocks.0.attn.hook_z"].shape);
        }

        // A hook on hook_rot_k changes the output (the rotated keys are what attention uses).
        var clean = llama.forward(tokens);
        var zeroed = llama.RunWithHooks(tokens, ("blocks.0.attn.hook_rot_k", (t, _) => t * 0));
        Assert.True((clean - zeroed).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void Grouped_query_attention_shares_each_key_value_head_with_consecutive_query_heads()
    {
        // Reference: the same model with ordinary multi-head attention whose key/value head h is kv head h / 2
        // (Hugging Face's repeat_kv = repeat_interleave), i.e. query heads 0,1 read kv head 0 and 2,3 read kv head 1.
        using var _ = no_grad();
        var cfg = new HookedTransformerConfig
        {
            NLayers = 1, DModel = 16, NHeads = 4, NKeyValueHeads = 2, DHead = 4, DMlp = 32, NCtx = 16, DVocab = 20,
            Normalization = NormalizationType.RMS, PositionalEmbedding = PositionalEmbeddingType.Rotary, GatedMlp = true, ActFn = "silu", Seed = 3,
        };
        using var grouped = new HookedTransformer(cfg);
        using var full = new HookedTransformer(cfg with { NKeyValueHeads = null });
        foreach (var (name, p) in full.named_parameters())
        {
            var a = grouped.blocks[0].attn;
            Tensor src = name switch
            {
                "blocks.0.attn.W_QKV" => stack(new[] { a.W_Q, a.W_K[tensor(new long[] { 0, 0, 1, 1 })], a.W_V[tensor(new long[] { 0, 0, 1, 1 })] }).permute(2, 0, 1, 3),
                "blocks.0.attn.b_QKV" => stack(new[] { a.b_Q, a.b_K[tensor(new long[] { 0, 0, 1, 1 })], a.b_V[tensor(new long[] { 0, 0, 1, 1 })] }),
                _ => grouped.named_parameters().Single(q => q.name == name).parameter,
            };
            p.copy_(src);
        }
        var tokens = tensor(new long[] { 3, 1, 4, 1, 5, 9, 2, 6, 5, 3 }).view(1, 10);
        Assert.True((grouped.forward(tokens) - full.forward(tokens)).abs().max().item<float>() < 1e-5);
    }

    [Theory]
    [InlineData(3, null, "NKeyValueHeads")]
    [InlineData(null, 3, "RotaryDim")]
    [InlineData(null, 10, "RotaryDim")]
    public void Bad_family_settings_name_the_field(int? nKv, int? rotaryDim, string field)
    {
        var cfg = new HookedTransformerConfig
        {
            NLayers = 1, DModel = 16, NHeads = 4, DHead = 4, DMlp = 32, NCtx = 8, DVocab = 20,
            PositionalEmbedding = PositionalEmbeddingType.Rotary, NKeyValueHeads = nKv, RotaryDim = rotaryDim,
        };
        var e = Assert.Throws<ArgumentException>(() => cfg.Validate());
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void A_bf16_checkpoint_loads_as_float32_matching_its_source_to_bf16_precision()
    {
        var src = TestPaths.Fixture("hf-llama-tiny");
        var dir = Directory.CreateTempSubdirectory("bf16").FullName;
        try
        {
            File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
            var weights = Safetensors.Load(Path.Combine(src, "model.safetensors"));
            Safetensors.Save(Path.Combine(dir, "model.safetensors"), weights.ToDictionary(kv => kv.Key, kv => kv.Value.to_type(ScalarType.BFloat16)));
            using (var f = Safetensors.Open(Path.Combine(dir, "model.safetensors")))
                Assert.All(f.Names, n => Assert.Equal("BF16", f.Info(n).DType));

            using var half = HookedTransformer.FromPretrained(dir);
            using var full = HookedTransformer.FromPretrained(src);
            foreach (var (name, p) in half.named_parameters())
            {
                Assert.Equal(ScalarType.Float32, p.dtype);
                var reference = full.named_parameters().Single(q => q.name == name).parameter;
                // bfloat16 keeps 8 significant bits: round-to-nearest moves a value by at most 2^-8 of itself (unit roundoff).
                var err = (p - reference).abs() - reference.abs() * Math.Pow(2, -8);
                Assert.True(err.max().item<float>() <= 1e-12, $"{name}: beyond bf16 rounding");
            }
            Assert.True((half.blocks[0].attn.W_K - full.blocks[0].attn.W_K).abs().max().item<float>() > 0); // really rounded

            using var kept = HookedTransformer.FromPretrained(dir, out var report, dtype: ScalarType.BFloat16);
            Assert.Empty(report.Unexpected);
            Assert.All(kept.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
            using var noGrad = no_grad();
            var tokens = tensor(new long[] { 1, 2, 3, 4 }).view(1, 4);
            var logits = kept.forward(tokens);
            Assert.Equal(ScalarType.BFloat16, logits.dtype);
            var reference32 = half.forward(tokens);
            Assert.True((logits.to_type(ScalarType.Float32) - reference32).abs().max().item<float>() < 0.25);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void The_context_length_of_a_rotary_model_can_be_chosen_but_not_GPT2s()
    {
        using var model = HookedTransformer.FromPretrained(TestPaths.Fixture("hf-llama-tiny"), out _, nCtx: 16);
        Assert.Equal(16, model.Cfg.NCtx);
        var e = Assert.Throws<ArgumentException>(() => HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gpt2-tiny"), out _, nCtx: 16));
        Assert.Contains("nCtx", e.Message);
    }

    [Fact]
    public void A_Llama_checkpoint_without_lm_head_is_tied_to_its_embedding_and_extra_buffers_are_skipped()
    {
        // SmolLM and small Qwen2 checkpoints tie the head to embed_tokens and write no lm_head.weight; old Llama checkpoints
        // carry rotary_emb.inv_freq buffers.
        var src = TestPaths.Fixture("hf-llama-tiny");
        var dir = Directory.CreateTempSubdirectory("llama-tied").FullName;
        try
        {
            var path = Path.Combine(dir, "config.json");
            File.WriteAllText(path, File.ReadAllText(Path.Combine(src, "config.json")).Replace("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true"));
            var weights = Safetensors.Load(Path.Combine(src, "model.safetensors"));
            weights.Remove("lm_head.weight");
            weights["model.layers.0.self_attn.rotary_emb.inv_freq"] = tensor(new float[] { 1f, 0.1f, 0.01f, 0.001f });
            Safetensors.Save(Path.Combine(dir, "model.safetensors"), weights);
            var warnings = new StringWriter();
            using var model = HookedTransformer.FromPretrained(dir, out var report, warnings);
            Assert.Empty(report.Unexpected);
            Assert.Equal("", warnings.ToString());
            Assert.Equal(0f, (model.W_U - weights["model.embed_tokens.weight"].t()).abs().max().item<float>());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Hook_names_follow_forward_order_for_gated_MLPs_and_parallel_blocks()
    {
        using var llama = HookedTransformer.FromPretrained(TestPaths.Fixture("hf-llama-tiny"));
        var names = llama.HookNames.ToList();
        int pre = names.IndexOf("blocks.0.mlp.hook_pre"), lin = names.IndexOf("blocks.0.mlp.hook_pre_linear"), post = names.IndexOf("blocks.0.mlp.hook_post");
        Assert.True(pre >= 0 && pre < lin && lin < post, string.Join(", ", names));
        Assert.True(names.IndexOf("blocks.0.attn.hook_k") < names.IndexOf("blocks.0.attn.hook_rot_q"));
        Assert.Contains("blocks.0.hook_resid_mid", names);
        using var neox = HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gptneox-tiny"));
        Assert.DoesNotContain(neox.HookNames, n => n.EndsWith("hook_resid_mid"));   // parallel blocks have none, as in TransformerLens
        Assert.DoesNotContain(neox.HookNames, n => n.Contains("pos_embed"));
    }
}
