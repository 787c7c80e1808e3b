using System.Text.Json.Nodes;
using SafetyNotebooks.IO;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

/// <summary>SAELens' folder layout: cfg.json + sae_weights.safetensors, written and read.</summary>
public class SaeSaveLoadTests : IDisposable
{
    static SaeSaveLoadTests() => TorchRuntime.EnsureLoaded();

    readonly string _dir = Path.Combine(Path.GetTempPath(), "sae-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

    static SparseAutoencoder RandomSae(SaeArchitecture arch)
    {
        var sae = new SparseAutoencoder(new SaeConfig
        {
            DIn = 6, DSae = 10, Architecture = arch, K = 3, HookName = "blocks.1.hook_resid_pre", ModelName = "tiny", Seed = 5,
        });
        using var noGrad = no_grad();
        random.manual_seed(7);
        foreach (var (_, p) in sae.named_parameters()) p.copy_(randn(p.shape) * 0.5 + (p.dim() == 1 ? 0.1 : 0));
        if (sae.topk_threshold is { } t) t.fill_(0.3);
        return sae;
    }

    [Theory]
    [InlineData(SaeArchitecture.Standard)]
    [InlineData(SaeArchitecture.TopK)]
    [InlineData(SaeArchitecture.JumpReLU)]
    [InlineData(SaeArchitecture.Gated)]
    public void Save_then_load_gives_bitwise_identical_weights_and_outputs(SaeArchitecture arch)
    {
        using var sae = RandomSae(arch);
        sae.Save(_dir);
        using var loaded = SparseAutoencoder.Load(_dir);
        Assert.Equal(arch, loaded.Cfg.Architecture);
        Assert.Equal("blocks.1.hook_resid_pre", loaded.Cfg.HookName);
        Assert.Equal("tiny", loaded.Cfg.ModelName);
        if (arch == SaeArchitecture.TopK) Assert.Equal(3, loaded.Cfg.K);   // k is only written for topk, as SAELens
        var a = sae.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var b = loaded.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(a.Keys.OrderBy(k => k), b.Keys.OrderBy(k => k));
        foreach (var (name, t) in a) Assert.True(Same(t, b[name]), $"{name} differs after the round trip");
        random.manual_seed(8);
        using var x = randn(4, 6);
        using var noGrad = no_grad();
        Assert.True(Same(sae.forward(x), loaded.forward(x)));
    }

    [Fact]
    public void Batch_top_k_is_saved_as_jumprelu_with_its_learned_threshold_as_sae_lens_does()
    {
        using var sae = RandomSae(SaeArchitecture.BatchTopK);
        sae.Save(_dir);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "cfg.json")))!;
        Assert.Equal("jumprelu", cfg["architecture"]!.GetValue<string>());
        using var loaded = SparseAutoencoder.Load(_dir);
        Assert.Equal(SaeArchitecture.JumpReLU, loaded.Cfg.Architecture);
        Assert.All(loaded.threshold!.data<float>().ToArray(), v => Assert.Equal(0.3f, v));
        sae.eval();
        loaded.eval();
        random.manual_seed(9);
        using var x = randn(5, 6);
        using var noGrad = no_grad();
        Assert.True(Same(sae.Encode(x), loaded.Encode(x)));                 // eval-mode BatchTopK = JumpReLU at the global threshold
    }

    [Fact]
    public void The_saved_layout_has_sae_lens_field_names_tensor_names_and_shapes()
    {
        using var sae = RandomSae(SaeArchitecture.TopK);
        sae.Save(_dir);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "cfg.json")))!.AsObject();
        Assert.Equal("topk", cfg["architecture"]!.GetValue<string>());
        Assert.Equal(6, cfg["d_in"]!.GetValue<int>());
        Assert.Equal(10, cfg["d_sae"]!.GetValue<int>());
        Assert.Equal("float32", cfg["dtype"]!.GetValue<string>());
        Assert.True(cfg["apply_b_dec_to_input"]!.GetValue<bool>());
        Assert.Equal("none", cfg["normalize_activations"]!.GetValue<string>());
        Assert.Equal(3, cfg["k"]!.GetValue<int>());
        Assert.Equal("blocks.1.hook_resid_pre", cfg["hook_name"]!.GetValue<string>());
        Assert.Equal("blocks.1.hook_resid_pre", cfg["metadata"]!["hook_name"]!.GetValue<string>());
        using var st = Safetensors.Open(Path.Combine(_dir, "sae_weights.safetensors"));
        Assert.Equal(new[] { "W_dec", "W_enc", "b_dec", "b_enc" }, st.Names.OrderBy(n => n, StringComparer.Ordinal));
        Assert.Equal(new long[] { 6, 10 }, st.Info("W_enc").Shape);
        Assert.Equal(new long[] { 10, 6 }, st.Info("W_dec").Shape);
        Assert.Equal(new long[] { 10 }, st.Info("b_enc").Shape);
        Assert.Equal(new long[] { 6 }, st.Info("b_dec").Shape);
        Assert.Equal("F32", st.Info("W_enc").DType);
    }

    // A cfg.json as SAELens 6 writes it (save_inference_model: inference fields + metadata).
    const string SaeLens6Cfg = """
        {"d_in": 2, "d_sae": 3, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": true,
         "normalize_activations": "none", "reshape_activations": "none",
         "metadata": {"sae_lens_version": "6.5.1", "sae_lens_training_version": "6.5.1", "model_name": "gpt2",
                      "hook_name": "blocks.8.hook_resid_pre", "hook_head_index": null, "prepend_bos": true,
                      "dataset_path": "monology/pile-uncopyrighted", "context_size": 128},
         "architecture": "standard"}
        """;

    // A pre-6.0 cfg.json of a TopK SAE: flat fields, activation_fn_str + activation_fn_kwargs, hook_point.
    const string SaeLens3TopKCfg = """
        {"architecture": "standard", "d_in": 2, "d_sae": 3, "dtype": "torch.float32", "device": "cpu", "model_name": "gpt2-small",
         "hook_point": "blocks.8.hook_resid_pre", "hook_point_layer": 8, "hook_point_head_index": null,
         "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 1}, "apply_b_dec_to_input": false,
         "finetuning_scaling_factor": false, "sae_lens_training_version": "3.5.0", "prepend_bos": true,
         "dataset_path": "Skylion007/openwebtext", "context_size": 128, "normalize_activations": false}
        """;

    void WriteFixture(string cfg)
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "cfg.json"), cfg);
        Safetensors.Save(Path.Combine(_dir, "sae_weights.safetensors"), new Dictionary<string, Tensor>
        {
            ["W_enc"] = tensor(new float[] { 1, 0, 1, 0, 1, 1 }, new long[] { 2, 3 }),
            ["W_dec"] = tensor(new float[] { 2, 0, 0, 1, 0, 0.5f }, new long[] { 3, 2 }),
            ["b_enc"] = tensor(new float[] { 0, 0, -1 }),
            ["b_dec"] = tensor(new float[] { 0.5f, 0 }),
        });
    }

    [Fact]
    public void A_hand_written_sae_lens_6_folder_loads_with_its_hook_from_metadata()
    {
        WriteFixture(SaeLens6Cfg);
        using var sae = SparseAutoencoder.Load(_dir);
        Assert.Equal(SaeArchitecture.Standard, sae.Cfg.Architecture);
        Assert.Equal("blocks.8.hook_resid_pre", sae.Cfg.HookName);
        Assert.Equal("gpt2", sae.Cfg.ModelName);
        // x = [1.5, 2]: x − b_dec = [1, 2], pre = [1, 2, 1 + 2 − 1] → ReLU = [1, 2, 2].
        using var acts = sae.Encode(tensor(new float[] { 1.5f, 2 }, new long[] { 1, 2 }));
        Assert.Equal(new[] { 1f, 2, 2 }, acts.data<float>().ToArray());
    }

    [Fact]
    public void A_hand_written_pre_6_topk_folder_loads_with_k_and_hook_point()
    {
        WriteFixture(SaeLens3TopKCfg);
        using var sae = SparseAutoencoder.Load(_dir);
        Assert.Equal(SaeArchitecture.TopK, sae.Cfg.Architecture);
        Assert.Equal(1, sae.Cfg.K);
        Assert.False(sae.Cfg.ApplyBDecToInput);
        Assert.Equal("blocks.8.hook_resid_pre", sae.Cfg.HookName);
        // No b_dec subtraction: pre = [1.5, 2, 2.5] → top-1 keeps 2.5.
        using var acts = sae.Encode(tensor(new float[] { 1.5f, 2 }, new long[] { 1, 2 }));
        Assert.Equal(new[] { 0f, 0, 2.5f }, acts.data<float>().ToArray());
    }

    [Fact]
    public void Missing_files_fields_and_wrong_shapes_fail_naming_the_file_and_the_fix()
    {
        var missingDir = Assert.Throws<DirectoryNotFoundException>(() => SparseAutoencoder.Load(_dir));
        Assert.Contains("cfg.json", missingDir.Message);

        Directory.CreateDirectory(_dir);
        var noCfg = Assert.Throws<FileNotFoundException>(() => SparseAutoencoder.Load(_dir));
        Assert.Contains("cfg.json not found", noCfg.Message);

        WriteFixture(SaeLens6Cfg);
        File.Delete(Path.Combine(_dir, "sae_weights.safetensors"));
        var noWeights = Assert.Throws<FileNotFoundException>(() => SparseAutoencoder.Load(_dir));
        Assert.Contains("sae_weights.safetensors not found", noWeights.Message);

        WriteFixture(SaeLens6Cfg.Replace("\"d_sae\": 3, ", ""));
        var noField = Assert.Throws<InvalidDataException>(() => SparseAutoencoder.Load(_dir));
        Assert.Contains("cfg.json: missing \"d_sae\"", noField.Message);

        WriteFixture(SaeLens6Cfg.Replace("\"d_sae\": 3", "\"d_sae\": 4"));
        var shape = Assert.Throws<InvalidDataException>(() => SparseAutoencoder.Load(_dir));
        Assert.Contains("sae_weights.safetensors: tensor 'W_enc' has shape [2, 3]", shape.Message);
        Assert.Contains("needs [2, 4]", shape.Message);

        WriteFixture(SaeLens6Cfg.Replace("\"architecture\": \"standard\"", "\"architecture\": \"jumprelu\""));
        var missingTensor = Assert.Throws<InvalidDataException>(() => SparseAutoencoder.Load(_dir));
        Assert.Contains("missing tensor(s) threshold", missingTensor.Message);

        WriteFixture(SaeLens6Cfg.Replace("\"architecture\": \"standard\"", "\"architecture\": \"matryoshka\""));
        var arch = Assert.Throws<InvalidDataException>(() => SparseAutoencoder.Load(_dir));
        Assert.Contains("use one of standard, topk, batchtopk, jumprelu, gated", arch.Message);
    }
}
