using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.Data.Analysis;
using Microsoft.DotNet.Interactive.Formatting;
using Plotly.NET;
using SafetyNotebooks.Plotting;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interactive;

/// <summary>
/// Notebook formatters: tensors (shape, dtype and a compact preview; small ones as a table),
/// Plotly.NET charts (offline, plotly.js embedded once by the setup cell) and DataFrames (an HTML table).
/// The HTML builders are public so tests and the report writer can use them without a kernel.
/// </summary>
public static class Formatters
{
    /// <summary>Tensors with at most this many elements in each of ≤ 2 dimensions are shown as a full table.</summary>
    public const int TableLimit = 16;

    /// <summary>Registers every formatter with .NET Interactive (idempotent enough: later registrations win).</summary>
    public static void Register()
    {
        Formatter.Register<Tensor>((t, w) => w.Write(TensorHtml(t)), "text/html");
        Formatter.Register<Tensor>((t, w) => w.Write(TensorText(t)), "text/plain");
        Formatter.SetPreferredMimeTypesFor(typeof(Tensor), "text/html", "text/plain");
        Formatter.Register<GenericChart>((c, w) => w.Write(NotebookSetup.ChartHtml(c)), "text/html");
        // A short visible text for viewers that block scripts (GitHub, untrusted notebooks): the chart itself is text/html.
        Formatter.Register<GenericChart>((c, w) => w.Write(SafetyNotebooks.Runtime.NotebookContract.ChartTextFallback), "text/plain");
        Formatter.SetPreferredMimeTypesFor(typeof(GenericChart), "text/html", "text/plain");
        Formatter.Register<DataFrame>((df, w) => w.Write(DataFrameHtml(df)), "text/html");
        // The attention view is self-contained HTML + inline JS (no CDN); text/plain is a one-line fallback for script-less viewers.
        Formatter.Register<AttentionView>((v, w) => w.Write(v.Html), "text/html");
        Formatter.Register<AttentionView>((v, w) => w.Write(v.ToString()), "text/plain");
        Formatter.SetPreferredMimeTypesFor(typeof(AttentionView), "text/html", "text/plain");
        // Feature dashboards are static self-contained HTML (inline CSS and SVG, no script).
        Formatter.Register<FeatureDashboard>((v, w) => w.Write(v.Html), "text/html");
        Formatter.Register<FeatureDashboard>((v, w) => w.Write(v.ToString()), "text/plain");
        Formatter.SetPreferredMimeTypesFor(typeof(FeatureDashboard), "text/html", "text/plain");
        Formatter.SetPreferredMimeTypesFor(typeof(DataFrame), "text/html", "text/plain");
        // Governance documents: the offline HTML body inline (scoped style), the Markdown as plain text.
        Formatter.Register<SafetyNotebooks.Evaluation.Governance.GovernanceDocument>((d, w) => w.Write(d.ToHtmlFragment()), "text/html");
        Formatter.Register<SafetyNotebooks.Evaluation.Governance.GovernanceDocument>((d, w) => w.Write(d.ToMarkdown()), "text/plain");
        Formatter.SetPreferredMimeTypesFor(typeof(SafetyNotebooks.Evaluation.Governance.GovernanceDocument), "text/html", "text/plain");
    }

    static string F(double v) => double.IsNaN(v) ? "nan" : v.ToString(Math.Abs(v) >= 1e5 || (Math.Abs(v) < 1e-4 && v != 0) ? "0.###e0" : "0.####", CultureInfo.InvariantCulture);

    /// <summary>One-line description: <c>Tensor [2, 3] Float32 cpu</c> (+ <c>requires_grad</c>).</summary>
    public static string Header(Tensor t) =>
        $"Tensor [{string.Join(", ", t.shape)}] {t.dtype} {t.device}{(t.requires_grad ? " requires_grad" : "")}";

    /// <summary>Plain-text form: the header, then values (small) or a summary (large).</summary>
    public static string TensorText(Tensor t)
    {
        if (t.IsInvalid) return "Tensor (disposed)";
        var sb = new StringBuilder(Header(t));
        using var scope = NewDisposeScope();
        var v = t.detach().cpu();
        if (IsSmall(v))
        {
            var rows = Rows(v);
            foreach (var r in rows) sb.Append('\n').Append(string.Join("  ", r.Select(x => x.PadLeft(9))));
        }
        else sb.Append('\n').Append(Summary(v));
        return sb.ToString();
    }

