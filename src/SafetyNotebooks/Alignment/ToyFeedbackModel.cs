using Microsoft.Extensions.AI;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// The rule-based stand-in for Constitutional AI's feedback model on <see cref="ToyAssistantTask"/>, behind
/// <see cref="IChatClient"/> so the pipelines cannot tell it from a real model. It recognises which principle it is asked
/// about by the request text (a critique request, a revision request, or a comparison request inside an RLAIF question) and
/// applies that principle's rule categories:
/// <list type="bullet">
/// <item>critique: names each unsafe word of those categories in the response, or says it found nothing;</item>
/// <item>revision: rewrites those words with <see cref="ToyAssistantTask.SafeRewrite"/> (nothing else changes, so the answer stays);</item>
/// <item>comparison: prefers the option with fewer unsafe words of those categories, then the one that answers the question,
/// and answers "Neither" on a full tie.</item>
/// </list>
/// What it stands in for: a capable model that reads a principle in natural language and applies it with judgement. This
/// one understands nothing; its "reading" is a lookup from principle to word list, so it is exactly right on this task and
/// useless on any other. It lets the lesson measure what CAI does to a policy when the feedback is good; how good a real
/// model's feedback is must be measured separately (lesson 20's judge-against-labels method).
/// </summary>
public sealed class ToyFeedbackModel : IChatClient
{
    readonly Constitution _constitution;
    readonly IReadOnlyDictionary<string, string[]> _rules;

    /// <summary>
    /// A feedback model for <paramref name="constitution"/>; <paramref name="principleRules"/> maps every principle id to rule
    /// categories. <paramref name="strictHelpfulness"/> (default) breaks ties with <see cref="ToyAssistantTask.IsHelpful"/>;
    /// false uses the lenient <see cref="ToyAssistantTask.ContainsAnswer"/>, which rewards hedging.
    /// </summary>
    public ToyFeedbackModel(Constitution constitution, IReadOnlyDictionary<string, string[]> principleRules, bool strictHelpfulness = true)
    {
        StrictHelpfulness = strictHelpfulness;
        _constitution = constitution ?? throw new ArgumentNullException(nameof(constitution));
        ArgumentNullException.ThrowIfNull(principleRules);
        foreach (var p in constitution.Principles)
        {
            if (!principleRules.TryGetValue(p.Id, out var cats) || cats.Length == 0)
                throw new ArgumentException($"The toy feedback model has no rule for principle '{p.Id}'; map it to some of the categories {string.Join(", ", ToyAssistantTask.UnsafeWords.Keys)} in principleRules.", nameof(principleRules));
            foreach (var c in cats)
                if (!ToyAssistantTask.UnsafeWords.ContainsKey(c))
                    throw new ArgumentException($"Principle '{p.Id}' maps to unknown category '{c}'; use {string.Join(", ", ToyAssistantTask.UnsafeWords.Keys)}.", nameof(principleRules));
        }
        _rules = principleRules;
    }

    /// <summary>Whether ties are broken by the strict helpfulness rule (the right answer and no other).</summary>
    public bool StrictHelpfulness { get; }

    /// <summary>Calls answered so far (critiques, revisions and comparisons).</summary>
    public int Calls => Volatile.Read(ref _calls);
    int _calls;

    /// <inheritdoc/>
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = messages.ToList();
        Interlocked.Increment(ref _calls);
        return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, Reply(list))) { ModelId = "toy-feedback-rules" });
    }

    string Reply(List<ChatMessage> messages)
    {
        var last = messages.LastOrDefault(m => m.Role == ChatRole.User)?.Text?.Trim() ?? "";
        string response = messages.FirstOrDefault(m => m.Role == ChatRole.Assistant)?.Text ?? "";
        foreach (var p in _constitution.Principles)
        {
            var cats = _rules[p.Id];
            if (last == p.CritiqueRequest.Trim())
            {
                var found = response.Split(' ', StringSplitOptions.RemoveEmptyEntries)
                    .Where(w => ToyAssistantTask.Violations(w, cats).Count > 0).Distinct().ToList();
                return found.Count == 0
                    ? "Nothing in the response goes against this principle."
                    : $"The response uses {string.Join(", ", found.Select(w => $"'{w}'"))}, which this principle rules out.";
            }
            if (last == p.RevisionRequest.Trim()) return ToyAssistantTask.Rewrite(response, cats);
            if (last.Contains(p.ComparisonRequest.Trim(), StringComparison.Ordinal)) return Compare(last, cats);
        }
        return "I can only critique, revise or compare responses under the principles of my constitution.";
    }

    string Compare(string question, string[] categories)
    {
        string? Line(string prefix) => question.Split('\n').FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal))?[prefix.Length..].Trim();
        string? prompt = Line("User: "), a = Line("(A) "), b = Line("(B) ");
        if (prompt is null || a is null || b is null) return "Neither: I cannot find the request and both options.";
        int va = ToyAssistantTask.Violations(a, categories).Count, vb = ToyAssistantTask.Violations(b, categories).Count;
        if (va != vb) return va < vb ? "(A)" : "(B)";
        Func<string, string, bool> helpful = StrictHelpfulness ? ToyAssistantTask.IsHelpful : ToyAssistantTask.ContainsAnswer;
        bool ha = helpful(prompt, a), hb = helpful(prompt, b);
        if (ha != hb) return ha ? "(A)" : "(B)";
        return "Neither; they are equally good under this principle.";
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var r = await GetResponseAsync(messages, options, cancellationToken).ConfigureAwait(false);
        yield return new ChatResponseUpdate(ChatRole.Assistant, r.Text) { FinishReason = ChatFinishReason.Stop };
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("SafetyNotebooks", null, "toy-feedback-rules")
        : serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;

    /// <inheritdoc/>
    public void Dispose() { }
}
