using System.Net;
using Microsoft.DotNet.Interactive;
using Microsoft.DotNet.Interactive.Formatting;
using Microsoft.AspNetCore.Html;
using SafetyNotebooks.Runtime;

namespace SafetyNotebooks.Interactive;

/// <summary>
/// Live progress in a notebook: one output that updates in place (throttled to a few times a second),
/// never thousands of lines. Falls back to the console when no cell is running.
/// </summary>
public sealed class NotebookProgressSink : IProgressSink
{
    /// <summary>CSS class marking progress outputs (the headless runner echoes them to its console).</summary>
    public const string CssClass = NotebookContract.ProgressCssClass;

    readonly KernelInvocationContext? _context = KernelInvocationContext.Current;
    readonly ConsoleProgressSink _fallback = new();
    DisplayedValue? _shown;
    long _lastTicks;

    /// <inheritdoc />
    public void Report(ProgressUpdate update)
    {
        if (_context == null) { _fallback.Report(update); return; }
        long now = Environment.TickCount64;
        if (_shown != null && !update.Done && now - _lastTicks < 250) return;
        _lastTicks = now;
        var html = Html(update);
        if (_shown == null) _shown = _context.Display(html, "text/html");
        else _shown.Update(html);
    }

    /// <summary>The progress bar as HTML; its title attribute holds the plain-text line.</summary>
    public static HtmlString Html(ProgressUpdate u)
    {
        var line = WebUtility.HtmlEncode(u.ToLine());
        var pct = (u.Fraction * 100).ToString("0.#", System.Globalization.CultureInfo.InvariantCulture);
        return new HtmlString(
            $"<div class=\"{CssClass}\" title=\"{line}\" style=\"font-family:monospace;font-size:12px\">" +
            $"<div style=\"width:320px;height:8px;background:#eee;border-radius:4px;overflow:hidden;display:inline-block;vertical-align:middle\">" +
            $"<div style=\"width:{pct}%;height:100%;background:{(u.Done ? "#2ca02c" : "#1f77b4")}\"></div></div> {line}</div>");
    }
}
