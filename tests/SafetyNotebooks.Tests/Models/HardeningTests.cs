using SafetyNotebooks.IO;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

/// <summary>Bad hook returns, aliasing hooks, bad tokens and bad configs (issue 14): clear errors, weights never touched.</summary>
public class HardeningTests : IDisposable
{
    static HardeningTests() => TorchRuntime.EnsureLoaded();

    readonly string _dir = Directory.CreateTempSubdirectory("model-hardening").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static HookedTransformerConfig Cfg => new()
    {
        NLayers = 2, DModel = 8, NHeads = 2, DHead = 4, DMlp = 16, NCtx = 6, DVocab = 11, Seed = 7,
    };

    /// <summary>The GPT-2-shaped config, and an attention-only RMSNorm one without positional embedding.</summary>
    static HookedTransformerConfig Config(int which) => which == 0 ? Cfg
        : Cfg with { Normalization = NormalizationType.RMS, AttnOnly = true, PositionalEmbedding = PositionalEmbeddingType.None, DMlp = 0 };

    static Tensor Tokens(int batch) => tensor(new long[] { 1, 5, 2, 9, 3, 10, 0, 4 }[..(batch * 4)], new long[] { batch, 4 });

    public static IEnumerable<object[]> HookNames()
    {
        var all = new List<object[]>();
        foreach (var which in new[] { 0, 1 })
        {
            using var m = new HookedTransformer(Config(which));
            all.AddRange(m.HookNames.Select(n => new object[] { which, n }));
        }
        return all;
    }

    [Fact]
    public void The_small_model_has_every_kind_of_hook_point()
    {
        // Guards the theories below: they must cover embeddings, attention, MLP, norms and residuals.
        var names = HookNames().Where(o => (int)o[0] == 0).Select(o => (string)o[1]).ToList();
        foreach (var n in new[] { "hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.0.ln1.hook_scale", "blocks.0.ln1.hook_normalized",
                     "blocks.0.attn.hook_q", "blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_result",
                     "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post", "ln_final.hook_normalized" })
            Assert.Contains(n, names);
    }

    [Theory]
    [MemberData(nameof(HookNames))]
    public void A_hook_returning_the_wrong_shape_dtype_or_rank_is_a_clear_error(int config, string hookName)
    {
        using var _ = no_grad();
        using var model = new HookedTransformer(Config(config));
        var tokens = Tokens(2);
        long[]? shape = null;
        using (var ok = model.RunWithHooks(tokens, (hookName, (x, h) => { shape = x.shape; return x.clone(); })))
        using (var plain = model.forward(tokens))
            Assert.True(ok.allclose(plain, rtol: 1e-4, atol: 1e-5), "an identity replacement must not change the logits (beyond the unfused LayerNorm path hooking hook_scale takes)");
        var expected = "[" + string.Join(", ", shape!) + "]";

        var bad = new (string Got, Func<Tensor, HookPoint, Tensor?> Hook)[]
        {
            ("[]", (x, h) => tensor(1f)),                                           // 0-d: aborted the process at hook_attn_scores
            ("[" + string.Join(", ", shape![1..]) + "]", (x, h) => x[0].clone()),  // drops the batch dim (broadcasts at hook_pattern)
            (expected, (x, h) => x.to_type(ScalarType.Float64)),                    // right shape, wrong dtype
        };
        foreach (var (got, hook) in bad)
        {
            var e = Assert.Throws<InvalidOperationException>(() => model.RunWithHooks(tokens, (hookName, hook)));
            Assert.Contains($"'{hookName}'", e.Message);
            Assert.Contains(got, e.Message);
            Assert.Contains(expected, e.Message);
            Assert.Equal(0, model.HookCount);
        }
    }

    [Theory]
    [MemberData(nameof(HookNames))]
    public void Editing_an_activation_in_place_never_changes_a_parameter(int config, string hookName)
    {
        using var _ = no_grad();
        using var model = new HookedTransformer(Config(config));
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        foreach (var batch in new[] { 1, 2 }) // batch 1: W_pos's rows are a plain view; batch 2: an expanded one
        {
            using var logits = model.RunWithHooks(Tokens(batch), (hookName, (x, h) => { x.add_(1.0); return null; }));
            foreach (var (name, p) in model.named_parameters())
                Assert.True(Same(p.detach(), before[name]), $"hook on {hookName} (batch {batch}) changed {name}");
        }
    }

