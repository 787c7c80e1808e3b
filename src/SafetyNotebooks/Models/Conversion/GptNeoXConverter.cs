using System.Text.RegularExpressions;
using SafetyNotebooks.IO;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Conversion;

/// <summary>
/// GPT-NeoX (<c>GPTNeoXForCausalLM</c>: Pythia, GPT-NeoX-20B): LayerNorm, partial rotary embeddings
/// (<c>rotary_pct</c> of each head, rotate_half pairing), parallel attention + MLP (<c>use_parallel_residual</c>), and a
/// fused <c>query_key_value</c> interleaved per head (rows h·3·d_head … are head h's q, then k, then v; not
/// [q_all; k_all; v_all]). <c>nn.Linear</c> weights [out, in] are transposed to TransformerLens' [in, out].
/// </summary>
public sealed class GptNeoXConverter : PretrainedConverter
{
    /// <inheritdoc/>
    public override IReadOnlyList<string> ModelTypes { get; } = ["gpt_neox"];
    /// <inheritdoc/>
    public override IReadOnlyList<string> Architectures { get; } = ["GPTNeoXForCausalLM"];
    /// <inheritdoc/>
    public override string Family => "GPT-NeoX";

    /// <inheritdoc/>
    public override HookedTransformerConfig ReadConfig(HfConfig c)
    {
        int d = c.Int("hidden_size", true, family: Family), h = c.Int("num_attention_heads", true, family: Family);
        if (d % h != 0)
            throw new InvalidDataException($"'{c.Path}': hidden_size {d} is not divisible by num_attention_heads {h}. Fix one of the fields or re-download config.json.");
        if (c.Object("rope_scaling") is { } scaling && (scaling["rope_type"] ?? scaling["type"])?.ToString() is { } type && type != "default")
            throw new InvalidDataException($"'{c.Path}': field 'rope_scaling' asks for \"{type}\" rotary scaling, which FromPretrained does not implement. Use a checkpoint without rope_scaling.");
        int dHead = d / h;
        // Classic Pythia names first (rotary_pct, rotary_emb_base); newer transformers also write partial_rotary_factor / rope_theta.
        double pct = c.Has("rotary_pct") ? c.Double("rotary_pct", 0.25) : c.Double("partial_rotary_factor", 0.25);
        if (pct > 1) throw c.BadField(c.Has("rotary_pct") ? "rotary_pct" : "partial_rotary_factor", "a fraction in (0, 1]");
        double theta = c.Has("rotary_emb_base") ? c.Double("rotary_emb_base", 10000.0) : c.Double("rope_theta", 10000.0);
        try
        {
            return new HookedTransformerConfig
            {
                NLayers = c.Int("num_hidden_layers", true, family: Family), DModel = d, NHeads = h, DHead = dHead,
                DMlp = c.Int("intermediate_size", false, fallback: 4 * d),
                NCtx = c.Int("max_position_embeddings", false, fallback: 2048), DVocab = c.Int("vocab_size", true, family: Family),
                ActFn = c.Activation("hidden_act", "gelu", "gelu", "gelu_new", "relu", "silu"),
                Normalization = NormalizationType.LN,
                LayerNormEps = c.Double("layer_norm_eps", 1e-5),
                PositionalEmbedding = PositionalEmbeddingType.Rotary,
                RotaryDim = (int)(dHead * pct),   // Hugging Face: int(head_size * rotary_pct)
                RotaryBase = theta,
                ParallelAttnMlp = c.Bool("use_parallel_residual", true),
                InitRange = c.Double("initializer_range", 0.02),
                TiedEmbeddings = c.Bool("tie_word_embeddings", false),
            }.Validate();
        }
        catch (ArgumentException e) { throw new InvalidDataException($"'{c.Path}': {e.Message}", e); }
    }

    static string Prefix(Safetensors file) => file.Contains("gpt_neox.embed_in.weight") ? "gpt_neox." : "";

