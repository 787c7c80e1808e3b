using System.Text.RegularExpressions;
using SafetyNotebooks.Evaluation.RedTeaming;

namespace SafetyNotebooks.Evaluation.Guardrails;

/// <summary>
/// What a rail found: whether it triggered, why, (for rails that can repair text) the fixed text, and (for dialog rails) a canned
/// reply to give instead of the generic refusal.
/// </summary>
public sealed record RailCheck(bool Triggered, string Reason, string? Fixed = null, string? Reply = null)
{
    /// <summary>Nothing found.</summary>
    public static RailCheck Pass { get; } = new(false, "");
}

/// <summary>A check on a user message (input rail) or a model reply (output rail), as NeMo Guardrails' input and output rails.</summary>
public interface IRail
{
    /// <summary>Name in decisions and logs.</summary>
    string Name { get; }
    /// <summary>Checks <paramref name="text"/>.</summary>
    RailCheck Check(string text);
}

/// <summary>What a rail that reads more than one text sees: the conversation (the user's turn last; for output rails, before the
/// reply), and the model and options of the call (a self-check samples the model again).</summary>
public sealed record RailContext(IReadOnlyList<Microsoft.Extensions.AI.ChatMessage> Messages, Microsoft.Extensions.AI.IChatClient? Model = null,
    Microsoft.Extensions.AI.ChatOptions? Options = null);

/// <summary>
/// A rail that needs the conversation or the model (dialog rails, the hallucination self-check). <see cref="GuardedChatClient"/>
/// calls <see cref="CheckAsync"/>; <see cref="IRail.Check"/> is the single-text fallback (for <c>safety-notebooks guard</c>).
/// </summary>
public interface IContextRail : IRail
{
    /// <summary>Checks <paramref name="text"/> (the user's message for input rails, the reply for output rails) in <paramref name="context"/>.</summary>
    Task<RailCheck> CheckAsync(RailContext context, string text, CancellationToken cancellationToken = default);
}

/// <summary>Personal data (<see cref="Pii"/>): triggers on any match; the fix is the anonymized text.</summary>
public sealed class PiiRail(IEnumerable<string>? kinds = null) : IRail
{
    readonly HashSet<string> _kinds = (kinds ?? Pii.Kinds).ToHashSet();
    /// <inheritdoc/>
    public string Name => "pii";
    /// <inheritdoc/>
    public RailCheck Check(string text)
    {
        var found = Pii.Find(text).Where(m => _kinds.Contains(m.Kind)).ToList();
        if (found.Count == 0) return RailCheck.Pass;
        var fixedText = text;
        foreach (var m in found.OrderByDescending(m => m.Start)) fixedText = fixedText[..m.Start] + "<" + m.Kind + ">" + fixedText[(m.Start + m.Length)..];
        return new RailCheck(true, "found " + string.Join(", ", found.GroupBy(m => m.Kind).Select(g => $"{g.Count()} {g.Key}")), fixedText);
    }
}

/// <summary>
/// Prompt-injection and jailbreak phrasing by rules (instruction overrides, persona switches, system-prompt extraction, "developer
/// mode"), matched after removing zero-width characters and mapping homoglyphs back to Latin letters so the usual obfuscations
/// do not slip past. Rules catch the known phrasings only; pair it with a trained classifier (<see cref="ClassifierRail"/>).
/// </summary>
public sealed class InjectionRail : IRail
{
    /// <summary>The default rules (case-insensitive).</summary>
    public static readonly string[] DefaultPatterns =
    [
        @"\bignore\b.{0,40}\b(instructions?|rules|prompt|directions)\b",
        @"\b(disregard|forget|override)\b.{0,40}\b(instructions?|rules|prompt|guidelines)\b",
        @"\b(repeat|print|reveal|show|output)\b.{0,40}\b(system prompt|instructions|text above|everything above)\b",
        @"\byou are (now )?(DAN|an? (unfiltered|uncensored|jailbroken))\b",
        @"\b(developer|god|jailbreak) mode\b",
        @"\bnever refuses?\b",
        @"\bstay in character\b",
        @"^\s*(system|assistant)\s*:",
    ];
    readonly Regex[] _rules;
    /// <summary>An injection rail with <paramref name="patterns"/> (default <see cref="DefaultPatterns"/>).</summary>
    public InjectionRail(IEnumerable<string>? patterns = null) =>
        _rules = (patterns ?? DefaultPatterns).Select(p => new Regex(p, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Multiline, Pii.Timeout)).ToArray();
    /// <inheritdoc/>
    public string Name => "injection";
    /// <inheritdoc/>
    public RailCheck Check(string text)
    {
        var normalized = new HomoglyphConverter().Invert(new ZeroWidthConverter().Invert(text));
        foreach (var r in _rules)
        {
            var m = r.Match(normalized);
            if (m.Success) return new RailCheck(true, $"injection pattern \"{(m.Value.Length > 60 ? m.Value[..60] + "…" : m.Value)}\"");
        }
        return RailCheck.Pass;
    }
}