    [Fact]
    public void Bad_tokens_are_clear_errors()
    {
        using var model = new HookedTransformer(Cfg);
        void Bad(Tensor tokens, params string[] parts)
        {
            var e = Assert.Throws<ArgumentException>(() => model.forward(tokens));
            foreach (var p in parts) Assert.Contains(p, e.Message);
        }
        Bad(tensor(new float[] { 1.7f, 2f }), "integer", "Float32", "truncate");  // was silently truncated to [1, 2]
        Bad(tensor(new[] { true, false }), "integer");
        Bad(zeros(0, 3, dtype: ScalarType.Int64), "batch is empty");
        Bad(zeros(2, 0, dtype: ScalarType.Int64), "sequences are empty");
        Bad(zeros(0, dtype: ScalarType.Int64), "sequences are empty");
        Bad(tensor(new long[] { 1, 11 }), "[0, 11)", "11");
        Bad(tensor(new long[] { -1, 2 }), "[0, 11)", "-1");
        Bad(zeros(1, 7, dtype: ScalarType.Int64), "NCtx = 6", "7");
        using var ints = model.forward(tensor(new[] { 1, 2 }));                // int32 ids are fine
        Assert.Equal(new long[] { 1, 2, 11 }, ints.shape);
    }

    [Fact]
    public void An_unallocatable_context_length_names_n_ctx()
    {
        var e = Assert.Throws<InsufficientMemoryException>(() => new HookedTransformer(Cfg with { NCtx = 2_000_000_000 }));
        Assert.Contains("NCtx = 2000000000", e.Message);
        Assert.Contains("smaller NCtx", e.Message);
    }

    string WriteConfig(string name, string json, bool withWeights = false)
    {
        var dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), json);
        if (withWeights)
            File.Copy(Path.Combine(TestPaths.Fixture("hf-gpt2-tiny"), "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        return dir;
    }

    static string FixtureConfig(string field, string value)
    {
        var json = File.ReadAllText(Path.Combine(TestPaths.Fixture("hf-gpt2-tiny"), "config.json"));
        var node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        node[field] = System.Text.Json.Nodes.JsonNode.Parse(value);
        return node.ToJsonString();
    }

    [Theory]
    [InlineData("n_head", "0")]                  // was DivideByZeroException
    [InlineData("n_embd", "\"32\"")]
    [InlineData("n_embd", "32.5")]
    [InlineData("n_positions", "1099511627776")] // 2^40
    [InlineData("n_layer", "-2")]
    [InlineData("layer_norm_epsilon", "\"small\"")]
    [InlineData("tie_word_embeddings", "1")]
    [InlineData("activation_function", "\"swish\"")]
    public void Bad_config_fields_name_the_file_and_the_field(string field, string value)
    {
        var dir = WriteConfig(field + value.GetHashCode(), FixtureConfig(field, value));
        var e = Assert.Throws<InvalidDataException>(() => HookedTransformer.FromPretrained(dir));
        Assert.Contains(Path.Combine(dir, "config.json"), e.Message);
        Assert.Contains($"'{field}'", e.Message);
    }

    [Fact]
    public void A_config_that_is_not_a_json_object_names_the_file()
    {
        var dir = WriteConfig("array", "[1, 2, 3]");
        var e = Assert.Throws<InvalidDataException>(() => HookedTransformer.ReadHfConfig(dir));
        Assert.Contains(Path.Combine(dir, "config.json"), e.Message);
        Assert.Contains("JSON object", e.Message);
        Assert.Contains("array", e.Message);
    }

    [Fact]
    public void Weight_shapes_are_checked_before_the_model_is_allocated()
    {
        // 2e9 positions: the n_ctx × n_ctx mask alone would need 4 exabytes, so reaching the shape error at all shows
        // that the weights were checked against the config first.
        var dir = WriteConfig("ctx", FixtureConfig("n_positions", "2000000000"), withWeights: true);
        var e = Assert.Throws<InvalidDataException>(() => HookedTransformer.FromPretrained(dir));
        Assert.Contains("wpe.weight", e.Message);
        Assert.Contains("[64, 32]", e.Message);
        Assert.Contains("[2000000000, 32]", e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void Tensors_the_config_does_not_use_are_reported_as_Hugging_Face_does()
    {
        // The fixture has 2 layers; a config with 1 layer leaves all of layer 1 unused.
        var dir = WriteConfig("fewer-layers", FixtureConfig("n_layer", "1"), withWeights: true);
        var warnings = new StringWriter();
        using var model = HookedTransformer.FromPretrained(dir, out var report, warnings);
        Assert.Equal(12, report.Unexpected.Count);
        Assert.All(report.Unexpected, n => Assert.StartsWith("transformer.h.1.", n));
        Assert.Contains("transformer.h.1.mlp.c_fc.weight", warnings.ToString());
        Assert.Contains("not used", warnings.ToString());

        var full = new StringWriter();
        using var all = HookedTransformer.FromPretrained(TestPaths.Fixture("hf-gpt2-tiny"), out var fullReport, full);
        Assert.Empty(fullReport.Unexpected);
        Assert.Equal("", full.ToString());
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
