using System.Text.Json.Nodes;
using SafetyNotebooks.IO;
using SafetyNotebooks.Models;
using SafetyNotebooks.Models.Components;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training.Lora;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Training;

public class LoraTests
{
    public LoraTests() => TorchRuntime.EnsureLoaded();

    static readonly Dictionary<string, string[]> AllTargets = new()
    {
        ["hf-gpt2-tiny"] = ["c_attn", "c_proj", "c_fc"],
        ["hf-llama-tiny"] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ["hf-gptneox-tiny"] = ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    };

    static HookedTransformer Load(string fixture)
    {
        var model = HookedTransformer.FromPretrained(TestPaths.Fixture(fixture));
        model.eval();
        return model;
    }

    static Tensor Tokens() => tensor(new long[] { 5, 17, 3, 99, 42, 7, 250, 11 }, new long[] { 2, 4 });

    /// <summary>Gives every A and B seeded random values (B starts at zero, which would make most checks vacuous).</summary>
    static void Randomize(LoraAdapter adapter, long seed = 7)
    {
        using var g = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var layer in adapter.Layers.Values)
        {
            layer.A.copy_(randn(layer.A.shape, generator: g) * 0.3);
            layer.B.copy_(randn(layer.B.shape, generator: g) * 0.3);
        }
    }

    static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData("hf-gpt2-tiny")]
    [InlineData("hf-llama-tiny")]
    [InlineData("hf-gptneox-tiny")]
    public void With_B_zero_the_adapted_model_computes_exactly_the_base_logits(string fixture)
    {
        var model = Load(fixture);
        var before = model.forward(Tokens()).detach().clone();
        var adapter = LoraAdapter.Apply(model, new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = AllTargets[fixture], Seed = 1 });
        Assert.NotEmpty(adapter.Layers);
        Assert.All(adapter.Layers.Values, l => Assert.Equal(0f, l.B.abs().sum().item<float>()));
        Assert.True(adapter.Layers.Values.All(l => l.A.abs().sum().item<float>() > 0), "A must be initialised (Kaiming uniform), not zero");
        Assert.Equal(0.0, MaxAbsDiff(before, model.forward(Tokens())));
    }

    [Fact]
    public void A_is_initialised_uniformly_within_one_over_root_fan_in_as_PEFTs_kaiming_uniform()
    {
        var model = Load("hf-gpt2-tiny");
        var adapter = LoraAdapter.Apply(model, new LoraConfig { R = 8, TargetModules = ["c_fc", "mlp.c_proj"], Seed = 3 });
        var fc = adapter.Layers["transformer.h.0.mlp.c_fc"].A;     // fan_in 32 → bound 1/√32 ≈ 0.177
        var proj = adapter.Layers["transformer.h.0.mlp.c_proj"].A; // fan_in 128 → bound 1/√128 ≈ 0.088
        Assert.True(fc.abs().max().item<float>() <= 1 / Math.Sqrt(32) && fc.abs().max().item<float>() > 0.8 / Math.Sqrt(32));
        Assert.True(proj.abs().max().item<float>() <= 1 / Math.Sqrt(128) && proj.abs().max().item<float>() > 0.8 / Math.Sqrt(128));
    }

    [Fact]
    public void An_adapted_MLP_computes_W_x_plus_scale_B_A_x_worked_by_hand()
    {
        var cfg = new HookedTransformerConfig { NLayers = 1, DModel = 2, NHeads = 1, DHead = 2, DMlp = 3, NCtx = 4, DVocab = 4, ActFn = "relu" }.Validate();
        var mlp = new Mlp(cfg);
        var lora = new LoraLinear("mlp.c_fc", 2, 3, new LoraConfig { R = 1, LoraAlpha = 2 }); // scaling 2 / 1 = 2
        using (no_grad())
        {
            mlp.W_in.copy_(tensor(new float[] { 1, 0, 0, 0, 1, 0 }, new long[] { 2, 3 }));
            mlp.b_in.copy_(tensor(new float[] { 0, 0, 1 }));
            mlp.W_out.copy_(tensor(new float[] { 1, 0, 0, 1, 1, 1 }, new long[] { 3, 2 }));
            mlp.b_out.copy_(tensor(new float[] { 0.5f, -0.5f }));
            lora.A.copy_(tensor(new float[] { 1, 2 }, new long[] { 1, 2 }));
            lora.B.copy_(tensor(new float[] { 1, 0, -1 }, new long[] { 3, 1 }));
        }
        mlp.InAdapter = lora;
        // x = [3, 4]: x·W_in + b_in = [3, 4, 1]; A x = 11; 2·B·11 = [22, 0, -22]; pre = [25, 4, -21]; relu → [25, 4, 0];
        // post·W_out + b_out = [25 + 0.5, 4 - 0.5] = [25.5, 3.5].
        var y = mlp.forward(tensor(new float[] { 3, 4 }, new long[] { 1, 1, 2 }));
        Assert.Equal(new[] { 25.5f, 3.5f }, y.flatten().data<float>().ToArray());
        Assert.Contains(mlp.named_parameters(), p => p.name == "in_adapter.lora_A.weight");
        mlp.InAdapter = null;   // removing it restores the base MLP: relu([3, 4, 1])·W_out + b_out = [4 + 0.5, 5 - 0.5]
        Assert.Equal(new[] { 4.5f, 4.5f }, mlp.forward(tensor(new float[] { 3, 4 }, new long[] { 1, 1, 2 })).flatten().data<float>().ToArray());
        Assert.DoesNotContain(mlp.named_parameters(), p => p.name.Contains("adapter"));
    }

    [Fact]
    public void Rslora_scales_by_alpha_over_root_r()
    {
        Assert.Equal(16.0 / 4, new LoraConfig { R = 4, LoraAlpha = 16 }.Scaling);
        Assert.Equal(16.0 / 2, new LoraConfig { R = 4, LoraAlpha = 16, UseRslora = true }.Scaling);
    }

    /// <summary>
    /// The adapted model must equal the Hugging Face checkpoint whose targeted weights are W + scaling·B·A (nn.Linear [out, in];
    /// Conv1D [in, out] gets the transpose), loaded by the converters: this checks every family's name → weight mapping,
    /// Llama's q/k/v offsets with grouped-query heads and NeoX's interleaved query_key_value order independently of the adapter code.
    /// </summary>
    [Theory]
    [InlineData("hf-gpt2-tiny", null)]
    [InlineData("hf-llama-tiny", null)]
    [InlineData("hf-llama-tiny", "q_proj,v_proj,down_proj")]   // k_proj left out: zeros between q's and v's columns of the slot
    [InlineData("hf-gptneox-tiny", null)]
    public void The_adapted_model_equals_the_checkpoint_whose_weights_are_W_plus_scale_B_A(string fixture, string? targets)
    {
        var model = Load(fixture);
        var adapter = LoraAdapter.Apply(model, new LoraConfig { R = 3, LoraAlpha = 6, TargetModules = targets?.Split(',') ?? AllTargets[fixture] });
        Randomize(adapter);
        var adapted = model.forward(Tokens()).detach().clone();

        var dir = Directory.CreateTempSubdirectory("lora-ref-").FullName;
        try
        {
            var src = TestPaths.Fixture(fixture);
            File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
            var weights = Safetensors.Load(Path.Combine(src, "model.safetensors"));
            bool conv1d = fixture == "hf-gpt2-tiny";
            foreach (var (name, layer) in adapter.Layers)
            {
                var delta = matmul(layer.B.detach(), layer.A.detach()) * 2.0;  // scaling = 6 / 3
                var key = name + ".weight";
                weights[key] = weights[key] + (conv1d ? delta.t() : delta);
            }
            Safetensors.Save(Path.Combine(dir, "model.safetensors"), weights);
            var reference = HookedTransformer.FromPretrained(dir);
            reference.eval();
            Assert.True(MaxAbsDiff(adapted, reference.forward(Tokens())) < 2e-4, "adapted logits differ from the W + scale·B·A checkpoint");
            Assert.True(MaxAbsDiff(adapted, Load(fixture).forward(Tokens())) > 1e-2, "the random adapter must change the logits");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("hf-gpt2-tiny")]
    [InlineData("hf-llama-tiny")]
    [InlineData("hf-gptneox-tiny")]
    public void Merging_gives_the_adapted_logits_and_unmerging_restores_the_base_weights(string fixture)
    {
        var model = Load(fixture);
        var baseWeights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        var adapter = LoraAdapter.Apply(model, new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = AllTargets[fixture] });
        Randomize(adapter);
        var adapted = model.forward(Tokens()).detach().clone();

        adapter.Merge();
        Assert.True(adapter.Merged);
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains("lora"));   // merged: adapters out of the forward pass
        Assert.True(MaxAbsDiff(adapted, model.forward(Tokens())) < 2e-4);
        if (fixture == "hf-gpt2-tiny")
        {
            // c_attn is Conv1D: W_QKV viewed as [d_model, 3·d_model] gains scaling·(B·A)ᵀ, scaling = 8 / 4.
            var l = adapter.Layers["transformer.h.0.attn.c_attn"];
            var expected = baseWeights["blocks.0.attn.W_QKV"].view(32, 96) + matmul(l.B, l.A).t() * 2.0;
            Assert.True(MaxAbsDiff(expected, model.blocks[0].attn.W_QKV.view(32, 96)) < 1e-6);
        }

        adapter.Unmerge();
        Assert.False(adapter.Merged);
        foreach (var (name, w) in model.state_dict())
            if (baseWeights.TryGetValue(name, out var orig)) Assert.True(MaxAbsDiff(orig, w) < 1e-6, $"{name} not restored by Unmerge");
        Assert.True(MaxAbsDiff(adapted, model.forward(Tokens())) < 1e-5);

        adapter.Unload();
        Assert.Equal(0.0, MaxAbsDiff(Load(fixture).forward(Tokens()), model.forward(Tokens())), 5);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));
    }

    [Fact]
    public void Only_the_adapter_parameters_receive_gradients()
    {
        var model = Load("hf-llama-tiny");
        var adapter = LoraAdapter.Apply(model, new LoraConfig { R = 2, TargetModules = AllTargets["hf-llama-tiny"], Seed = 5 });
        Randomize(adapter);
        var tokens = Tokens();
        var logits = model.forward(tokens);
        var loss = nn.functional.cross_entropy(logits[.., ..^1].reshape(-1, logits.shape[2]), tokens[.., 1..].reshape(-1));
        loss.backward();
        var lora = adapter.Parameters().ToHashSet(ReferenceEqualityComparer.Instance);
        foreach (var (name, p) in model.named_parameters())
        {
            if (lora.Contains(p)) Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{name} got no gradient");
            else Assert.True(p.grad is null && !p.requires_grad, $"base parameter {name} is trainable");
        }
        // 2 layers × (q, k, v, o, gate, up, down), each r·(in + out): q 2·(32+32), k,v 2·(32+16), o 2·(32+32), gate,up 2·(32+88), down 2·(88+32).
        Assert.Equal(2 * 2 * ((32 + 32) + 2 * (32 + 16) + (32 + 32) + 3 * (32 + 88)), adapter.TrainableParameterCount);
    }

    [Fact]
    public void Saving_and_loading_round_trips_the_adapter_exactly()
    {
        var model = Load("hf-gpt2-tiny");
        var adapter = LoraAdapter.Apply(model, new LoraConfig { R = 4, LoraAlpha = 16, LoraDropout = 0.1, UseRslora = true, TargetModules = ["c_attn", "mlp.c_proj"] });
        Randomize(adapter);
        model.eval();
        var adapted = model.forward(Tokens()).detach().clone();
        var dir = Directory.CreateTempSubdirectory("lora-save-").FullName;
        try
        {
            adapter.Save(dir);
            var fresh = Load("hf-gpt2-tiny");
            var loaded = LoraAdapter.Load(fresh, dir);
            Assert.Equal(adapter.Config.R, loaded.Config.R);
            Assert.Equal(16.0, loaded.Config.LoraAlpha);
            Assert.Equal(0.1, loaded.Config.LoraDropout);
            Assert.True(loaded.Config.UseRslora);
            Assert.Equal(new[] { "c_attn", "mlp.c_proj" }, loaded.Config.TargetModules);
            foreach (var (name, layer) in adapter.Layers)
            {
                Assert.Equal(0.0, MaxAbsDiff(layer.A, loaded.Layers[name].A));
                Assert.Equal(0.0, MaxAbsDiff(layer.B, loaded.Layers[name].B));
            }
            fresh.eval();
            Assert.Equal(0.0, MaxAbsDiff(adapted, fresh.forward(Tokens())));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_GPT2_adapter_is_saved_with_PEFTs_key_names_shapes_and_config()
    {
        var model = Load("hf-gpt2-tiny");
        var adapter = LoraAdapter.Apply(model, new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = ["c_attn", "c_proj", "c_fc"], BaseModelNameOrPath = "gpt2" });
        var dir = Directory.CreateTempSubdirectory("lora-peft-").FullName;
        try
        {
            adapter.Save(dir);
            using var file = Safetensors.Open(Path.Combine(dir, "adapter_model.safetensors"));
            var expected = new Dictionary<string, long[]>();
            foreach (var l in new[] { 0, 1 })
            {
                var p = $"base_model.model.transformer.h.{l}.";
                expected[p + "attn.c_attn.lora_A.weight"] = [4, 32]; expected[p + "attn.c_attn.lora_B.weight"] = [96, 4];
                expected[p + "attn.c_proj.lora_A.weight"] = [4, 32]; expected[p + "attn.c_proj.lora_B.weight"] = [32, 4];
                expected[p + "mlp.c_fc.lora_A.weight"] = [4, 32]; expected[p + "mlp.c_fc.lora_B.weight"] = [128, 4];
                expected[p + "mlp.c_proj.lora_A.weight"] = [4, 128]; expected[p + "mlp.c_proj.lora_B.weight"] = [32, 4];
            }
            Assert.Equal(expected.Keys.Order(), file.Names.Order());
            foreach (var (key, shape) in expected) Assert.Equal(shape, file.Info(key).Shape);
            Assert.Equal("pt", file.Metadata["format"]);
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
            Assert.Equal("LORA", cfg["peft_type"]!.GetValue<string>());
            Assert.Equal("CAUSAL_LM", cfg["task_type"]!.GetValue<string>());
            Assert.Equal(4, cfg["r"]!.GetValue<int>());
            Assert.Equal(8.0, cfg["lora_alpha"]!.GetValue<double>());
            Assert.True(cfg["fan_in_fan_out"]!.GetValue<bool>());       // GPT-2's Conv1D
            Assert.Equal("none", cfg["bias"]!.GetValue<string>());
            Assert.Equal("gpt2", cfg["base_model_name_or_path"]!.GetValue<string>());
            Assert.Equal(new[] { "c_attn", "c_proj", "c_fc" }, cfg["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_Llama_adapter_is_saved_with_PEFTs_key_names_and_grouped_query_shapes()
    {
        var model = Load("hf-llama-tiny");
        var adapter = LoraAdapter.Apply(model, new LoraConfig { R = 2 });        // PEFT's Llama default: q_proj, v_proj
        Assert.Equal(new[] { "q_proj", "v_proj" }, adapter.Config.TargetModules);
        var dir = Directory.CreateTempSubdirectory("lora-peft-").FullName;
        try
        {
            adapter.Save(dir);
            using var file = Safetensors.Open(Path.Combine(dir, "adapter_model.safetensors"));
            var expected = new Dictionary<string, long[]>();
            foreach (var l in new[] { 0, 1 })
            {
                var p = $"base_model.model.model.layers.{l}.self_attn.";
                expected[p + "q_proj.lora_A.weight"] = [2, 32]; expected[p + "q_proj.lora_B.weight"] = [32, 2];   // 4 heads × 8
                expected[p + "v_proj.lora_A.weight"] = [2, 32]; expected[p + "v_proj.lora_B.weight"] = [16, 2];   // 2 kv heads × 8
            }
            Assert.Equal(expected.Keys.Order(), file.Names.Order());
            foreach (var (key, shape) in expected) Assert.Equal(shape, file.Info(key).Shape);
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
            Assert.False(cfg["fan_in_fan_out"]!.GetValue<bool>());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_target_module_that_names_no_layer_fails_listing_the_valid_names()
    {
        var model = Load("hf-gpt2-tiny");
        var e = Assert.Throws<ArgumentException>(() => LoraAdapter.Apply(model, new LoraConfig { TargetModules = ["c_attn", "q_proj"] }));
        Assert.Contains("'q_proj'", e.Message);
        Assert.Contains("c_attn, c_proj, c_fc", e.Message);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));      // nothing was changed
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains("lora"));
    }

    [Fact]
    public void Loading_an_adapter_config_with_use_dora_fails_naming_the_field()
    {
        var dir = Directory.CreateTempSubdirectory("lora-bad-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "adapter_config.json"), """{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["c_attn"],"use_dora":true}""");
            File.WriteAllBytes(Path.Combine(dir, "adapter_model.safetensors"), []);
            var e = Assert.Throws<InvalidDataException>(() => LoraAdapter.Load(Load("hf-gpt2-tiny"), dir));
            Assert.Contains("use_dora", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_regex_target_selects_only_the_layers_it_fully_matches_and_is_saved_as_a_string()
    {
        var model = Load("hf-gpt2-tiny");
        var adapter = LoraAdapter.Apply(model, new LoraConfig { R = 2, TargetModules = [@"transformer\.h\.1\.(attn\.c_attn|mlp\.c_proj)"] });
        Assert.Equal(new[] { "transformer.h.1.attn.c_attn", "transformer.h.1.mlp.c_proj" }, adapter.Layers.Keys);
        var dir = Directory.CreateTempSubdirectory("lora-regex-").FullName;
        try
        {
            adapter.Save(dir);
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
            Assert.Equal(@"transformer\.h\.1\.(attn\.c_attn|mlp\.c_proj)", cfg["target_modules"]!.GetValue<string>());
            Assert.Equal(adapter.Layers.Keys, LoraAdapter.Load(Load("hf-gpt2-tiny"), dir).Layers.Keys);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Loading_tensors_of_another_rank_fails_naming_the_tensor_and_r()
    {
        var model = Load("hf-gpt2-tiny");
        var dir = Directory.CreateTempSubdirectory("lora-rank-").FullName;
        try
        {
            LoraAdapter.Apply(model, new LoraConfig { R = 4, TargetModules = ["c_attn"] }).Save(dir);
            var path = Path.Combine(dir, "adapter_config.json");
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"r\": 4", "\"r\": 2"));
            var fresh = Load("hf-gpt2-tiny");
            var e = Assert.Throws<InvalidDataException>(() => LoraAdapter.Load(fresh, dir));
            Assert.Contains("lora_A.weight' has shape [4, 32]", e.Message);
            Assert.Contains("r = 2", e.Message);
            Assert.DoesNotContain(fresh.named_parameters(), p => p.name.Contains("lora"));   // the failed load left the model as it was
        }
        finally { Directory.Delete(dir, true); }
    }
}
