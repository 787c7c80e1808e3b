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
    public static HookedTransformer FromPretrained(string directory)
    {
        var cfg = ReadHfConfig(directory);
        var weightsPath = System.IO.Path.Combine(directory, "model.safetensors");
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException(
                $"No model.safetensors in '{System.IO.Path.GetFullPath(directory)}'. Download it next to config.json " +
                "(e.g. from https://huggingface.co/openai-community/gpt2); PyTorch .bin checkpoints are not supported, convert them to safetensors first.", weightsPath);
        var model = new HookedTransformer(cfg with { TiedEmbeddings = false });
        using var file = Safetensors.Open(weightsPath);
        model.LoadHfWeights(file);
        return model;
    }

    /// <summary>Reads a Hugging Face GPT-2 <c>config.json</c> into a <see cref="HookedTransformerConfig"/>.</summary>
    public static HookedTransformerConfig ReadHfConfig(string directory)
    {
        var path = System.IO.Path.Combine(directory, "config.json");
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"No config.json in '{System.IO.Path.GetFullPath(directory)}'. FromPretrained needs a Hugging Face GPT-2 folder " +
                "with config.json and model.safetensors (see the FromPretrained documentation for how to download GPT-2 small).", path);
        JsonNode root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) ?? throw new InvalidDataException("empty"); }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        { throw new InvalidDataException($"'{path}' is not valid JSON ({e.Message}). Re-download config.json.", e); }

        int Req(string key)
        {
            var n = root[key];
            if (n is null) throw new InvalidDataException($"'{path}' has no '{key}'. Is it a GPT-2 config (model_type \"gpt2\")?");
            return n.GetValue<int>();
        }
        var modelType = root["model_type"]?.GetValue<string>();
        if (modelType is not null && modelType != "gpt2")
            throw new InvalidDataException($"'{path}' describes a '{modelType}' model; FromPretrained supports GPT-2 checkpoints only.");
        int nEmbd = Req("n_embd"), nHead = Req("n_head");
        if (nEmbd % nHead != 0) throw new InvalidDataException($"'{path}': n_embd {nEmbd} is not divisible by n_head {nHead}.");
        var nInner = root["n_inner"];
        var act = root["activation_function"]?.GetValue<string>() ?? "gelu_new";
        return new HookedTransformerConfig
        {
            NLayers = Req("n_layer"), DModel = nEmbd, NHeads = nHead, DHead = nEmbd / nHead,
            DMlp = nInner is null ? 4 * nEmbd : nInner.GetValue<int>(),
            NCtx = Req("n_positions"), DVocab = Req("vocab_size"),
            ActFn = act == "gelu_pytorch_tanh" ? "gelu_new" : act,
            LayerNormEps = root["layer_norm_epsilon"]?.GetValue<double>() ?? 1e-5,
            InitRange = root["initializer_range"]?.GetValue<double>() ?? 0.02,
            TiedEmbeddings = root["tie_word_embeddings"]?.GetValue<bool>() ?? true,
            Normalization = NormalizationType.LN,
        }.Validate();
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
    /// <c>transformer.</c>-prefixed Conv1D names), loadable by <see cref="FromPretrained"/> and by
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
        File.WriteAllText(System.IO.Path.Combine(directory, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
