using System.Text.Json.Nodes;
using SafetyNotebooks.Plotting;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>Writes every chart output of an executed notebook as its own offline HTML page (for slides, READMEs, screenshots).</summary>
public static class ChartExporter
{
    public static List<string> Export(NotebookDocument executed, string outDir)
    {
        Directory.CreateDirectory(outDir);
        var written = new List<string>();
        var stem = Path.GetFileNameWithoutExtension(executed.Path);
        int n = 0;
        foreach (var cell in executed.Cells.OfType<JsonObject>())
        {
            if (cell["outputs"] is not JsonArray outputs) continue;
            foreach (var o in outputs.OfType<JsonObject>())
            {
                var html = NotebookDocument.Text(o["data"]?["text/html"]);
                if (!html.Contains(SafetyNotebooks.Runtime.NotebookContract.ChartCssClass, StringComparison.Ordinal)) continue;
                n++;
                var path = Path.Combine(outDir, $"{stem}-chart{n}.html");
                SafeFiles.WriteAllTextAtomic(path, $"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{stem} chart {n}</title>\n{OfflineHtml.PlotlyScriptTag()}\n</head><body style=\"margin:0\">\n{html}\n</body></html>\n");
                written.Add(path);
            }
        }
        return written;
    }
}
