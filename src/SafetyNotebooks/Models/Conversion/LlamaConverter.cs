using System.Text.Json;
using System.Text.RegularExpressions;
using SafetyNotebooks.IO;
using SafetyNotebooks.Models.Components;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Conversion;

/// <summary>
/// Llama-style decoders (<c>LlamaForCausalLM</c> and the same layout: Mistral, Qwen2, SmolLM, TinyLlama): RMSNorm,
/// rotary embeddings over the whole head (rotate_half pairing), SwiGLU MLP (<c>gate_proj</c> → <c>W_gate</c>,
/// <c>up_proj</c> → <c>W_in</c>, <c>down_proj</c> → <c>W_out</c>), grouped-query attention when
/// <c>num_key_value_heads</c> &lt; <c>num_attention_heads</c>. <c>nn.Linear</c> weights [out, in] are transposed to
/// TransformerLens' [in, out]; q/k/v/o and MLP biases are loaded when present (Qwen2 has q/k/v biases), else zero.
/// </summary>
/// <remarks>
/// Not supported, refused with a message: <c>rope_scaling</c> other than the default (Llama 3.1's "llama3", YaRN, ...).
/// Mistral's <c>sliding_window</c> is applied (<see cref="HookedTransformerConfig.SlidingWindow"/>); Qwen2's per-layer
/// sliding window (<c>use_sliding_window: true</c> with <c>max_window_layers</c>) is refused.
/// </remarks>
public sealed class LlamaConverter : PretrainedConverter
{
    /// <inheritdoc/>
    public override IReadOnlyList<string> ModelTypes { get; } = ["llama", "mistral", "qwen2"];
    /// <inheritdoc/>
    public override IReadOnlyList<string> Architectures { get; } = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];
    /// <inheritdoc/>
    public override string Family => "Llama";

    /// <inheritdoc/>
    public override HookedTransformerConfig ReadConfig(HfConfig c)
    {
        int d = c.Int("hidden_size", true, family: Family), h = c.Int("num_attention_heads", true, family: Family);
        if (!c.Has("head_dim") && d % h != 0)
            throw new InvalidDataException($"'{c.Path}': hidden_size {d} is not divisible by num_attention_heads {h} and there is no head_dim. Fix one of the fields.");
        if (c.Object("rope_scaling") is { } scaling)
        {
            var type = (scaling["rope_type"] ?? scaling["type"])?.ToString();
            if (type is not null && type != "default")
                throw new InvalidDataException($"'{c.Path}': field 'rope_scaling' asks for \"{type}\" rotary scaling, which FromPretrained does not implement " +
                    "(only the default rotary embedding). Use a checkpoint without rope_scaling.");
        }
        // rope_theta: top level in classic configs; newer transformers also write it inside rope_parameters.
        double theta = c.Double("rope_theta", 10000.0);
        if (!c.Has("rope_theta") && c.Object("rope_parameters")?["rope_theta"] is { } t && t.GetValueKind() == JsonValueKind.Number)
            theta = t.GetValue<double>();
        // Mistral: sliding_window (null or absent: none). Qwen2 writes sliding_window but applies it only with use_sliding_window.
        bool qwen = c.Has("use_sliding_window") || c.Has("max_window_layers");
        int window = qwen ? 0 : c.Int("sliding_window", false, fallback: 0);
        if (qwen && c.Bool("use_sliding_window", false))
            throw new InvalidDataException($"'{c.Path}': field 'use_sliding_window' is true, and Qwen2's per-layer sliding window (max_window_layers) is not implemented: " +
                "set use_sliding_window to false (outputs then equal Hugging Face's for sequences up to sliding_window).");
        try
        {
            int dHead = c.Int("head_dim", false, fallback: d / h);
            return new HookedTransformerConfig
            {
                NLayers = c.Int("num_hidden_layers", true, family: Family), DModel = d, NHeads = h, DHead = dHead,
                NKeyValueHeads = c.Int("num_key_value_heads", false, fallback: h),
                DMlp = c.Int("intermediate_size", true, family: Family),
                NCtx = c.Int("max_position_embeddings", false, fallback: 2048), DVocab = c.Int("vocab_size", true, family: Family),
                ActFn = c.Activation("hidden_act", "silu", "silu", "gelu", "gelu_new", "relu"),
                GatedMlp = true,
                Normalization = NormalizationType.RMS,
                LayerNormEps = c.Double("rms_norm_eps", 1e-6),
                PositionalEmbedding = PositionalEmbeddingType.Rotary,
                RotaryBase = theta,
                InitRange = c.Double("initializer_range", 0.02),
                TiedEmbeddings = c.Bool("tie_word_embeddings", false),
                SlidingWindow = window > 0 ? window : null,
            }.Validate();
        }
        catch (ArgumentException e) { throw new InvalidDataException($"'{c.Path}': {e.Message}", e); }
    }

    static string Prefix(Safetensors file) => file.Contains("model.embed_tokens.weight") ? "model." : "";

    /// <inheritdoc/>
    public override IReadOnlyList<(string Name, long[] Shape)> Tensors(HookedTransformerConfig cfg, Safetensors file)
    {
        var p = Prefix(file);
        int D = cfg.DModel, M = cfg.DMlp, V = cfg.DVocab, Q = cfg.NHeads * cfg.DHead, KV = cfg.EffectiveNKeyValueHeads * cfg.DHead;
        var spec = new List<(string, long[])> { (p + "embed_tokens.weight", [V, D]), (p + "norm.weight", [D]) };
        void Optional(string name, long[] shape) { if (file.Contains(name)) spec.Add((name, shape)); }
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var h = $"{p}layers.{l}.";
            spec.AddRange(new (string, long[])[]
            {
                (h + "input_layernorm.weight", [D]),
                (h + "self_attn.q_proj.weight", [Q, D]), (h + "self_attn.k_proj.weight", [KV, D]),
                (h + "self_attn.v_proj.weight", [KV, D]), (h + "self_attn.o_proj.weight", [D, Q]),
                (h + "post_attention_layernorm.weight", [D]),
                (h + "mlp.gate_proj.weight", [M, D]), (h + "mlp.up_proj.weight", [M, D]), (h + "mlp.down_proj.weight", [D, M]),
            });
            Optional(h + "self_attn.q_proj.bias", [Q]); Optional(h + "self_attn.k_proj.bias", [KV]);
            Optional(h + "self_attn.v_proj.bias", [KV]); Optional(h + "self_attn.o_proj.bias", [D]);
            Optional(h + "mlp.gate_proj.bias", [M]); Optional(h + "mlp.up_proj.bias", [M]); Optional(h + "mlp.down_proj.bias", [D]);
        }
        Optional("lm_head.weight", [V, D]);
        return spec;
    }

    /// <summary>Older Llama checkpoints carry cached rotary frequencies (<c>rotary_emb.inv_freq</c>); they are recomputed.</summary>
    public override bool IsIgnored(string name) => Regex.IsMatch(name, @"^(model\.)?layers\.\d+\.self_attn\.rotary_emb\.inv_freq$");

    /// <inheritdoc/>
    public override void Load(HookedTransformer model, Safetensors file, Func<string, Tensor> get)
    {
        var p = Prefix(file);
        var cfg = model.Cfg;
        int D = cfg.DModel, H = cfg.NHeads, Hkv = cfg.EffectiveNKeyValueHeads, Dh = cfg.DHead;
        // nn.Linear [(head, d_head), d_model] → TransformerLens [head, d_model, d_head].
        Tensor PerHead(Tensor w, int heads) => w.view(heads, Dh, D).permute(0, 2, 1);
        void CopyIf(Tensor dst, string name, Func<Tensor, Tensor> map)
        {
            if (file.Contains(name)) dst.copy_(map(get(name)));
            else dst.zero_();
        }
        model.embed.W_E.copy_(get(p + "embed_tokens.weight"));
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var b = model.blocks[l];
            var a = b.attn;
            var h = $"{p}layers.{l}.";
            b.ln1!.w!.copy_(get(h + "input_layernorm.weight"));
            a.W_Q.copy_(PerHead(get(h + "self_attn.q_proj.weight"), H));
            a.W_K.copy_(PerHead(get(h + "self_attn.k_proj.weight"), Hkv));
            a.W_V.copy_(PerHead(get(h + "self_attn.v_proj.weight"), Hkv));
            CopyIf(a.b_Q, h + "self_attn.q_proj.bias", t => t.view(H, Dh));
            CopyIf(a.b_K, h + "self_attn.k_proj.bias", t => t.view(Hkv, Dh));
            CopyIf(a.b_V, h + "self_attn.v_proj.bias", t => t.view(Hkv, Dh));
            // o_proj [d_model, (head, d_head)] → W_O [head, d_head, d_model].
            a.W_O.copy_(get(h + "self_attn.o_proj.weight").t().reshape(H, Dh, D));
            CopyIf(a.b_O, h + "self_attn.o_proj.bias", t => t);
            b.ln2!.w!.copy_(get(h + "post_attention_layernorm.weight"));
            var mlp = (GatedMlp)b.mlp!;
            mlp.W_gate.copy_(get(h + "mlp.gate_proj.weight").t());
            mlp.W_in.copy_(get(h + "mlp.up_proj.weight").t());
            mlp.W_out.copy_(get(h + "mlp.down_proj.weight").t());
            CopyIf(mlp.b_in, h + "mlp.up_proj.bias", t => t);
            CopyIf(mlp.b_out, h + "mlp.down_proj.bias", t => t);
            if (file.Contains(h + "mlp.gate_proj.bias"))
                throw new InvalidDataException($"Tensor '{h}mlp.gate_proj.bias' in '{file.Path}': gated MLPs with a gate bias are not supported (W_gate has no bias). Use a checkpoint with mlp_bias false.");
        }
        model.ln_final!.w!.copy_(get(p + "norm.weight"));
        // lm_head [d_vocab, d_model]; absent when tied to the embedding (tie_word_embeddings, e.g. SmolLM, small Qwen2).
        model.unembed.W_U.copy_((file.Contains("lm_head.weight") ? get("lm_head.weight") : get(p + "embed_tokens.weight")).t());
        model.unembed.b_U.zero_();
    }
}
