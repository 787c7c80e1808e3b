using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SafetyNotebooks.IO;
using SafetyNotebooks.Models.Components;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

public sealed partial class HookedTransformer
{
    /// <summary>
    /// Loads a Hugging Face GPT-2 checkpoint folder (<c>config.json</c> + <c>model.safetensors</c>, as written by
    /// <c>GPT2LMHeadModel.save_pretrained</c>) into a HookedTransformer with TransformerLens weight names.
    /// </summary>
    /// <remarks>
    /// <para>To use real GPT-2 small: on a machine with internet access, download <c>config.json</c> and
    /// <c>model.safetensors</c> from https://huggingface.co/openai-community/gpt2 (e.g.
    /// <c>huggingface-cli download openai-community/gpt2 config.json model.safetensors --local-dir gpt2</c>),
    /// copy the folder here, and call <c>HookedTransformer.FromPretrained("path/to/gpt2")</c>.</para>
    /// <para>Tensor names may carry the <c>transformer.</c> prefix or not; Conv1D weights ([in, out]) are mapped to
    /// TransformerLens shapes; the fused <c>c_attn</c> is split into per-head q/k/v; a missing <c>lm_head.weight</c>
    /// means tied embeddings (<c>W_U = W_E.T</c>, copied so that weight processing can change it). Weights are
    /// converted to float32. Weights are loaded as-is: call <see cref="ProcessWeights"/> for TransformerLens'
    /// <c>from_pretrained</c> defaults (fold LayerNorm, center writing weights and unembed).</para>
    /// </remarks>
    /// <exception cref="FileNotFoundException">A required file is missing (the message names the path and the fix).</exception>
    /// <exception cref="InvalidDataException">config.json or the weights are invalid or do not match (the message names the file,
    /// the field or tensor, and the fix). Everything is checked before the model is allocated.</exception>
    public static HookedTransformer FromPretrained(string directory) => FromPretrained(directory, out _);

    /// <summary>
    /// <see cref="FromPretrained(string)"/> that also returns what was loaded, like Hugging Face's <c>output_loading_info</c>.
    /// Tensors in the checkpoint that the model does not use (e.g. layers beyond the config's <c>n_layer</c>) are listed in
    /// <see cref="SafetensorsLoadReport.Unexpected"/> and reported as a warning on <paramref name="warnings"/>
    /// (<see cref="Console.Error"/> when null), as Hugging Face does. GPT-2's causal-mask buffers (<c>attn.bias</c>,
    /// <c>attn.masked_bias</c>) are ignored silently, as Hugging Face ignores them.
    /// </summary>
    public static HookedTransformer FromPretrained(string directory, out SafetensorsLoadReport report, TextWriter? warnings = null)
    {
        var cfg = ReadHfConfig(directory);
        var weightsPath = System.IO.Path.Combine(directory, "model.safetensors");
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException(
                $"No model.safetensors in '{System.IO.Path.GetFullPath(directory)}'. Download it next to config.json " +
                "(e.g. from https://huggingface.co/openai-community/gpt2); PyTorch .bin checkpoints are not supported, convert them to safetensors first.", weightsPath);
        using var file = Safetensors.Open(weightsPath);
        // Check every tensor's presence, shape and dtype against the config from the header alone, before the model
        // (and its n_ctx × n_ctx mask) is allocated.
        var used = CheckHfWeights(file, cfg);
        var model = new HookedTransformer(cfg with { TiedEmbeddings = false });
        try { model.LoadHfWeights(file); }
        catch { model.Dispose(); throw; }
        var unexpected = file.Names.Where(n => !used.Contains(n) && !IgnoredHfTensor(n)).ToList();
        var loaded = file.Names.Where(used.Contains).ToList();
        report = new SafetensorsLoadReport(weightsPath, loaded, Array.Empty<string>(), unexpected, file.Metadata.ToDictionary());
        if (report.UnusedWarning is { } w) (warnings ?? Console.Error).WriteLine(w);
        return model;
    }

    /// <summary>GPT-2 checkpoints may carry the causal mask as a buffer; Hugging Face ignores these on load, and so do we.</summary>
    static bool IgnoredHfTensor(string name) =>
        System.Text.RegularExpressions.Regex.IsMatch(name, @"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$");

