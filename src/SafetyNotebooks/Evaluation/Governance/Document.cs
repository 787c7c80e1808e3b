using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace SafetyNotebooks.Evaluation.Governance;

/// <summary>A block of a governance document: a heading, a paragraph, a bullet list, a table or a call-out note.</summary>
public abstract record Block;
/// <summary>A heading (level 1 is the title).</summary>
public sealed record Heading(int Level, string Text) : Block;
/// <summary>A paragraph; inline <c>**bold**</c>, <c>`code`</c> and <c>[text](href)</c> are rendered in both formats.</summary>
public sealed record Paragraph(string Text) : Block;
/// <summary>A bullet list.</summary>
public sealed record Bullets(IReadOnlyList<string> Items) : Block;
/// <summary>A table with a header row.</summary>
public sealed record Table(IReadOnlyList<string> Header, IReadOnlyList<IReadOnlyList<string>> Rows) : Block;
/// <summary>A call-out (a block quote in Markdown, a boxed paragraph in HTML).</summary>
public sealed record Note(string Text) : Block;

/// <summary>
/// One generated governance document, kept as blocks so that the Markdown and the HTML say the same thing. The HTML is one
/// self-contained file (inline CSS, no scripts, nothing fetched), readable offline.
/// </summary>
public sealed record GovernanceDocument(string Slug, string Title, IReadOnlyList<Block> Blocks)
{
    /// <summary>The document as GitHub-flavoured Markdown.</summary>
    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        foreach (var b in Blocks)
        {
            switch (b)
            {
                case Heading h: sb.Append('#', h.Level).Append(' ').AppendLine(h.Text); break;
                case Paragraph p: sb.AppendLine(p.Text); break;
                case Note n: foreach (var line in n.Text.Split('\n')) sb.Append("> ").AppendLine(line); break;
                case Bullets l: foreach (var i in l.Items) sb.Append("- ").AppendLine(i); break;
                case Table t:
                    sb.Append("| ").Append(string.Join(" | ", t.Header.Select(Cell))).AppendLine(" |");
                    sb.Append('|').Append(string.Concat(t.Header.Select(_ => " --- |"))).AppendLine();
                    foreach (var r in t.Rows) sb.Append("| ").Append(string.Join(" | ", r.Select(Cell))).AppendLine(" |");
                    break;
            }
            sb.AppendLine();
        }
        return sb.ToString().TrimEnd() + "\n";
        static string Cell(string s) => s.Replace("|", "\\|").Replace("\n", "<br>");
    }

    const string Style = "{0}{{font-family:system-ui,sans-serif;max-width:1100px;line-height:1.45;color:#222}}" +
        "{0} table{{border-collapse:collapse;margin:0.5em 0}}{0} td,{0} th{{border:1px solid #bbb;padding:4px 8px;vertical-align:top;text-align:left}}" +
        "{0} th{{background:#f0f0f0}}{0} code{{background:#f4f4f4;padding:0 3px}}{0} .note{{border-left:4px solid #c90;background:#fff8e6;padding:0.5em 1em}}";

    /// <summary>The document as one offline HTML page (inline CSS, no scripts, nothing fetched).</summary>
    public string ToHtml() => new StringBuilder("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>")
        .Append(WebUtility.HtmlEncode(Title)).Append("</title>\n<style>").Append(string.Format(CultureInfo.InvariantCulture, Style, "body"))
        .Append("body{margin:2em auto;padding:0 1em}</style></head><body>\n").Append(Body()).Append("</body></html>\n").ToString();

    /// <summary>The document as an HTML fragment with its style scoped to a wrapper (for notebook output).</summary>
    public string ToHtmlFragment() => new StringBuilder("<div class=\"governance-doc\"><style>").Append(string.Format(CultureInfo.InvariantCulture, Style, ".governance-doc"))
        .Append("</style>\n").Append(Body()).Append("</div>\n").ToString();

    string Body()
    {
        var sb = new StringBuilder();
        foreach (var b in Blocks)
        {
            switch (b)
            {
                case Heading h: sb.Append(CultureInfo.InvariantCulture, $"<h{h.Level}>").Append(Inline(h.Text)).Append(CultureInfo.InvariantCulture, $"</h{h.Level}>\n"); break;
                case Paragraph p: sb.Append("<p>").Append(Inline(p.Text)).Append("</p>\n"); break;
                case Note n: sb.Append("<div class=\"note\">").Append(Inline(n.Text).Replace("\n", "<br>")).Append("</div>\n"); break;
                case Bullets l: sb.Append("<ul>\n"); foreach (var i in l.Items) sb.Append("<li>").Append(Inline(i)).Append("</li>\n"); sb.Append("</ul>\n"); break;
                case Table t:
                    sb.Append("<table>\n<tr>");
                    foreach (var c in t.Header) sb.Append("<th>").Append(Inline(c)).Append("</th>");
                    sb.Append("</tr>\n");
                    foreach (var r in t.Rows)
                    {
                        sb.Append("<tr>");
                        foreach (var c in r) sb.Append("<td>").Append(Inline(c).Replace("\n", "<br>")).Append("</td>");
                        sb.Append("</tr>\n");
                    }
                    sb.Append("</table>\n");
                    break;
            }
        }
        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Title} ({Blocks.Count} blocks; .ToMarkdown(), .ToHtml())";

    /// <summary>All the text of the document (for searching it in tests and checks).</summary>
    public string PlainText => ToMarkdown();

    static readonly Regex Link = new(@"\[([^\]]+)\]\(([^)\s]+)\)", RegexOptions.CultureInvariant);
    static readonly Regex Bold = new(@"\*\*(.+?)\*\*", RegexOptions.CultureInvariant);
    static readonly Regex Code = new(@"`([^`]+)`", RegexOptions.CultureInvariant);

    /// <summary>HTML-encodes then renders the three inline forms; links are kept only for relative paths and http(s).</summary>
    static string Inline(string s)
    {
        var e = WebUtility.HtmlEncode(s);
        e = Code.Replace(e, "<code>$1</code>");
        e = Bold.Replace(e, "<strong>$1</strong>");
        return Link.Replace(e, m =>
        {
            var href = m.Groups[2].Value;
            bool safe = href.StartsWith("http://", StringComparison.Ordinal) || href.StartsWith("https://", StringComparison.Ordinal) || !href.Contains(':');
            return safe ? $"<a href=\"{href}\">{m.Groups[1].Value}</a>" : m.Groups[1].Value;
        });
    }
}
