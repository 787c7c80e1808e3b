using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Plotly.NET;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Plotting;

/// <summary>
/// An interactive attention-pattern view in the spirit of CircuitsVis' <c>attention_heads</c>: pick a head, hover a token to see
/// where it attends (as a query) or who attends to it (as a key), and read the head's whole pattern as a grid. Self-contained
/// HTML with inline JavaScript and the values inline (no CDN, no network), so it renders in Jupyter, VS Code and saved reports.
/// Notebooks display it through the formatter SafetyNotebooks.Interactive registers (text/html); <see cref="Html"/> is the markup.
/// </summary>
public sealed class AttentionView
{
    /// <summary>Marker class on the view's root element.</summary>
    public const string CssClass = "sn-attention-view";

    AttentionView(string html, int heads, int positions)
    {
        Html = html;
        Heads = heads;
        Positions = positions;
    }

    /// <summary>The self-contained HTML fragment (a div, a style and a script).</summary>
    public string Html { get; }
    /// <summary>Number of heads shown.</summary>
    public int Heads { get; }
    /// <summary>Number of token positions.</summary>
    public int Positions { get; }

    /// <summary>
    /// Builds the view for one sequence. <paramref name="pattern"/> is [head, query_pos, key_pos] (e.g. <c>cache["pattern", 1][0]</c>),
    /// or [q, k] for one head; values are shown to 4 decimals.
    /// </summary>
    /// <param name="tokens">One label per position (e.g. <c>tokenizer.ToStrTokens(ids)</c>).</param>
    /// <param name="pattern">Attention weights, [head, q, k] or [q, k].</param>
    /// <param name="headNames">One name per head (default "H0", "H1", ...; e.g. "L1H3").</param>
    /// <param name="title">Heading shown above the view.</param>
    public static AttentionView Create(IReadOnlyList<string> tokens, Tensor pattern, IReadOnlyList<string>? headNames = null, string title = "Attention patterns")
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(pattern);
        if (pattern.dim() == 2) pattern = pattern.unsqueeze(0);
        if (pattern.dim() != 3 || pattern.shape[1] != pattern.shape[2])
            throw new ArgumentException($"AttentionView needs a pattern [head, query_pos, key_pos] (or [q, k]) for one sequence; got [{string.Join(", ", pattern.shape)}]. " +
                "Select the sequence first, e.g. cache[\"pattern\", layer][0].", nameof(pattern));
        int heads = (int)pattern.shape[0], n = (int)pattern.shape[1];
        if (tokens.Count != n)
            throw new ArgumentException($"AttentionView: {tokens.Count} token labels for a pattern over {n} positions; pass one label per position.", nameof(tokens));
        var names = headNames?.ToArray() ?? Enumerable.Range(0, heads).Select(h => $"H{h}").ToArray();
        if (names.Length != heads)
            throw new ArgumentException($"AttentionView: {names.Length} head names for {heads} heads; pass one name per head.", nameof(headNames));
        float[] flat;
        using (var scope = NewDisposeScope())
            flat = pattern.detach().cpu().to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
        var values = new double[heads][][];
        for (int h = 0; h < heads; h++)
        {
            values[h] = new double[n][];
            for (int q = 0; q < n; q++)
            {
                values[h][q] = new double[n];
                for (int k = 0; k < n; k++) values[h][q][k] = Math.Round(flat[(h * n + q) * n + k], 4);
            }
        }
        return new AttentionView(Render(tokens.ToArray(), names, values, title), heads, n);
    }

    /// <summary>A Plotly heatmap of one head's pattern [q, k] (query rows, key columns), labelled with the tokens.</summary>
    public static GenericChart Heatmap(Tensor pattern, IReadOnlyList<string> tokens, string title = "Attention pattern")
    {
        ArgumentNullException.ThrowIfNull(pattern);
        if (pattern.dim() != 2 || pattern.shape[0] != pattern.shape[1] || pattern.shape[0] != tokens.Count)
            throw new ArgumentException($"AttentionView.Heatmap needs one head's pattern [q, k] with one token per position; got [{string.Join(", ", pattern.shape)}] and {tokens.Count} tokens.", nameof(pattern));
        int n = (int)pattern.shape[0];
        float[] flat;
        using (var scope = NewDisposeScope())
            flat = pattern.detach().cpu().to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
        var z = new double[n, n];
        for (int q = 0; q < n; q++) for (int k = 0; k < n; k++) z[q, k] = flat[q * n + k];
        var labels = tokens.Select((t, i) => $"{i}: {t}").ToArray();
        return Plots.Heatmap(title, "key position (attended to)", "query position (attending)", z, labels, labels, colorScale: "Blues");
    }

    /// <summary>A complete standalone HTML page holding the view.</summary>
    public string Page(string title = "Attention patterns") =>
        $"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{WebUtility.HtmlEncode(title)}</title></head><body>\n{Html}\n</body></html>";

    /// <summary>Writes <see cref="Page"/> to <paramref name="path"/>.</summary>
    public void Save(string path, string title = "Attention patterns")
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, Page(title));
    }

    /// <inheritdoc/>
    public override string ToString() => $"AttentionView: {Heads} head(s) × {Positions} positions (HTML; displays interactively in a notebook)";

    static string Render(string[] tokens, string[] heads, double[][][] values, string title)
    {
        var id = "sn-attn-" + Guid.NewGuid().ToString("N")[..12];
        // System.Text.Json's default encoder escapes <, > and &, so the data cannot close the script tag.
        var data = JsonSerializer.Serialize(new { tokens, heads, values });
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"<div id=\"{id}\" class=\"{CssClass}\" style=\"font-family:sans-serif;font-size:13px\">");
        sb.Append("<div style=\"font-weight:bold;margin-bottom:4px\">").Append(WebUtility.HtmlEncode(title)).Append("</div>");
        sb.Append("<div class=\"sn-heads\" style=\"margin-bottom:6px\"></div>");
        sb.Append("<div style=\"margin-bottom:4px\"><label><input type=\"radio\" name=\"").Append(id).Append("-mode\" value=\"q\" checked> hover = query (where it attends)</label> ");
        sb.Append("<label><input type=\"radio\" name=\"").Append(id).Append("-mode\" value=\"k\"> hover = key (who attends to it)</label></div>");
        sb.Append("<div class=\"sn-tokens\" style=\"line-height:2em\"></div>");
        sb.Append("<div class=\"sn-info\" style=\"color:#555;min-height:1.4em\">hover a token; click to pin it</div>");
        sb.Append("<canvas class=\"sn-grid\" style=\"border:1px solid #ccc;margin-top:4px\"></canvas>");
        sb.Append("<noscript>This attention view needs JavaScript (a trusted notebook).</noscript></div>\n");
        sb.Append("<script type=\"text/javascript\">\n(function() {\n");
        sb.Append("var D = ").Append(data).Append(";\n");
        sb.Append("var root = document.getElementById(\"").Append(id).Append("\");\n");
        sb.Append(Script);
        sb.Append("})();\n</script>");
        return sb.ToString();
    }

    const string Script = """
if (!root) return;
var n = D.tokens.length, head = 0, pinned = -1, hover = -1;
var headBox = root.querySelector(".sn-heads"), tokBox = root.querySelector(".sn-tokens"), info = root.querySelector(".sn-info");
var canvas = root.querySelector(".sn-grid");
var cell = Math.max(4, Math.min(18, Math.floor(360 / Math.max(n, 1))));
canvas.width = n * cell; canvas.height = n * cell;
function mode() { var r = root.querySelector("input[value=k]"); return r && r.checked ? "k" : "q"; }
function shade(v) { var c = Math.round(255 * (1 - Math.max(0, Math.min(1, v)))); return "rgb(" + c + "," + c + ",255)"; }
function headButtons() {
  headBox.innerHTML = "";
  D.heads.forEach(function(name, h) {
    var b = document.createElement("button");
    b.textContent = name; b.style.marginRight = "3px";
    b.style.fontWeight = h === head ? "bold" : "normal";
    b.style.background = h === head ? "#cfe0ff" : "";
    b.onclick = function() { head = h; headButtons(); draw(); };
    headBox.appendChild(b);
  });
}
var spans = [];
D.tokens.forEach(function(t, i) {
  var s = document.createElement("span");
  s.textContent = t; s.title = "position " + i;
  s.style.whiteSpace = "pre"; s.style.padding = "2px 3px"; s.style.margin = "1px"; s.style.border = "1px solid #ddd"; s.style.cursor = "pointer";
  s.onmouseenter = function() { hover = i; draw(); };
  s.onmouseleave = function() { hover = -1; draw(); };
  s.onclick = function() { pinned = pinned === i ? -1 : i; draw(); };
  tokBox.appendChild(s); spans.push(s);
});
root.querySelectorAll("input[type=radio]").forEach(function(r) { r.onchange = draw; });
function draw() {
  var A = D.values[head], sel = hover >= 0 ? hover : pinned, m = mode();
  spans.forEach(function(s, j) {
    var v = sel < 0 ? 0 : (m === "q" ? A[sel][j] : A[j][sel]);
    s.style.background = sel < 0 ? "" : shade(v);
    s.style.color = v > 0.6 ? "white" : "";
    s.style.outline = j === sel ? "2px solid #d62728" : "";
  });
  if (sel < 0) info.textContent = D.heads[head] + ": hover a token; click to pin it";
  else {
    var row = [], j;
    for (j = 0; j < n; j++) { var v = m === "q" ? A[sel][j] : A[j][sel]; if (v >= 0.05) row.push([v, j]); }
    row.sort(function(a, b) { return b[0] - a[0]; });
    info.textContent = D.heads[head] + (m === "q" ? ", query " : ", key ") + sel + " '" + D.tokens[sel] + "' " + (m === "q" ? "attends to: " : "is attended by: ") +
      row.slice(0, 6).map(function(r) { return r[1] + " '" + D.tokens[r[1]] + "' " + r[0].toFixed(3); }).join(", ");
  }
  var ctx = canvas.getContext("2d");
  for (var q = 0; q < n; q++) for (var k = 0; k < n; k++) { ctx.fillStyle = shade(A[q][k]); ctx.fillRect(k * cell, q * cell, cell, cell); }
  if (sel >= 0) {
    ctx.strokeStyle = "#d62728"; ctx.lineWidth = 1;
    if (m === "q") ctx.strokeRect(0.5, sel * cell + 0.5, n * cell - 1, cell - 1); else ctx.strokeRect(sel * cell + 0.5, 0.5, cell - 1, n * cell - 1);
  }
}
canvas.onmousemove = function(e) {
  var r = canvas.getBoundingClientRect(), k = Math.floor((e.clientX - r.left) / cell), q = Math.floor((e.clientY - r.top) / cell);
  if (q >= 0 && q < n && k >= 0 && k < n) canvas.title = "query " + q + " '" + D.tokens[q] + "' → key " + k + " '" + D.tokens[k] + "': " + D.values[head][q][k].toFixed(4);
};
headButtons(); draw();

""";
}
