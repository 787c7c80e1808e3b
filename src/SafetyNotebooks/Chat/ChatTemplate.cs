using System.Text;
using Microsoft.Extensions.AI;

namespace SafetyNotebooks.Chat;

/// <summary>
/// How a conversation becomes one prompt string for a base language model: a prefix per role, a suffix after each turn, and
/// the strings that end the assistant's turn (generation stops there and they are cut from the reply). Hugging Face keeps
/// the same information in a tokenizer's Jinja <c>chat_template</c>; the two built-ins cover the common formats.
/// </summary>
/// <param name="SystemPrefix">Text before a system message.</param>
/// <param name="UserPrefix">Text before a user message.</param>
/// <param name="AssistantPrefix">Text before an assistant message (and, with a generation prompt, at the end of the prompt).</param>
/// <param name="TurnSuffix">Text after every message.</param>
/// <param name="StopSequences">Where the assistant's reply ends (the reply is cut before the first one).</param>
public sealed record ChatTemplate(string SystemPrefix, string UserPrefix, string AssistantPrefix, string TurnSuffix, IReadOnlyList<string> StopSequences)
{
    /// <summary>ChatML (Qwen2, SmolLM2-Instruct, many others): <c>&lt;|im_start|&gt;role\n…&lt;|im_end|&gt;\n</c>.</summary>
    public static ChatTemplate ChatML { get; } = new("<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>\n", ["<|im_end|>"]);

    /// <summary>A plain transcript (<c>System: …</c>, <c>User: …</c>, <c>Assistant: …</c>, one line each), for base models and the lessons' small models.</summary>
    public static ChatTemplate Plain { get; } = new("System: ", "User: ", "Assistant: ", "\n", ["\nUser:", "\nSystem:", "\n"]);

    /// <summary>
    /// The prompt for <paramref name="messages"/>: each message as prefix + text + suffix, then (when
    /// <paramref name="addGenerationPrompt"/>) the assistant prefix, so the model continues as the assistant. A
    /// <paramref name="systemPrompt"/> is put first unless the conversation already starts with a system message.
    /// </summary>
    public string Format(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true, string? systemPrompt = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = messages.ToList();
        var sb = new StringBuilder();
        if (systemPrompt is not null && (list.Count == 0 || list[0].Role != ChatRole.System))
            sb.Append(SystemPrefix).Append(systemPrompt).Append(TurnSuffix);
        foreach (var m in list)
        {
            string prefix = m.Role == ChatRole.System ? SystemPrefix
                : m.Role == ChatRole.User ? UserPrefix
                : m.Role == ChatRole.Assistant ? AssistantPrefix
                : throw new ArgumentException($"Chat role '{m.Role}' has no place in a chat template: use system, user or assistant messages (tool messages need a server model).", nameof(messages));
            sb.Append(prefix).Append(m.Text).Append(TurnSuffix);
        }
        if (addGenerationPrompt) sb.Append(AssistantPrefix);
        return sb.ToString();
    }

    /// <summary>The reply cut before the first of <see cref="StopSequences"/> (and of <paramref name="extraStops"/>); whether a stop was found.</summary>
    public (string Reply, bool Stopped) Cut(string generated, IEnumerable<string>? extraStops = null)
    {
        ArgumentNullException.ThrowIfNull(generated);
        int cut = -1;
        foreach (var stop in StopSequences.Concat(extraStops ?? []))
        {
            if (string.IsNullOrEmpty(stop)) continue;
            int i = generated.IndexOf(stop, StringComparison.Ordinal);
            if (i >= 0 && (cut < 0 || i < cut)) cut = i;
        }
        return cut < 0 ? (generated, false) : (generated[..cut], true);
    }
}