    /// <inheritdoc/>
    public override IReadOnlyList<(string Name, long[] Shape)> Tensors(HookedTransformerConfig cfg, Safetensors file)
    {
        var p = Prefix(file);
        int D = cfg.DModel, M = cfg.DMlp, V = cfg.DVocab;
        var spec = new List<(string, long[])>
        {
            (p + "embed_in.weight", [V, D]), (p + "final_layer_norm.weight", [D]), (p + "final_layer_norm.bias", [D]),
        };
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var h = $"{p}layers.{l}.";
            spec.AddRange(new (string, long[])[]
            {
                (h + "input_layernorm.weight", [D]), (h + "input_layernorm.bias", [D]),
                (h + "attention.query_key_value.weight", [3 * D, D]),
                (h + "attention.dense.weight", [D, D]),
                (h + "post_attention_layernorm.weight", [D]), (h + "post_attention_layernorm.bias", [D]),
                (h + "mlp.dense_h_to_4h.weight", [M, D]), (h + "mlp.dense_h_to_4h.bias", [M]),
                (h + "mlp.dense_4h_to_h.weight", [D, M]), (h + "mlp.dense_4h_to_h.bias", [D]),
            });
            // attention_bias (default true) gives query_key_value and dense biases.
            if (file.Contains(h + "attention.query_key_value.bias")) spec.Add((h + "attention.query_key_value.bias", [3 * D]));
            if (file.Contains(h + "attention.dense.bias")) spec.Add((h + "attention.dense.bias", [D]));
        }
        spec.Add(("embed_out.weight", [V, D]));
        return spec;
    }

    /// <summary>Pythia checkpoints carry the causal mask and cached rotary frequencies as buffers; they are not weights.</summary>
    public override bool IsIgnored(string name) =>
        Regex.IsMatch(name, @"^(gpt_neox\.)?layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$");

    /// <inheritdoc/>
    public override void Load(HookedTransformer model, Safetensors file, Func<string, Tensor> get)
    {
        var p = Prefix(file);
        var cfg = model.Cfg;
        int D = cfg.DModel, H = cfg.NHeads, Dh = cfg.DHead;
        model.embed.W_E.copy_(get(p + "embed_in.weight"));
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var b = model.blocks[l];
            var h = $"{p}layers.{l}.";
            b.ln1!.w!.copy_(get(h + "input_layernorm.weight"));
            b.ln1.b!.copy_(get(h + "input_layernorm.bias"));
            // query_key_value [(head, q|k|v, d_head), d_model] → W_QKV [d_model, q|k|v, head, d_head].
            b.attn.W_QKV.copy_(get(h + "attention.query_key_value.weight").view(H, 3, Dh, D).permute(3, 1, 0, 2));
            if (file.Contains(h + "attention.query_key_value.bias"))
                b.attn.b_QKV.copy_(get(h + "attention.query_key_value.bias").view(H, 3, Dh).permute(1, 0, 2));
            else b.attn.b_QKV.zero_();
            // dense [d_model, (head, d_head)] → W_O [head, d_head, d_model].
            b.attn.W_O.copy_(get(h + "attention.dense.weight").t().reshape(H, Dh, D));
            if (file.Contains(h + "attention.dense.bias")) b.attn.b_O.copy_(get(h + "attention.dense.bias"));
            else b.attn.b_O.zero_();
            b.ln2!.w!.copy_(get(h + "post_attention_layernorm.weight"));
            b.ln2.b!.copy_(get(h + "post_attention_layernorm.bias"));
            b.mlp!.W_in.copy_(get(h + "mlp.dense_h_to_4h.weight").t());
            b.mlp.b_in.copy_(get(h + "mlp.dense_h_to_4h.bias"));
            b.mlp.W_out.copy_(get(h + "mlp.dense_4h_to_h.weight").t());
            b.mlp.b_out.copy_(get(h + "mlp.dense_4h_to_h.bias"));
        }
        model.ln_final!.w!.copy_(get(p + "final_layer_norm.weight"));
        model.ln_final.b!.copy_(get(p + "final_layer_norm.bias"));
        model.unembed.W_U.copy_(get("embed_out.weight").t());
        model.unembed.b_U.zero_();
    }
}