    /// <summary>HTML form: a header line, then a table (small tensors) or a summary with the first values.</summary>
    public static string TensorHtml(Tensor t)
    {
        if (t.IsInvalid) return "<div><code>Tensor (disposed)</code></div>";
        using var scope = NewDisposeScope();
        var v = t.detach().cpu();
        var sb = new StringBuilder("<div class=\"sn-tensor\"><code>").Append(WebUtility.HtmlEncode(Header(t))).Append("</code>");
        if (IsSmall(v))
        {
            sb.Append("<table style=\"font-family:monospace;border-collapse:collapse\">");
            foreach (var r in Rows(v))
            {
                sb.Append("<tr>");
                foreach (var x in r) sb.Append("<td style=\"text-align:right;padding:1px 6px;border:1px solid #ddd\">").Append(WebUtility.HtmlEncode(x)).Append("</td>");
                sb.Append("</tr>");
            }
            sb.Append("</table>");
        }
        else sb.Append("<br/><code>").Append(WebUtility.HtmlEncode(Summary(v))).Append("</code>");
        return sb.Append("</div>").ToString();
    }

    static bool IsSmall(Tensor v) => v.dim() <= 2 && v.shape.All(s => s <= TableLimit) && v.numel() > 0;

    static List<string[]> Rows(Tensor v)
    {
        var x = v.dim() == 0 ? v.reshape(1, 1) : v.dim() == 1 ? v.reshape(1, -1) : v;
        var rows = new List<string[]>();
        bool isBool = v.dtype == ScalarType.Bool;
        bool isInt = v.dtype is ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte;
        var d = isBool ? x.to(ScalarType.Int64) : x.to(ScalarType.Float64);
        for (long i = 0; i < d.shape[0]; i++)
        {
            var row = new string[d.shape[1]];
            for (long j = 0; j < d.shape[1]; j++)
            {
                row[j] = isBool ? (d[i, j].item<long>() != 0 ? "true" : "false")
                       : isInt ? ((long)d[i, j].item<double>()).ToString(CultureInfo.InvariantCulture)
                       : F(d[i, j].item<double>());
            }
            rows.Add(row);
        }
        return rows;
    }

    static string Summary(Tensor v)
    {
        if (v.numel() == 0) return "(empty)";
        var d = v.to(ScalarType.Float64).flatten();
        int n = (int)Math.Min(8, d.numel());
        var first = string.Join(", ", Enumerable.Range(0, n).Select(i => F(d[i].item<double>())));
        return $"min {F(d.min().item<double>())}  max {F(d.max().item<double>())}  mean {F(d.mean().item<double>())}  std {F(d.numel() > 1 ? d.std().item<double>() : 0)} | first: {first}{(d.numel() > n ? ", …" : "")}";
    }

    /// <summary>An HTML table of the first <paramref name="maxRows"/> rows, with column types and the row count.</summary>
    public static string DataFrameHtml(DataFrame df, int maxRows = 25)
    {
        var sb = new StringBuilder("<div class=\"sn-dataframe\"><table style=\"border-collapse:collapse;font-family:sans-serif;font-size:13px\"><thead><tr>");
        foreach (var c in df.Columns)
            sb.Append("<th style=\"border-bottom:2px solid #999;padding:2px 8px;text-align:right\" title=\"")
              .Append(WebUtility.HtmlEncode(c.DataType.Name)).Append("\">").Append(WebUtility.HtmlEncode(c.Name)).Append("</th>");
        sb.Append("</tr></thead><tbody>");
        long rows = Math.Min(df.Rows.Count, maxRows);
        for (long r = 0; r < rows; r++)
        {
            sb.Append("<tr>");
            foreach (var c in df.Columns)
            {
                var val = c[r];
                var s = val switch { null => "", double dd => F(dd), float ff => F(ff), _ => Convert.ToString(val, CultureInfo.InvariantCulture) ?? "" };
                sb.Append("<td style=\"border-bottom:1px solid #eee;padding:2px 8px;text-align:right\">").Append(WebUtility.HtmlEncode(s)).Append("</td>");
            }
            sb.Append("</tr>");
        }
        sb.Append("</tbody></table>");
        sb.Append($"<small>{df.Rows.Count} rows × {df.Columns.Count} columns{(df.Rows.Count > maxRows ? $" (first {maxRows} shown)" : "")}</small></div>");
        return sb.ToString();
    }
}
