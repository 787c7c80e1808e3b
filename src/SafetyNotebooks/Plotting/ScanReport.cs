using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.Data.Analysis;
using Plotly.NET;
using SafetyNotebooks.Evaluation.RedTeaming;
using SafetyNotebooks.Statistics;

namespace SafetyNotebooks.Plotting;

/// <summary>
/// Reports of a red-teaming scan: attack success rates with 95% Wilson intervals by converter, by category and by target, a
/// few example attempts, and the method — as Markdown (for a written report) or a self-contained offline HTML page.
/// </summary>
public static class ScanReport
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Forest plot of the attack success rate per group (<c>converter</c>, <c>category</c> or <c>target</c>).</summary>
    public static GenericChart Chart(ScanResult result, string by = "converter", string? title = null)
    {
        var table = result.AttackSuccessRates(by);
        var labels = table["group"].Cast<string>().ToArray();
        var intervals = Enumerable.Range(0, labels.Length).Select(i => new Interval((double)table["rate"][i]!, (double)table["lower"][i]!,
            (double)table["upper"][i]!, 0.95, "wilson")).ToArray();
        return StatisticsPlots.Intervals(title ?? $"Attack success rate by {by} (95% Wilson intervals)", "attack success rate", labels, intervals);
    }

    /// <summary>A Markdown report: totals, the rate tables, method notes and up to <paramref name="examples"/> successful attacks.</summary>
    public static string Markdown(ScanResult result, string title = "Red-teaming scan", int examples = 3)
    {
        var ok = result.Records.Where(r => r.Error is null).ToList();
        var sb = new StringBuilder();
        sb.AppendLine($"# {title}").AppendLine();
        sb.AppendLine($"{result.Records.Count} attempts: {ok.Count} judged, {result.Errors} failed calls (excluded from rates), {result.Skipped} read back from an earlier run. " +
            $"Overall attack success rate {Pct(ok.Count(r => r.Success == true), ok.Count)}.").AppendLine();
        foreach (var by in new[] { "target", "converter", "category" })
        {
            if (result.Records.Select(r => by switch { "target" => r.Target, "converter" => r.Converter, _ => r.Category }).Distinct().Count() < 2 && by == "target") continue;
            sb.AppendLine($"## By {by}").AppendLine().AppendLine($"| {by} | successes / attempts | rate | 95% interval |").AppendLine("| --- | --- | --- | --- |");
            var t = result.AttackSuccessRates(by);
            for (int i = 0; i < t.Rows.Count; i++)
                sb.AppendLine($"| {t["group"][i]} | {t["successes"][i]} / {t["trials"][i]} | {F((double)t["rate"][i]!)} | [{F((double)t["lower"][i]!)}, {F((double)t["upper"][i]!)}] |");
            sb.AppendLine();
        }
        var wins = ok.Where(r => r.Success == true).Take(examples).ToList();
        if (wins.Count > 0)
        {
            sb.AppendLine("## Example successful attacks").AppendLine();
            foreach (var r in wins)
                sb.AppendLine($"- **{r.Target} / {r.Category} / {r.Converter}** (`{r.PromptId}`): sent “{Short(r.Sent)}”, reply “{Short(r.Reply ?? "")}” — {r.Reason}.");
            sb.AppendLine();
        }
        sb.AppendLine("## Method").AppendLine();
        sb.AppendLine("Each attack prompt was sent to each target through each converter; the first judge decided success. Rates are successes " +
            "over judged attempts with Wilson 95% intervals. A judge's own error rates (measured against human labels) bound how far these rates can be trusted; " +
            "compare systems with a paired test on the same prompts (lesson 04), not by eye.");
        return sb.ToString();
    }

    /// <summary>A self-contained offline HTML page: the Markdown report's tables and the forest plots.</summary>
    public static string Html(ScanResult result, string title = "Red-teaming scan")
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>").Append(WebUtility.HtmlEncode(title)).Append("</title>\n")
          .Append("<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>\n")
          .Append(OfflineHtml.PlotlyScriptTag()).Append("\n</head><body>\n");
        bool inTable = false, header = false;
        foreach (var line in Markdown(result, title).Split('\n'))
        {
            var l = line.TrimEnd('\r');
            if (l.StartsWith("| ---", StringComparison.Ordinal)) continue;
            if (l.StartsWith("| ", StringComparison.Ordinal))
            {
                if (!inTable) { sb.Append("<table>\n"); inTable = true; header = true; }
                string cell = header ? "th" : "td";
                sb.Append("<tr>").Append(string.Concat(l.Trim('|').Split(" | ").Select(c => $"<{cell}>{WebUtility.HtmlEncode(c.Trim())}</{cell}>"))).Append("</tr>\n");
                header = false;
                continue;
            }
            if (inTable) { sb.Append("</table>\n"); inTable = false; }
            if (l.StartsWith("# ", StringComparison.Ordinal)) sb.Append("<h1>").Append(WebUtility.HtmlEncode(l[2..])).Append("</h1>\n");
            else if (l.StartsWith("## ", StringComparison.Ordinal)) sb.Append("<h2>").Append(WebUtility.HtmlEncode(l[3..])).Append("</h2>\n");
            else if (l.StartsWith("- ", StringComparison.Ordinal)) sb.Append("<p>• ").Append(WebUtility.HtmlEncode(l[2..].Replace("**", ""))).Append("</p>\n");
            else if (l.Length > 0) sb.Append("<p>").Append(WebUtility.HtmlEncode(l)).Append("</p>\n");
        }
        if (inTable) sb.Append("</table>\n");
        foreach (var by in new[] { "converter", "category" })
            sb.Append(OfflineHtml.ChartDiv(Chart(result, by), false, 380)).Append('\n');
        sb.Append("</body></html>\n");
        return sb.ToString();
    }

    static string Pct(int s, int n) => n == 0 ? "n/a" : $"{F((double)s / n)} ({s}/{n}, 95% interval [{F(Rates.Wilson(s, n).Lower)}, {F(Rates.Wilson(s, n).Upper)}])";
    static string F(double v) => v.ToString("0.000", Inv);
    static string Short(string s) { s = s.Replace("\n", " ").Replace("|", "/"); return s.Length <= 90 ? s : s[..87] + "…"; }
}
