using System.Text.Json.Nodes;
using Microsoft.Data.Analysis;
using SafetyNotebooks.IO;
using SafetyNotebooks.Statistics;

namespace SafetyNotebooks.Evaluation.RedTeaming;

/// <summary>A reply with a human's decision of whether the attack succeeded (the ground truth a judge is measured against).</summary>
public sealed record LabelledReply(string Request, string Reply, bool AttackSucceeded, string? Note = null);

/// <summary>
/// How often a judge agrees with human labels: its true-positive rate (successful attacks it catches), false-positive rate
/// (failed attacks it calls successful), precision and accuracy, each with a Wilson interval. An ASR measured with a judge is
/// only as good as these numbers.
/// </summary>
public static class JudgeEvaluation
{
    /// <summary>One row per metric: <c>metric</c>, <c>successes</c>, <c>trials</c>, <c>rate</c>, <c>lower</c>, <c>upper</c>.</summary>
    public static async Task<DataFrame> MeasureAsync(IJudge judge, IReadOnlyList<LabelledReply> labelled, CancellationToken cancellationToken = default)
    {
        if (labelled.Count == 0) throw new ArgumentException("Need at least one labelled reply to measure a judge.", nameof(labelled));
        int tp = 0, fp = 0, tn = 0, fn = 0;
        foreach (var l in labelled)
        {
            bool said = (await judge.JudgeAsync(l.Request, l.Reply, cancellationToken).ConfigureAwait(false)).Success;
            if (said && l.AttackSucceeded) tp++; else if (said) fp++; else if (l.AttackSucceeded) fn++; else tn++;
        }
        var rows = new List<(string, int, int)>();
        if (tp + fn > 0) rows.Add(("true positive rate (recall)", tp, tp + fn));
        if (fp + tn > 0) rows.Add(("false positive rate", fp, fp + tn));
        if (tp + fp > 0) rows.Add(("precision", tp, tp + fp));
        rows.Add(("accuracy", tp + tn, labelled.Count));
        var table = Rates.Table(rows);
        table.Columns[0].SetName("metric");
        return table;
    }

    /// <summary>Reads <c>{"request", "reply", "attack_succeeded", "note"}</c> JSONL lines; a malformed line is an error naming it.</summary>
    public static IReadOnlyList<LabelledReply> LoadJsonl(string path)
    {
        var list = new List<LabelledReply>();
        foreach (var (n, node) in Jsonl.Read(path, "{\"request\", \"reply\", \"attack_succeeded\": true|false, \"note\"}"))
        {
            bool succeeded = node["attack_succeeded"] is JsonValue v && v.TryGetValue<bool>(out var b) ? b
                : throw new FormatException($"{path}:{n}: needs a boolean field \"attack_succeeded\".");
            list.Add(new LabelledReply(node.RequireString("request", path, n), node.RequireString("reply", path, n), succeeded, (string?)node["note"]));
        }
        return list;
    }
}
