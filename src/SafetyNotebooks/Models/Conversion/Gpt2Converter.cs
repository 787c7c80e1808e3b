using System.Text.RegularExpressions;
using SafetyNotebooks.IO;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Conversion;

/// <summary>
/// GPT-2 (<c>GPT2LMHeadModel</c>): Conv1D weights ([in, out]) map to TransformerLens shapes directly; the fused <c>c_attn</c>
/// [d_model, 3·d_model] is W_QKV's layout [d_model, (q|k|v), head, d_head]; names may carry the <c>transformer.</c> prefix
/// or not; a missing <c>lm_head.weight</c> means tied embeddings (<c>W_U = W_E.T</c>, copied).
/// </summary>
public sealed class Gpt2Converter : PretrainedConverter
{
    /// <inheritdoc/>
    public override IReadOnlyList<string> ModelTypes { get; } = ["gpt2"];
    /// <inheritdoc/>
    public override IReadOnlyList<string> Architectures { get; } = ["GPT2LMHeadModel", "GPT2Model"];
    /// <inheritdoc/>
    public override string Family => "GPT-2";

    /// <inheritdoc/>
    public override HookedTransformerConfig ReadConfig(HfConfig c)
    {
        Gpt2ConfigChecks.RefuseUnsupportedAttention(c.Root, c.Path);   // attention variants we would otherwise compute wrongly
        int nEmbd = c.Int("n_embd", true), nHead = c.Int("n_head", true);
        if (nEmbd % nHead != 0)
            throw new InvalidDataException($"'{c.Path}': n_embd {nEmbd} is not divisible by n_head {nHead}. Fix one of the fields or re-download config.json.");
        var act = c.Activation("activation_function", "gelu_new", "gelu_new", "gelu", "relu", "solu");
        try
        {
            return new HookedTransformerConfig
            {
                NLayers = c.Int("n_layer", true), DModel = nEmbd, NHeads = nHead, DHead = nEmbd / nHead,
                DMlp = c.Int("n_inner", false, fallback: 4 * nEmbd),
                NCtx = c.Int("n_positions", true), DVocab = c.Int("vocab_size", true),
                ActFn = act,
                LayerNormEps = c.Double("layer_norm_epsilon", 1e-5),
                InitRange = c.Double("initializer_range", 0.02),
                TiedEmbeddings = c.Bool("tie_word_embeddings", true),
                Normalization = NormalizationType.LN,
            }.Validate();
        }
        catch (ArgumentException e) { throw new InvalidDataException($"'{c.Path}': {e.Message}", e); }
    }

    static string Prefix(Safetensors file) => file.Contains("transformer.wte.weight") ? "transformer." : "";

    /// <inheritdoc/>
    public override IReadOnlyList<(string Name, long[] Shape)> Tensors(HookedTransformerConfig cfg, Safetensors file)
    {
        var p = Prefix(file);
        int D = cfg.DModel, M = cfg.DMlp, V = cfg.DVocab;
        var spec = new List<(string, long[])>
        {
            (p + "wte.weight", [V, D]), (p + "wpe.weight", [cfg.NCtx, D]),
            (p + "ln_f.weight", [D]), (p + "ln_f.bias", [D]),
        };
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var h = $"{p}h.{l}.";
            spec.AddRange(new (string, long[])[]
            {
                (h + "ln_1.weight", [D]), (h + "ln_1.bias", [D]),
                (h + "attn.c_attn.weight", [D, 3 * D]), (h + "attn.c_attn.bias", [3 * D]),
                (h + "attn.c_proj.weight", [D, D]), (h + "attn.c_proj.bias", [D]),
                (h + "ln_2.weight", [D]), (h + "ln_2.bias", [D]),
                (h + "mlp.c_fc.weight", [D, M]), (h + "mlp.c_fc.bias", [M]),
                (h + "mlp.c_proj.weight", [M, D]), (h + "mlp.c_proj.bias", [D]),
            });
        }
        if (file.Contains("lm_head.weight")) spec.Add(("lm_head.weight", [V, D]));
        if (file.Contains("lm_head.bias")) spec.Add(("lm_head.bias", [V]));
        return spec;
    }

    /// <summary>GPT-2 checkpoints may carry the causal mask as a buffer (<c>attn.bias</c>, <c>attn.masked_bias</c>).</summary>
    public override bool IsIgnored(string name) => Regex.IsMatch(name, @"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$");

    /// <inheritdoc/>
    public override void Load(HookedTransformer model, Safetensors file, Func<string, Tensor> get)
    {
        var p = Prefix(file);
        var cfg = model.Cfg;
        int D = cfg.DModel, H = cfg.NHeads, Dh = cfg.DHead;
        model.embed.W_E.copy_(get(p + "wte.weight"));
        model.pos_embed!.W_pos.copy_(get(p + "wpe.weight"));
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var b = model.blocks[l];
            var h = $"{p}h.{l}.";
            b.ln1!.w!.copy_(get(h + "ln_1.weight"));
            b.ln1.b!.copy_(get(h + "ln_1.bias"));
            // Conv1D c_attn: [d_model, 3*d_model] laid out as [d_model, (q|k|v), head, d_head] — exactly W_QKV's layout.
            b.attn.W_QKV.copy_(get(h + "attn.c_attn.weight").view(D, 3, H, Dh));
            b.attn.b_QKV.copy_(get(h + "attn.c_attn.bias").view(3, H, Dh));
            // Conv1D c_proj: [(head, d_head), d_model] → W_O [head, d_head, d_model].
            b.attn.W_O.copy_(get(h + "attn.c_proj.weight").view(H, Dh, D));
            b.attn.b_O.copy_(get(h + "attn.c_proj.bias"));
            b.ln2!.w!.copy_(get(h + "ln_2.weight"));
            b.ln2.b!.copy_(get(h + "ln_2.bias"));
            b.mlp!.W_in.copy_(get(h + "mlp.c_fc.weight"));
            b.mlp.b_in.copy_(get(h + "mlp.c_fc.bias"));
            b.mlp.W_out.copy_(get(h + "mlp.c_proj.weight"));
            b.mlp.b_out.copy_(get(h + "mlp.c_proj.bias"));
        }
        model.ln_final!.w!.copy_(get(p + "ln_f.weight"));
        model.ln_final.b!.copy_(get(p + "ln_f.bias"));
        // lm_head.weight is [d_vocab, d_model] (nn.Linear); absent when tied to wte.
        model.unembed.W_U.copy_((file.Contains("lm_head.weight") ? get("lm_head.weight") : get(p + "wte.weight")).t());
        if (file.Contains("lm_head.bias")) model.unembed.b_U.copy_(get("lm_head.bias"));
        else model.unembed.b_U.zero_();
    }
}
