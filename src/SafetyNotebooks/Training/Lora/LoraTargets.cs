using System.Text.RegularExpressions;
using SafetyNotebooks.Models;
using SafetyNotebooks.Models.Components;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training.Lora;

/// <summary>The projection of a block an adapter attaches to (the component's adapter slot).</summary>
internal enum LoraSlotKind { Qkv, O, MlpIn, MlpGate, MlpOut }

/// <summary>
/// One Hugging Face linear layer of a block, mapped onto the <see cref="HookedTransformer"/>'s weights: its adapter slot, where
/// its outputs sit in the slot's output (offset, width) and how its output order maps to the slot's (NeoX's fused
/// query_key_value is ordered (head, q|k|v, d_head); our W_QKV is (q|k|v, head, d_head)).
/// </summary>
internal sealed record LoraTarget(string Name, string Leaf, int Layer, LoraSlotKind Slot, int InFeatures, int OutFeatures, long SlotOffset,
    Func<Tensor, Tensor> ToSlotOrder, bool FanInFanOut);

/// <summary>Module names per Hugging Face family (see Models/Conversion), and PEFT's target-module matching.</summary>
public static class LoraTargets
{
    /// <summary>Supported families (PEFT's <c>model_type</c> keys).</summary>
    public static IReadOnlyList<string> Families { get; } = ["gpt2", "llama", "gpt_neox"];

    /// <summary>PEFT's default target modules for <paramref name="family"/> (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).</summary>
    public static IReadOnlyList<string> DefaultTargetModules(string family) => family switch
    {
        "gpt2" => ["c_attn"],
        "llama" => ["q_proj", "v_proj"],
        "gpt_neox" => ["query_key_value"],
        _ => throw new ArgumentException($"Unknown LoRA family '{family}'; use one of {string.Join(", ", Families)}."),
    };

    /// <summary>The family whose names a model's weights use: gated MLP → llama; rotary without gated MLP → gpt_neox; otherwise gpt2.</summary>
    public static string InferFamily(HookedTransformerConfig cfg) =>
        cfg.GatedMlp ? "llama" : cfg.PositionalEmbedding == PositionalEmbeddingType.Rotary ? "gpt_neox" : "gpt2";

    /// <summary>The short (leaf) names of the linear layers LoRA can target in <paramref name="model"/> under <paramref name="family"/>.</summary>
    public static IReadOnlyList<string> ValidNames(HookedTransformer model, string family) =>
        All(model, family).Select(t => t.Leaf).Distinct().ToList();

