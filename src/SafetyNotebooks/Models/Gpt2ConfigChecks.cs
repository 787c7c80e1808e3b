using System.Text.Json;
using System.Text.Json.Nodes;

namespace SafetyNotebooks.Models;

/// <summary>
/// Checks on a Hugging Face GPT-2 <c>config.json</c> for attention options this library does not implement, so that
/// such a checkpoint is refused instead of loading with silently different attention.
/// </summary>
public static class Gpt2ConfigChecks
{
    /// <summary>
    /// Throws <see cref="InvalidDataException"/> (naming the file and the field) when the config asks for attention this
    /// model does not compute: <c>scale_attn_weights: false</c> (no 1/√d_head scaling) or
    /// <c>scale_attn_by_inverse_layer_idx: true</c> (an extra 1/(layer+1) scaling, as in some Mistral/Stanford CRFM GPT-2s).
    /// <c>reorder_and_upcast_attn: true</c> is accepted: it only changes the order of float operations and upcasts
    /// half-precision scores to float32, and this model already computes attention in float32 (same result up to rounding).
    /// Missing fields take Hugging Face's defaults (true, false, false); a non-boolean value is an error.
    /// </summary>
    /// <param name="root">The parsed config.json.</param>
    /// <param name="path">The file's path, for the message.</param>
    public static void RefuseUnsupportedAttention(JsonObject root, string path)
    {
        ArgumentNullException.ThrowIfNull(root);
        bool Flag(string key, bool fallback)
        {
            var n = root[key];
            if (n is null) return fallback;
            if (n.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return n.GetValue<bool>();
            throw new InvalidDataException($"'{path}': field '{key}' is {n.ToJsonString()} but must be true or false. Fix the field or re-download config.json.");
        }
        if (!Flag("scale_attn_weights", true))
            throw new InvalidDataException(
                $"'{path}': scale_attn_weights is false (attention scores not divided by √d_head), which this model does not implement; " +
                "loading it would compute different attention. Use a checkpoint with scale_attn_weights: true (GPT-2's default).");
        if (Flag("scale_attn_by_inverse_layer_idx", false))
            throw new InvalidDataException(
                $"'{path}': scale_attn_by_inverse_layer_idx is true (scores also divided by layer index + 1), which this model does not implement; " +
                "loading it would compute different attention. Use a checkpoint without it (GPT-2's default is false).");
        Flag("reorder_and_upcast_attn", false);                                  // validated only: float32 attention already honours it
    }
}