/// <summary>Topics the deployment does not discuss, by keyword (whole words, case-insensitive).</summary>
public sealed class TopicRail(IEnumerable<string> blockedKeywords, string name = "topic") : IRail
{
    readonly Regex _regex = new(@"\b(" + string.Join("|", blockedKeywords.Select(Regex.Escape)) + @")\b",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, Pii.Timeout);
    /// <inheritdoc/>
    public string Name => name;
    /// <inheritdoc/>
    public RailCheck Check(string text)
    {
        var m = _regex.Match(text);
        return m.Success ? new RailCheck(true, $"blocked topic \"{m.Value}\"") : RailCheck.Pass;
    }
}

/// <summary>Output rail: the reply must not reveal any of the secrets (exactly as <see cref="SecretLeakJudge"/> reads leaks); the fix redacts verbatim copies.</summary>
public sealed class SecretRail(IEnumerable<string> secrets) : IRail
{
    readonly (string Secret, SecretLeakJudge Judge)[] _secrets = secrets.Select(s => (s, new SecretLeakJudge(s))).ToArray();
    /// <inheritdoc/>
    public string Name => "secret";
    /// <inheritdoc/>
    public RailCheck Check(string text)
    {
        foreach (var (secret, judge) in _secrets)
            if (judge.FindLeak(text) is { } how)
                return new RailCheck(true, $"reveals a protected secret ({how})", text.Replace(secret, "<REDACTED>", StringComparison.OrdinalIgnoreCase));
        return RailCheck.Pass;
    }
}

/// <summary>A trained classifier (probability that the text is unsafe / an attack) with a threshold.</summary>
public sealed class ClassifierRail(string name, Func<string, double> probability, double threshold = 0.5) : IRail
{
    /// <inheritdoc/>
    public string Name => name;
    /// <inheritdoc/>
    public RailCheck Check(string text)
    {
        double p = probability(text);
        if (!double.IsFinite(p)) throw new InvalidOperationException($"Classifier rail '{name}' returned {p}; it must return a probability.");
        return p >= threshold ? new RailCheck(true, $"classifier p = {p:0.000} ≥ {threshold}") : RailCheck.Pass;
    }
}

/// <summary>
/// NeMo Guardrails' jailbreak-detection heuristics: optimized adversarial suffixes (GCG) read as gibberish to a language model.
/// Triggers when the perplexity of the whole prompt divided by its length in characters exceeds <paramref name="lengthPerplexityThreshold"/>
/// (NeMo's default 89.79), or, for prompts longer than 20 words, when the perplexity of the first or of the last 20 words exceeds
/// <paramref name="suffixPerplexityThreshold"/> (NeMo's prefix/suffix default 1845.65). <paramref name="perplexity"/> is any language model's perplexity function (a lesson passes one computed
/// with a small <c>HookedTransformer</c>).
/// </summary>
public sealed class PerplexityRail(Func<string, double> perplexity, double lengthPerplexityThreshold = 89.79, double suffixPerplexityThreshold = 1845.65) : IRail
{
    /// <inheritdoc/>
    public string Name => "perplexity";
    /// <inheritdoc/>
    public RailCheck Check(string text)
    {
        if (text.Length == 0) return RailCheck.Pass;
        double lp = perplexity(text) / text.Length;
        if (lp > lengthPerplexityThreshold) return new RailCheck(true, $"perplexity per character {lp:0.0} > {lengthPerplexityThreshold}");
        var words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (words.Length > 20)
        {
            double pp = perplexity(string.Join(' ', words[..20]));
            if (pp > suffixPerplexityThreshold) return new RailCheck(true, $"prefix perplexity {pp:0.0} > {suffixPerplexityThreshold}");
            double sp = perplexity(string.Join(' ', words[^20..]));
            if (sp > suffixPerplexityThreshold) return new RailCheck(true, $"suffix perplexity {sp:0.0} > {suffixPerplexityThreshold}");
        }
        return RailCheck.Pass;
    }
}