    /// <summary>Every adaptable linear layer of the model, in layer order, with its Hugging Face name.</summary>
    internal static List<LoraTarget> All(HookedTransformer model, string family)
    {
        var cfg = model.Cfg;
        int D = cfg.DModel, H = cfg.NHeads, Hkv = cfg.EffectiveNKeyValueHeads, Dh = cfg.DHead, M = cfg.DMlp;
        int q = H * Dh, kv = Hkv * Dh, qkv = q + 2 * kv;
        static Tensor Same(Tensor t) => t;
        var list = new List<LoraTarget>();
        for (int l = 0; l < cfg.NLayers; l++)
        {
            bool mlp = model.blocks[l].mlp is not null, gated = model.blocks[l].mlp is GatedMlp;
            void Add(string prefix, string leaf, LoraSlotKind slot, int inF, int outF, long offset = 0, Func<Tensor, Tensor>? map = null, bool conv = false) =>
                list.Add(new LoraTarget(prefix + leaf, leaf.Split('.')[^1], l, slot, inF, outF, offset, map ?? Same, conv));
            switch (family)
            {
                case "gpt2":
                {
                    var p = $"transformer.h.{l}.";
                    Add(p, "attn.c_attn", LoraSlotKind.Qkv, D, qkv, conv: true);
                    Add(p, "attn.c_proj", LoraSlotKind.O, q, D, conv: true);
                    if (mlp) { Add(p, "mlp.c_fc", LoraSlotKind.MlpIn, D, M, conv: true); Add(p, "mlp.c_proj", LoraSlotKind.MlpOut, M, D, conv: true); }
                    break;
                }
                case "llama":
                {
                    var p = $"model.layers.{l}.";
                    Add(p, "self_attn.q_proj", LoraSlotKind.Qkv, D, q, 0);
                    Add(p, "self_attn.k_proj", LoraSlotKind.Qkv, D, kv, q);
                    Add(p, "self_attn.v_proj", LoraSlotKind.Qkv, D, kv, q + kv);
                    Add(p, "self_attn.o_proj", LoraSlotKind.O, q, D);
                    if (gated) Add(p, "mlp.gate_proj", LoraSlotKind.MlpGate, D, M);
                    if (mlp) { Add(p, "mlp.up_proj", LoraSlotKind.MlpIn, D, M); Add(p, "mlp.down_proj", LoraSlotKind.MlpOut, M, D); }
                    break;
                }
                case "gpt_neox":
                {
                    if (Hkv != H) throw new ArgumentException("GPT-NeoX names need n_key_value_heads == n_heads (query_key_value is fused); use family \"llama\" for grouped-query models.");
                    var p = $"gpt_neox.layers.{l}.";
                    // query_key_value's outputs are ordered (head, q|k|v, d_head); the qkv slot wants (q|k|v, head, d_head).
                    Tensor NeoxToSlot(Tensor t)
                    {
                        var lead = t.shape[..^1];
                        return t.reshape([.. lead, H, 3, Dh]).transpose(-3, -2).reshape([.. lead, 3 * H * Dh]);
                    }
                    Add(p, "attention.query_key_value", LoraSlotKind.Qkv, D, qkv, 0, NeoxToSlot);
                    Add(p, "attention.dense", LoraSlotKind.O, q, D);
                    if (mlp) { Add(p, "mlp.dense_h_to_4h", LoraSlotKind.MlpIn, D, M); Add(p, "mlp.dense_4h_to_h", LoraSlotKind.MlpOut, M, D); }
                    break;
                }
                default: throw new ArgumentException($"Unknown LoRA family '{family}'; use one of {string.Join(", ", Families)}.");
            }
        }
        return list;
    }

    /// <summary>
    /// PEFT's matching (<c>check_target_module_exists</c>): a list entry matches a module named exactly so or ending in
    /// "." + entry; a single entry that is not a plain dotted name is a regular expression that must match the whole name.
    /// Every entry must match at least one layer (PEFT only requires one overall; naming a layer that does not exist is
    /// almost always a family mix-up, so this refuses it).
    /// </summary>
    internal static List<LoraTarget> Select(HookedTransformer model, string family, IReadOnlyList<string> targetModules)
    {
        var all = All(model, family);
        string Valid() => $"valid target_modules for this {family} model: {string.Join(", ", all.Select(t => t.Leaf).Distinct())} " +
            $"(or a dotted suffix such as {all[^1].Name.Split('.')[^2]}.{all[^1].Leaf}, or a full name such as {all[0].Name})";
        if (IsRegex(targetModules))
        {
            Regex re;
            try { re = new Regex("^(?:" + targetModules[0] + ")$"); }
            catch (ArgumentException e) { throw new ArgumentException($"LoRA target_modules regex '{targetModules[0]}' is invalid ({e.Message}); fix it or list module names — {Valid()}."); }
            var hit = all.Where(t => re.IsMatch(t.Name)).ToList();
            if (hit.Count == 0) throw new ArgumentException($"LoRA target_modules regex '{targetModules[0]}' matches no linear layer; {Valid()}.");
            return hit;
        }
        foreach (var name in targetModules)
            if (!all.Any(t => Matches(t.Name, name)))
                throw new ArgumentException($"LoRA target module '{name}' matches no linear layer of this model; {Valid()}.");
        return all.Where(t => targetModules.Any(n => Matches(t.Name, n))).ToList();
    }

    /// <summary>True when <paramref name="targetModules"/> is one regular expression (PEFT: target_modules given as a string) rather than names.</summary>
    internal static bool IsRegex(IReadOnlyList<string> targetModules) =>
        targetModules.Count == 1 && !Regex.IsMatch(targetModules[0], @"^[A-Za-z0-9_.]+$");

    static bool Matches(string module, string target) => module == target || module.EndsWith("." + target, StringComparison.Ordinal);
}
