using System.Text;
using System.Text.Json.Nodes;
using SafetyNotebooks.Plotting;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>
/// The rendered edition: executed notebooks (from <c>safety-notebooks run</c>) as browsable offline HTML pages. plotly.js is
/// written once per folder as <c>plotly.min.js</c> (the copy Plotly.NET ships, see <see cref="OfflineHtml.PlotlyJs"/>) and each page
/// references it, instead of embedding 3–4 MB per page as the run reports do; an <c>index.html</c> links every lesson, and each
/// page links the previous and next lesson.
/// </summary>
public static class SiteRenderer
{
    /// <summary>The shared plotly.js file name beside the pages.</summary>
    public const string PlotlyFile = "plotly.min.js";

    /// <summary>Renders every executed notebook in <paramref name="from"/> (a notebook or a folder) into <paramref name="outDir"/>; returns the pages written.</summary>
    public static List<string> Render(string from, string outDir)
    {
        var notebooks = NotebookDocument.Discover(from);
        var docs = notebooks.Select(NotebookDocument.Load).ToList(); // all valid before anything is written
        var pages = notebooks.Select(nb => Path.Combine(Path.GetFullPath(outDir), Path.GetFileNameWithoutExtension(nb) + ".html")).ToList();
        var dupe = pages.GroupBy(p => p).FirstOrDefault(g => g.Count() > 1);
        if (dupe != null) throw new UserError($"two notebooks would both render to {dupe.Key}; render one folder of executed notebooks at a time.");
        var index = Path.Combine(Path.GetFullPath(outDir), "index.html");
        var script = Path.Combine(Path.GetFullPath(outDir), PlotlyFile);
        SafeFiles.RefuseOverwritingInputs(notebooks, pages.Append(index).Append(script), "--out");
        SafeFiles.PrepareDirectory(outDir, "--out");
        SafeFiles.WriteAllTextAtomic(script, OfflineHtml.PlotlyJs);
        var titles = docs.Select(Title).ToList();
        for (int i = 0; i < docs.Count; i++)
        {
            var sb = new StringBuilder("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
            sb.Append($"<title>{Enc(titles[i])}</title><style>{ReportWriter.Style}</style>\n");
            sb.Append($"<script src=\"{PlotlyFile}\"></script>\n</head><body>\n");
            var nav = Nav(i, pages, titles);
            sb.Append(nav).Append(Executed(docs[i]));
            ReportWriter.AppendCells(sb, docs[i]);
            sb.Append(nav).Append("</body></html>\n");
            SafeFiles.WriteAllTextAtomic(pages[i], sb.ToString());
        }
        var idx = new StringBuilder($"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>SafetyNotebooks lessons</title><style>{ReportWriter.Style}</style></head><body>\n");
        idx.Append("<h1>SafetyNotebooks · lessons</h1>\n<p>Rendered from executed notebooks; works offline (charts use the plotly.js beside these pages).</p>\n");
        idx.Append("<table class=\"summary\"><tr><th>lesson</th><th>run</th></tr>\n");
        for (int i = 0; i < docs.Count; i++)
            idx.Append($"<tr><td><a href=\"{Uri.EscapeDataString(Path.GetFileName(pages[i]))}\">{Enc(titles[i])}</a></td><td>{Enc(RunNote(docs[i]))}</td></tr>\n");
        idx.Append("</table></body></html>\n");
        SafeFiles.WriteAllTextAtomic(index, idx.ToString());
        return pages.Append(index).ToList();
    }

    /// <summary>The notebook's first markdown heading without '#', or its file name.</summary>
    public static string Title(NotebookDocument doc)
    {
        foreach (var cell in doc.Cells.OfType<JsonObject>().Where(c => c["cell_type"]?.GetValue<string>() == "markdown"))
            foreach (var line in NotebookDocument.Source(cell).Split('\n'))
                if (line.TrimStart().StartsWith('#')) return line.Trim().TrimStart('#').Trim();
        return Path.GetFileNameWithoutExtension(doc.Path);
    }

    static string RunNote(NotebookDocument doc)
    {
        if (doc.Root["metadata"]?["safety_notebooks"] is not JsonObject m || m["executed_by"] == null) return "not executed by safety-notebooks run";
        var quick = m["quick_mode"]?.GetValue<bool>() == true ? "quick mode" : "full mode";
        return $"{m["status"]?.GetValue<string>()} · {quick} · {m["seconds"]?.GetValue<double>():0} s";
    }

    static string Executed(NotebookDocument doc) => $"<p class=\"run\">{Enc(RunNote(doc))}</p>\n";

    static string Nav(int i, List<string> pages, List<string> titles)
    {
        var parts = new List<string> { "<a href=\"index.html\">all lessons</a>" };
        if (i > 0) parts.Insert(0, $"<a href=\"{Uri.EscapeDataString(Path.GetFileName(pages[i - 1]))}\">← {Enc(titles[i - 1])}</a>");
        if (i < pages.Count - 1) parts.Add($"<a href=\"{Uri.EscapeDataString(Path.GetFileName(pages[i + 1]))}\">{Enc(titles[i + 1])} →</a>");
        return "<p class=\"nav\">" + string.Join(" · ", parts) + "</p>\n";
    }

    // Only the characters HTML needs escaped (WebUtility would turn "·" into &#183;; the page is UTF-8).
    static string Enc(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;");
}
