using System.Text.Json;
using System.Text.Json.Nodes;
using SafetyNotebooks.IO;
using SafetyNotebooks.Models.Components;
using SafetyNotebooks.Models.Conversion;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

public sealed partial class HookedTransformer
{
    /// <summary>
    /// Loads a Hugging Face checkpoint folder (<c>config.json</c> + <c>model.safetensors</c>, as <c>save_pretrained</c> writes
    /// them) into a HookedTransformer with TransformerLens weight names. Supported families, chosen by <c>config.json</c>'s
    /// <c>model_type</c>: GPT-2 (<c>gpt2</c>), Llama-style (<c>llama</c>, <c>mistral</c>, <c>qwen2</c>; also SmolLM and
    /// TinyLlama, which are <c>llama</c>) and GPT-NeoX (<c>gpt_neox</c>: Pythia); see <see cref="PretrainedConverters"/>
    /// and docs/models.md.
    /// </summary>
    /// <remarks>
    /// <para>To use real GPT-2 small: on a machine with internet access, download <c>config.json</c> and
    /// <c>model.safetensors</c> from https://huggingface.co/openai-community/gpt2 (e.g.
    /// <c>huggingface-cli download openai-community/gpt2 config.json model.safetensors --local-dir gpt2</c>),
    /// copy the folder here, and call <c>HookedTransformer.FromPretrained("path/to/gpt2")</c>.</para>
    /// <para>Each family's converter (under <c>Models/Conversion/</c>) maps Hugging Face names and layouts to TransformerLens
    /// shapes. Weights stored as float16, bfloat16 or float64 are converted to float32 (or to the dtype asked for). Weights are
    /// loaded as-is: call <see cref="ProcessWeights"/> for TransformerLens' <c>from_pretrained</c> defaults (fold LayerNorm,
    /// center writing weights and unembed).</para>
    /// </remarks>
    /// <exception cref="FileNotFoundException">A required file is missing (the message names the path and the fix).</exception>
    /// <exception cref="InvalidDataException">config.json or the weights are invalid or do not match, or the family is not
    /// supported (the message names the file, the field or tensor, and the fix, or lists the supported families). Everything is
    /// checked before the model is allocated.</exception>
    public static HookedTransformer FromPretrained(string directory) => FromPretrained(directory, out _);

