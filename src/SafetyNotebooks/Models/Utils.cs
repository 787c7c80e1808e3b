using System.Text.RegularExpressions;

namespace SafetyNotebooks.Models;

/// <summary>Helpers for TransformerLens-style activation names.</summary>
public static partial class Utils
{
    static readonly Dictionary<string, string> ActAlias = new()
    {
        ["attn"] = "pattern", ["attn_logits"] = "attn_scores", ["key"] = "k", ["query"] = "q", ["value"] = "v",
        ["mlp_pre"] = "pre", ["mlp_post"] = "post",
    };
    static readonly Dictionary<string, string> LayerTypeAlias = new()
    {
        ["a"] = "attn", ["attention"] = "attn", ["m"] = "mlp", ["b"] = "", ["block"] = "", ["blocks"] = "",
    };
    static readonly HashSet<string> AttnActs = new() { "q", "k", "v", "z", "result", "pattern", "attn_scores" };
    static readonly HashSet<string> MlpActs = new() { "pre", "post" };
    static readonly HashSet<string> NormActs = new() { "scale", "normalized" };

    [GeneratedRegex(@"^([a-z_]+?)(\d+)([a-z0-9_]*)$")]
    private static partial Regex ShorthandRegex();

    /// <summary>
    /// Expands a short activation name to the full hook name, like TransformerLens' <c>utils.get_act_name</c>:
    /// <c>GetActName("pattern", 0)</c> → <c>blocks.0.attn.hook_pattern</c>; <c>GetActName("resid_pre", 3)</c> →
    /// <c>blocks.3.hook_resid_pre</c>; <c>GetActName("resid_pre3")</c> (layer inside the name) → same;
    /// <c>GetActName("embed")</c> → <c>hook_embed</c>; <c>GetActName("normalized", 1, "ln2")</c> →
    /// <c>blocks.1.ln2.hook_normalized</c>; <c>GetActName("scale")</c> → <c>ln_final.hook_scale</c>.
    /// Full names (containing a dot or starting with <c>hook_</c>) are returned unchanged. A negative
    /// <paramref name="layer"/> is an error here (a name cannot know the number of layers); <c>cache["pattern", -1]</c> counts from the end.
    /// </summary>
    public static string GetActName(string name, int? layer = null, string? layerType = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (layer < 0)
            throw new ArgumentOutOfRangeException(nameof(layer),
                $"GetActName(\"{name}\", {layer}): a negative layer needs the number of layers, which a name alone does not know (as in TransformerLens). " +
                $"Use cache[\"{name}\", {layer}] (the cache counts from the end), or GetActName(\"{name}\", model.Cfg.NLayers + ({layer})).");
        if ((name.Contains('.') || name.StartsWith("hook_")) && layer is null && layerType is null)
            return name;
        if (layer is null && layerType is null)
        {
            var m = ShorthandRegex().Match(name);
            if (m.Success)
            {
                name = m.Groups[1].Value;
                layer = int.Parse(m.Groups[2].Value);
                layerType = m.Groups[3].Value.Length > 0 ? m.Groups[3].Value : null;
            }
        }
        if (ActAlias.TryGetValue(name, out var alias)) name = alias;
        var full = layer is { } l ? $"blocks.{l}." : "";
        if (AttnActs.Contains(name)) layerType = "attn";
        else if (MlpActs.Contains(name)) layerType = "mlp";
        else if (layerType is not null && LayerTypeAlias.TryGetValue(layerType, out var lt)) layerType = lt;
        if (!string.IsNullOrEmpty(layerType)) full += layerType + ".";
        full += "hook_" + name;
        if (NormActs.Contains(name) && layer is null && string.IsNullOrEmpty(layerType)) full = "ln_final." + full;
        return full;
    }
}
