using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Markdig;
using SafetyNotebooks.Plotting;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>
/// Writes a standalone HTML report of an executed notebook: markdown rendered, code, and every
/// output (text, tables, charts). plotly.js is embedded once in the page head, so charts render
/// offline and in any browser; the copy the setup cell emitted is not repeated.
/// </summary>
public static class ReportWriter
{
    static readonly MarkdownPipeline Markdown = new MarkdownPipelineBuilder().UseAdvancedExtensions().Build();

    const string Css = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.5}
pre{background:#f6f8fa;padding:.6em .8em;border-radius:6px;overflow-x:auto;font-size:13px}
pre.code{border-left:3px solid #1f77b4}
pre.stderr{background:#fff5f5}
pre.error{background:#fde8e8;border-left:3px solid #d62728;color:#8b0000}
.output{margin:.3em 0 1.2em 0}
.status{padding:.2em .6em;border-radius:4px;color:#fff}
.ok{background:#2ca02c}.error,.timeout,.crashed,.invalid{background:#d62728}
table.summary td,table.summary th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}
""";

    /// <summary>Writes the report for one executed notebook.</summary>
    /// <remarks>With <paramref name="doc"/> null (the run stopped before the notebook host wrote an executed copy) the page says that nothing was produced.</remarks>
    public static void WriteNotebookReport(NotebookDocument? doc, NotebookResult result, string path)
    {
        var sb = new StringBuilder();
        var status = result.Status.Name();
        sb.Append("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
        sb.Append($"<title>{Enc(doc?.Name ?? result.Notebook)}</title><style>{Css}</style>\n");
        if (doc != null) sb.Append(OfflineHtml.PlotlyScriptTag());
        sb.Append("\n</head><body>\n");
        sb.Append($"<p><a href=\"index.html\">← all notebooks</a> · <span class=\"status {status}\">{Enc(status)}</span> · {result.Seconds:0.0} s</p>\n");
        if (doc == null)
        {
            sb.Append($"<h1>{Enc(result.Notebook)}</h1>\n<p>This run produced no executed notebook: {Enc(result.ErrorMessage ?? status)}.</p>\n</body></html>\n");
            SafeFiles.WriteAllTextAtomic(path, sb.ToString());
            return;
        }
        AppendCells(sb, doc);
        sb.Append("</body></html>\n");
        SafeFiles.WriteAllTextAtomic(path, sb.ToString());
    }

    /// <summary>The page style shared by reports and the rendered edition.</summary>
    public static string Style => Css;

    /// <summary>Appends every cell of <paramref name="doc"/>: markdown rendered, code with an anchor <c>cell-N</c>, outputs (the setup cell's plotly.js copy left out).</summary>
    public static void AppendCells(StringBuilder sb, NotebookDocument doc)
    {
        int index = 0;
        foreach (var node in doc.Cells)
        {
            index++;
            if (node is not JsonObject cell) continue;
            var type = Join(cell["cell_type"]);
            var source = NotebookDocument.Source(cell);
            if (type == "markdown") { sb.Append(Markdig.Markdown.ToHtml(source, Markdown)); continue; }
            if (type != "code") continue;
            sb.Append($"<pre class=\"code\" id=\"cell-{index}\">{Enc(source)}</pre>\n<div class=\"output\">");
            if (cell["outputs"] is JsonArray outputs)
                foreach (var o in outputs.OfType<JsonObject>()) sb.Append(Output(o));
            sb.Append("</div>\n");
        }
    }

    static string Output(JsonObject o)
    {
        var kind = Join(o["output_type"]);
        switch (kind)
        {
            case "stream":
                var name = NotebookDocument.Text(o["name"]) is { Length: > 0 } n ? n : "stdout";
                return $"<pre class=\"{(name == "stderr" ? "stderr" : "stdout")}\">{Enc(Join(o["text"]))}</pre>";
            case "error":
                return $"<pre class=\"error\">{Enc(Join(o["ename"]) is { Length: > 0 } en ? en : "Error")}: {Enc(Join(o["traceback"]) is { Length: > 0 } tb ? tb : Join(o["evalue"]))}</pre>";
            case "display_data":
            case "execute_result":
                if (o["data"] is not JsonObject data) return "";
                if (data["text/html"] is { } html)
                {
                    var h = Join(html, "");
                    if (h.Contains(OfflineHtml.BundleMarker, StringComparison.Ordinal)) return ""; // plotly.js is in the head already
                    return $"<div>{h}</div>";
                }
                if (data["image/png"] is { } png) return $"<img src=\"data:image/png;base64,{Join(png, "").Trim()}\"/>";
                if (data["image/svg+xml"] is { } svg) return $"<div>{Join(svg, "")}</div>";
                if (data["text/markdown"] is { } md) return Markdig.Markdown.ToHtml(Join(md, ""), Markdown);
                if (data["text/plain"] is { } txt) return $"<pre>{Enc(Join(txt, ""))}</pre>";
                return "";
            default: return "";
        }
    }

    static string Join(JsonNode? node, string sep = "") => NotebookDocument.Text(node, sep);

    static string Enc(string s) => WebUtility.HtmlEncode(s);

    /// <summary>Writes the index page: one row per notebook with status, time, error and a link to its report.</summary>
    public static void WriteIndex(IReadOnlyList<NotebookResult> results, string path, bool quick)
    {
        var sb = new StringBuilder($"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>SafetyNotebooks run</title><style>{Css}</style></head><body>\n");
        sb.Append($"<h1>SafetyNotebooks run</h1><p>{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC · {(quick ? "quick mode" : "full mode")} · {results.Count(r => r.Ok)} of {results.Count} notebooks ran without errors</p>\n");
        sb.Append("<table class=\"summary\"><tr><th>notebook</th><th>status</th><th>time</th><th>error cell</th><th>message</th></tr>\n");
        foreach (var r in results)
        {
            var link = r.ReportPath != null ? $"<a href=\"{Enc(Path.GetFileName(r.ReportPath))}\">{Enc(r.Notebook)}</a>" : Enc(r.Notebook);
            sb.Append($"<tr><td>{link}</td><td><span class=\"status {r.Status.Name()}\">{r.Status.Name()}</span></td><td>{r.Seconds:0.0} s</td><td>{(r.ErrorCell is int c && r.ReportPath != null ? $"<a href=\"{Enc(Path.GetFileName(r.ReportPath))}#cell-{c}\">{c}</a>" : "")}</td><td>{Enc(r.ErrorMessage ?? "")}</td></tr>\n");
        }
        sb.Append("</table></body></html>\n");
        SafeFiles.WriteAllTextAtomic(path, sb.ToString());
    }
}