    /// <summary>
    /// <see cref="FromPretrained(string)"/> that also returns what was loaded, like Hugging Face's <c>output_loading_info</c>.
    /// Tensors in the checkpoint that the model does not use (e.g. layers beyond the config's <c>n_layer</c>) are listed in
    /// <see cref="SafetensorsLoadReport.Unexpected"/> and reported as a warning on <paramref name="warnings"/>
    /// (<see cref="Console.Error"/> when null), as Hugging Face does. Buffers that are not weights (GPT-2's and GPT-NeoX's causal
    /// masks, cached rotary frequencies) are ignored silently, as Hugging Face ignores them.
    /// </summary>
    /// <param name="directory">The checkpoint folder.</param>
    /// <param name="report">What was loaded and what was not used.</param>
    /// <param name="warnings">Where the unused-tensor warning goes (<see cref="Console.Error"/> when null).</param>
    /// <param name="dtype">The dtype of the model's parameters (default float32, whatever the checkpoint stores); e.g.
    /// <see cref="ScalarType.BFloat16"/> keeps a bf16 checkpoint in bf16.</param>
    /// <param name="nCtx">Overrides the context length from config.json (e.g. for a rotary model whose
    /// <c>max_position_embeddings</c> is too long for an n_ctx × n_ctx causal mask); not allowed for GPT-2, whose <c>wpe</c> fixes it.</param>
    public static HookedTransformer FromPretrained(string directory, out SafetensorsLoadReport report, TextWriter? warnings = null,
        ScalarType dtype = ScalarType.Float32, int? nCtx = null)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new ArgumentException($"FromPretrained dtype {dtype} is not a floating-point type; use ScalarType.Float32 (default), BFloat16, Float16 or Float64.", nameof(dtype));
        var hf = HfConfig.Read(directory);
        var converter = PretrainedConverters.For(hf);
        var cfg = converter.ReadConfig(hf);
        if (nCtx is { } n)
        {
            if (n <= 0) throw new ArgumentException($"FromPretrained nCtx is {n} but must be positive (the longest sequence you will run).", nameof(nCtx));
            if (cfg.PositionalEmbedding == PositionalEmbeddingType.Standard)
                throw new ArgumentException($"FromPretrained nCtx cannot change the context of a {converter.Family} model: its learned positional embedding fixes it at {cfg.NCtx}. Leave nCtx null.", nameof(nCtx));
            cfg = cfg with { NCtx = n };
        }
        if (dtype != ScalarType.Float32) cfg = cfg with { DType = dtype };
        var weightsPath = System.IO.Path.Combine(directory, "model.safetensors");
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException(
                $"No model.safetensors in '{System.IO.Path.GetFullPath(directory)}'. Download it next to config.json " +
                "(e.g. from https://huggingface.co/openai-community/gpt2); PyTorch .bin checkpoints are not supported, convert them to safetensors first.", weightsPath);
        using var file = Safetensors.Open(weightsPath);
        // Check every tensor's presence, shape and dtype against the config from the header alone, before the model
        // (and its n_ctx × n_ctx mask) is allocated.
        var spec = converter.Tensors(cfg, file);
        var used = CheckHfWeights(file, spec, hf.Path);
        var shapes = spec.ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal);
        var model = new HookedTransformer(cfg with { TiedEmbeddings = false });
        try
        {
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                converter.Load(model, file, name =>
                {
                    if (!shapes.TryGetValue(name, out var shape))
                        throw new InvalidOperationException($"The {converter.Family} converter read '{name}', which it did not list in Tensors (a bug in the converter).");
                    return file.Read(name).to_type(ScalarType.Float32).view(shape);
                });
            }
        }
        catch { model.Dispose(); throw; }
        var unexpected = file.Names.Where(n => !used.Contains(n) && !converter.IsIgnored(n)).ToList();
        var loaded = file.Names.Where(used.Contains).ToList();
        report = new SafetensorsLoadReport(weightsPath, loaded, Array.Empty<string>(), unexpected, file.Metadata.ToDictionary());
        if (report.UnusedWarning is { } w) (warnings ?? Console.Error).WriteLine(w);
        return model;
    }

    /// <summary>Checks names, shapes and dtypes of every tensor the converter listed; returns the file names that will be used.</summary>
    static HashSet<string> CheckHfWeights(Safetensors file, IReadOnlyList<(string Name, long[] Shape)> spec, string configPath)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in spec)
        {
            if (!file.Contains(name))
            {
                var close = Runtime.NameSuggestions.Closest(name, file.Names, 3);
                throw new InvalidDataException(
                    $"Tensor '{name}' is missing from '{file.Path}' (closest names: {string.Join(", ", close)}). " +
                    $"The weights do not match '{configPath}' (e.g. its number of layers): use the config.json that came with these weights.");
            }
            var info = file.Info(name);
            if (!info.Shape.SequenceEqual(shape))
                throw new InvalidDataException(
                    $"Tensor '{name}' in '{file.Path}' has shape [{string.Join(", ", info.Shape)}] but '{configPath}' implies [{string.Join(", ", shape)}]. " +
                    "The weights do not match the config: use the config.json that came with these weights.");
            if (info.DType is not ("F32" or "F16" or "BF16" or "F64"))
                throw new InvalidDataException(
                    $"Tensor '{name}' in '{file.Path}' has dtype {info.DType}, but model weights must be floating point (F32, F16, BF16 or F64). Re-export the checkpoint.");
            used.Add(name);
        }
        return used;
    }

    /// <summary>Reads a Hugging Face <c>config.json</c> (of any supported family, see <see cref="PretrainedConverters"/>) into a <see cref="HookedTransformerConfig"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a JSON object, a field has the wrong type or an out-of-range
    /// value, or the family is not supported; the message names the file, the field and what is expected.</exception>
    public static HookedTransformerConfig ReadHfConfig(string directory)
    {
        var hf = HfConfig.Read(directory);
        return PretrainedConverters.For(hf).ReadConfig(hf);
    }

    /// <summary>
    /// Writes the model as a Hugging Face GPT-2 checkpoint folder (<c>config.json</c> + <c>model.safetensors</c> with
    /// <c>transformer.</c>-prefixed Conv1D names), loadable by <see cref="FromPretrained(string)"/> and by
    /// <c>transformers.GPT2LMHeadModel.from_pretrained</c>.
    /// </summary>
    /// <remarks>
    /// Only GPT-2-shaped models can be written: LayerNorm (not folded), standard positional embedding, MLPs, and an
    /// activation GPT-2 supports. <c>lm_head.weight</c> is omitted when <c>W_U == W_E.T</c> (tied); a non-zero
    /// <c>b_U</c> is written as <c>lm_head.bias</c>, which Hugging Face ignores.
    /// </remarks>
    public void SavePretrained(string directory)
    {
        var cfg = Cfg;
        if (cfg.Normalization != NormalizationType.LN || _posEmbed is null || cfg.AttnOnly)
            throw new InvalidOperationException(
                "SavePretrained writes GPT-2 checkpoints, which need LayerNorm (Normalization = LN, i.e. not folded), a standard " +
                "positional embedding and MLPs. Save before ProcessWeights/FoldLayerNorm, or use a GPT-2-shaped config.");
        if (cfg.DHead * cfg.NHeads != cfg.DModel)
            throw new InvalidOperationException($"GPT-2 checkpoints need DHead * NHeads == DModel ({cfg.DHead} * {cfg.NHeads} != {cfg.DModel}).");
        Directory.CreateDirectory(directory);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        int D = cfg.DModel;
        var t = new Dictionary<string, Tensor>
        {
            ["transformer.wte.weight"] = _embed.W_E,
            ["transformer.wpe.weight"] = _posEmbed.W_pos,
            ["transformer.ln_f.weight"] = _lnFinal!.w!,
            ["transformer.ln_f.bias"] = _lnFinal.b!,
        };
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var b = _blockArray[l];
            var h = $"transformer.h.{l}.";
            t[h + "ln_1.weight"] = b.ln1!.w!;
            t[h + "ln_1.bias"] = b.ln1.b!;
            t[h + "attn.c_attn.weight"] = b.attn.W_QKV.view(D, 3 * D);
            t[h + "attn.c_attn.bias"] = b.attn.b_QKV.view(3 * D);
            t[h + "attn.c_proj.weight"] = b.attn.W_O.view(D, D);
            t[h + "attn.c_proj.bias"] = b.attn.b_O;
            t[h + "ln_2.weight"] = b.ln2!.w!;
            t[h + "ln_2.bias"] = b.ln2.b!;
            t[h + "mlp.c_fc.weight"] = b.mlp!.W_in;
            t[h + "mlp.c_fc.bias"] = b.mlp.b_in;
            t[h + "mlp.c_proj.weight"] = b.mlp.W_out;
            t[h + "mlp.c_proj.bias"] = b.mlp.b_out;
        }
        bool tied = _unembed.IsTied || _unembed.W_U.allclose(_embed.W_E.t(), 0, 0);
        if (!tied) t["lm_head.weight"] = _unembed.W_U.t();
        if (_unembed.b_U.abs().max().item<float>() != 0) t["lm_head.bias"] = _unembed.b_U;
        Safetensors.Save(System.IO.Path.Combine(directory, "model.safetensors"), t, new Dictionary<string, string> { ["format"] = "pt" });

        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["model_type"] = "gpt2",
            ["activation_function"] = cfg.ActFn,
            ["n_layer"] = cfg.NLayers,
            ["n_embd"] = cfg.DModel,
            ["n_head"] = cfg.NHeads,
            ["n_inner"] = cfg.DMlp == 4 * cfg.DModel ? null : cfg.DMlp,
            ["n_positions"] = cfg.NCtx,
            ["vocab_size"] = cfg.DVocab,
            ["layer_norm_epsilon"] = cfg.LayerNormEps,
            ["initializer_range"] = cfg.EffectiveInitRange,
            ["tie_word_embeddings"] = tied,
            ["scale_attn_weights"] = true,
            ["dtype"] = "float32",
        };
        AtomicFile.WriteAllText(System.IO.Path.Combine(directory, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
