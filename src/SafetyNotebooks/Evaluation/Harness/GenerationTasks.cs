using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Data.Analysis;
using SafetyNotebooks.IO;
using Microsoft.Extensions.AI;
using SafetyNotebooks.Evaluation.RedTeaming;
using SafetyNotebooks.Statistics;

namespace SafetyNotebooks.Evaluation.Harness;

/// <summary>
/// A generation item: a prompt and how to score the reply — <c>exact</c> (normalized exact match with <see cref="Reference"/>),
/// <c>contains</c>, <c>regex</c> (the reference is a pattern), <c>refuse</c> (the model should refuse: a harmful request) or
/// <c>answer</c> (it should not refuse: a benign request, to measure over-refusal).
/// </summary>
public sealed record GenerationItem(string Id, string Prompt, string Scoring, string? Reference = null, string Category = "", string Dimension = "safety")
{
    /// <summary>The scoring rules <see cref="Load"/> accepts.</summary>
    public static readonly string[] ScoringRules = ["exact", "contains", "regex", "refuse", "answer"];

    /// <summary>Reads JSONL items <c>{"id", "prompt", "scoring", "reference", "category", "dimension"}</c>; errors name the line.</summary>
    public static IReadOnlyList<GenerationItem> Load(string path)
    {
        var items = new List<GenerationItem>();
        foreach (var (n, node) in Jsonl.Read(path, "{\"id\", \"prompt\", \"scoring\", \"reference\", \"category\", \"dimension\"}"))
        {
            string scoring = (string?)node["scoring"] ?? throw new FormatException($"{path}:{n}: needs 'scoring' ({string.Join(", ", ScoringRules)}).");
            if (!ScoringRules.Contains(scoring)) throw new FormatException($"{path}:{n}: scoring '{scoring}' is not one of {string.Join(", ", ScoringRules)}.");
            string? reference = (string?)node["reference"];
            if (scoring is "exact" or "contains" or "regex" && reference is null) throw new FormatException($"{path}:{n}: scoring '{scoring}' needs a 'reference'.");
            items.Add(new GenerationItem((string?)node["id"] ?? n.ToString(CultureInfo.InvariantCulture), node.RequireString("prompt", path, n),
                scoring, reference, (string?)node["category"] ?? "", (string?)node["dimension"] ?? "safety"));
        }
        return items;
    }
}

/// <summary>One scored generation.</summary>
public sealed record GenerationRecord(string Id, string Category, string Dimension, string Scoring, string Reply, bool Pass, string? Error);

/// <summary>Generation tasks over any <see cref="IChatClient"/>: a reply per item, scored by the item's rule; failed calls are recorded, not fatal.</summary>
public static class GenerationTasks
{
    /// <summary>Lower-case, collapse whitespace, strip punctuation at the ends (the normalization of exact-match scoring).</summary>
    public static string Normalize(string s)
    {
        var collapsed = Regex.Replace(s.Normalize(NormalizationForm.FormKC).ToLowerInvariant(), @"\s+", " ").Trim();
        return collapsed.Trim('.', ',', '!', '?', ';', ':', '"', '\'', ' ');
    }

    /// <summary>Whether <paramref name="reply"/> passes <paramref name="item"/>'s rule (<paramref name="refusal"/> decides refusals).</summary>
    public static bool Score(GenerationItem item, string reply, RefusalJudge? refusal = null)
    {
        refusal ??= new RefusalJudge();
        return item.Scoring switch
        {
            "exact" => Normalize(reply) == Normalize(item.Reference!),
            "contains" => Normalize(reply).Contains(Normalize(item.Reference!), StringComparison.Ordinal),
            "regex" => Regex.IsMatch(reply, item.Reference!, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)),
            "refuse" => refusal.IsRefusal(reply, out _),
            "answer" => !refusal.IsRefusal(reply, out _),
            _ => throw new ArgumentException($"Unknown scoring rule '{item.Scoring}'."),
        };
    }

    /// <summary>Asks <paramref name="model"/> every item (with an optional system prompt), <paramref name="maxParallel"/> at a time, and scores the replies.</summary>
    public static async Task<IReadOnlyList<GenerationRecord>> RunAsync(IChatClient model, IReadOnlyList<GenerationItem> items, string? systemPrompt = null,
        int maxParallel = 4, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        using var gate = new SemaphoreSlim(Math.Max(1, maxParallel));
        var refusal = new RefusalJudge();
        var tasks = items.Select(async item =>
        {
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var messages = new List<ChatMessage>();
                if (systemPrompt is not null) messages.Add(new ChatMessage(ChatRole.System, systemPrompt));
                messages.Add(new ChatMessage(ChatRole.User, item.Prompt));
                string reply;
                try { reply = (await model.GetResponseAsync(messages, options ?? new ChatOptions { Temperature = 0 }, cancellationToken).ConfigureAwait(false)).Text ?? ""; }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { throw; }
                catch (Exception e) { return new GenerationRecord(item.Id, item.Category, item.Dimension, item.Scoring, "", false, $"{e.GetType().Name}: {e.Message}"); }
                return new GenerationRecord(item.Id, item.Category, item.Dimension, item.Scoring, reply, Score(item, reply, refusal), null);
            }
            finally { gate.Release(); }
        }).ToList();
        return await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    /// <summary>Pass rate per dimension and scoring rule with Wilson intervals (failed calls excluded), HELM-style.</summary>
    public static DataFrame Summary(string task, IReadOnlyList<GenerationRecord> records, double level = 0.95)
    {
        var groups = records.Where(r => r.Error is null).GroupBy(r => (r.Dimension, r.Scoring)).OrderBy(g => g.Key.Dimension, StringComparer.Ordinal).ThenBy(g => g.Key.Scoring, StringComparer.Ordinal).ToList();
        var t = Rates.Table(groups.Select(g => ($"{task} | {g.Key.Dimension} | {g.Key.Scoring}", g.Count(r => r.Pass), g.Count())), "wilson", level);
        t.Columns[0].SetName("task | dimension | scoring");
        return t;
    }
}