    /// <summary>Checks names, shapes and dtypes of every tensor the config needs; returns the file names that will be used.</summary>
    static HashSet<string> CheckHfWeights(Safetensors file, HookedTransformerConfig cfg)
    {
        var prefix = file.Contains("transformer.wte.weight") ? "transformer." : "";
        int D = cfg.DModel, M = cfg.DMlp, V = cfg.DVocab;
        var spec = new List<(string Name, long[] Shape)>
        {
            ("wte.weight", new long[] { V, D }), ("wpe.weight", new long[] { cfg.NCtx, D }),
            ("ln_f.weight", new long[] { D }), ("ln_f.bias", new long[] { D }),
        };
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var h = $"h.{l}.";
            spec.AddRange(new (string, long[])[]
            {
                (h + "ln_1.weight", new long[] { D }), (h + "ln_1.bias", new long[] { D }),
                (h + "attn.c_attn.weight", new long[] { D, 3 * D }), (h + "attn.c_attn.bias", new long[] { 3 * D }),
                (h + "attn.c_proj.weight", new long[] { D, D }), (h + "attn.c_proj.bias", new long[] { D }),
                (h + "ln_2.weight", new long[] { D }), (h + "ln_2.bias", new long[] { D }),
                (h + "mlp.c_fc.weight", new long[] { D, M }), (h + "mlp.c_fc.bias", new long[] { M }),
                (h + "mlp.c_proj.weight", new long[] { M, D }), (h + "mlp.c_proj.bias", new long[] { D }),
            });
        }
        var used = new HashSet<string>(StringComparer.Ordinal);
        var configPath = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(file.Path) ?? ".", "config.json");
        void Need(string name, long[] shape, bool prefixed)
        {
            var full = prefixed && file.Contains(prefix + name) ? prefix + name : name;
            if (!file.Contains(full))
            {
                var close = Runtime.NameSuggestions.Closest(prefix + name, file.Names, 3);
                throw new InvalidDataException(
                    $"Tensor '{prefix + name}' is missing from '{file.Path}' (closest names: {string.Join(", ", close)}). " +
                    $"The weights do not match '{configPath}' (e.g. n_layer {cfg.NLayers}): use the config.json that came with these weights.");
            }
            var info = file.Info(full);
            if (!info.Shape.SequenceEqual(shape))
                throw new InvalidDataException(
                    $"Tensor '{full}' in '{file.Path}' has shape [{string.Join(", ", info.Shape)}] but '{configPath}' implies [{string.Join(", ", shape)}]. " +
                    "The weights do not match the config: use the config.json that came with these weights.");
            if (info.DType is not ("F32" or "F16" or "BF16" or "F64"))
                throw new InvalidDataException(
                    $"Tensor '{full}' in '{file.Path}' has dtype {info.DType}, but model weights must be floating point (F32, F16, BF16 or F64). Re-export the checkpoint.");
            used.Add(full);
        }
        foreach (var (name, shape) in spec) Need(name, shape, prefixed: true);
        if (file.Contains("lm_head.weight")) Need("lm_head.weight", new long[] { V, D }, prefixed: false);
        if (file.Contains("lm_head.bias")) Need("lm_head.bias", new long[] { V }, prefixed: false);
        return used;
    }

    /// <summary>Reads a Hugging Face GPT-2 <c>config.json</c> into a <see cref="HookedTransformerConfig"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a JSON object or a field has the wrong type or an out-of-range
    /// value; the message names the file, the field and what is expected.</exception>
    public static HookedTransformerConfig ReadHfConfig(string directory)
    {
        var path = System.IO.Path.Combine(directory, "config.json");
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"No config.json in '{System.IO.Path.GetFullPath(directory)}'. FromPretrained needs a Hugging Face GPT-2 folder " +
                "with config.json and model.safetensors (see the FromPretrained documentation for how to download GPT-2 small).", path);
        JsonNode? parsed;
        try { parsed = JsonNode.Parse(File.ReadAllText(path)); }
        catch (Exception e) when (e is JsonException or DecoderFallbackException or ArgumentException)
        { throw new InvalidDataException($"'{path}' is not valid JSON ({e.Message}). Re-download config.json.", e); }
        if (parsed is not JsonObject root)
            throw new InvalidDataException(
                $"'{path}' must be a JSON object ({{\"n_embd\": 768, ...}}) but is {(parsed is null ? "null" : "a JSON " + parsed.GetValueKind().ToString().ToLowerInvariant())}. " +
                "Re-download config.json from the checkpoint's repository.");

        InvalidDataException BadField(string key, string expected) =>
            new($"'{path}': field '{key}' is {root[key]!.ToJsonString()} but must be {expected}. Fix the field or re-download config.json.");

        int Int(string key, bool required, int fallback = 0)
        {
            var n = root[key];
            if (n is null)
            {
                if (required) throw new InvalidDataException($"'{path}' has no '{key}'. Is it a GPT-2 config (model_type \"gpt2\")?");
                return fallback;
            }
            if (n.GetValueKind() != JsonValueKind.Number || !n.AsValue().TryGetValue<double>(out var d) || d != Math.Floor(d))
                throw BadField(key, "a whole number (written without quotes)");
            if (d < 1 || d > int.MaxValue) throw BadField(key, $"a positive whole number no larger than {int.MaxValue}");
            return (int)d;
        }
        double Double(string key, double fallback)
        {
            var n = root[key];
            if (n is null) return fallback;
            if (n.GetValueKind() != JsonValueKind.Number || !n.AsValue().TryGetValue<double>(out var d) || !double.IsFinite(d) || d <= 0)
                throw BadField(key, "a positive number");
            return d;
        }
        string? Str(string key)
        {
            var n = root[key];
            if (n is null) return null;
            if (n.GetValueKind() != JsonValueKind.String) throw BadField(key, "a string");
            return n.GetValue<string>();
        }
        bool Bool(string key, bool fallback)
        {
            var n = root[key];
            if (n is null) return fallback;
            if (n.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False)) throw BadField(key, "true or false");
            return n.GetValue<bool>();
        }

        var modelType = Str("model_type");
        if (modelType is not null && modelType != "gpt2")
            throw new InvalidDataException($"'{path}' describes a '{modelType}' model; FromPretrained supports GPT-2 checkpoints only.");
        int nEmbd = Int("n_embd", true), nHead = Int("n_head", true);
        if (nEmbd % nHead != 0)
            throw new InvalidDataException($"'{path}': n_embd {nEmbd} is not divisible by n_head {nHead}. Fix one of the fields or re-download config.json.");
        var act = Str("activation_function") ?? "gelu_new";
        if (act == "gelu_pytorch_tanh") act = "gelu_new";
        if (!HookedTransformerConfig.ActFns.Contains(act))
            throw BadField("activation_function", "one of " + string.Join(", ", HookedTransformerConfig.ActFns.Select(a => "\"" + a + "\"")));
        try
        {
            return new HookedTransformerConfig
            {
                NLayers = Int("n_layer", true), DModel = nEmbd, NHeads = nHead, DHead = nEmbd / nHead,
                DMlp = Int("n_inner", false, fallback: 4 * nEmbd),
                NCtx = Int("n_positions", true), DVocab = Int("vocab_size", true),
                ActFn = act,
                LayerNormEps = Double("layer_norm_epsilon", 1e-5),
                InitRange = Double("initializer_range", 0.02),
                TiedEmbeddings = Bool("tie_word_embeddings", true),
                Normalization = NormalizationType.LN,
            }.Validate();
        }
        catch (ArgumentException e) { throw new InvalidDataException($"'{path}': {e.Message}", e); }
    }

    void LoadHfWeights(Safetensors file)
    {
        var prefix = file.Contains("transformer.wte.weight") ? "transformer." : "";
        var cfg = Cfg;
        using var scope = NewDisposeScope();
        using var _ = no_grad();

        Tensor Get(string name, params long[] shape)
        {
            var full = file.Contains(prefix + name) ? prefix + name : name;
            var t = file.Read(full).to_type(ScalarType.Float32);
            if (!t.shape.SequenceEqual(shape))
                throw new InvalidDataException(
                    $"Tensor '{full}' in '{file.Path}' has shape [{string.Join(", ", t.shape)}] but config.json implies [{string.Join(", ", shape)}]. " +
                    "The weights do not match the config: use the config.json that came with these weights.");
            return t;
        }
        void Copy(Tensor dst, Tensor src) => dst.copy_(src);

        int D = cfg.DModel, H = cfg.NHeads, Dh = cfg.DHead, M = cfg.DMlp;
        Copy(_embed.W_E, Get("wte.weight", cfg.DVocab, D));
        Copy(_posEmbed!.W_pos, Get("wpe.weight", cfg.NCtx, D));
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var b = _blockArray[l];
            var h = $"h.{l}.";
            Copy(b.ln1!.w!, Get(h + "ln_1.weight", D));
            Copy(b.ln1.b!, Get(h + "ln_1.bias", D));
            // Conv1D c_attn: [d_model, 3*d_model] laid out as [d_model, (q|k|v), head, d_head] — exactly W_QKV's layout.
            Copy(b.attn.W_QKV, Get(h + "attn.c_attn.weight", D, 3 * D).view(D, 3, H, Dh));
            Copy(b.attn.b_QKV, Get(h + "attn.c_attn.bias", 3 * D).view(3, H, Dh));
            // Conv1D c_proj: [(head, d_head), d_model] → W_O [head, d_head, d_model].
            Copy(b.attn.W_O, Get(h + "attn.c_proj.weight", D, D).view(H, Dh, D));
            Copy(b.attn.b_O, Get(h + "attn.c_proj.bias", D));
            Copy(b.ln2!.w!, Get(h + "ln_2.weight", D));
            Copy(b.ln2.b!, Get(h + "ln_2.bias", D));
            Copy(b.mlp!.W_in, Get(h + "mlp.c_fc.weight", D, M));
            Copy(b.mlp.b_in, Get(h + "mlp.c_fc.bias", M));
            Copy(b.mlp.W_out, Get(h + "mlp.c_proj.weight", M, D));
            Copy(b.mlp.b_out, Get(h + "mlp.c_proj.bias", D));
        }
        Copy(_lnFinal!.w!, Get("ln_f.weight", D));
        Copy(_lnFinal.b!, Get("ln_f.bias", D));
        // lm_head.weight is [d_vocab, d_model] (nn.Linear); absent when tied to wte.
        var lmHead = file.Contains("lm_head.weight") ? Get("lm_head.weight", cfg.DVocab, D) : Get("wte.weight", cfg.DVocab, D);
        Copy(_unembed.W_U, lmHead.t());
        if (file.Contains("lm_head.bias")) Copy(_unembed.b_U, Get("lm_head.bias", cfg.DVocab));
        else _unembed.b_U.zero_();
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
