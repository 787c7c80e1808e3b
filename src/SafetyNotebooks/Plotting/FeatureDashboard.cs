using System.Globalization;
using System.Net;
using System.Text;
using SafetyNotebooks.Sae;
using SafetyNotebooks.Tokenization;

namespace SafetyNotebooks.Plotting;

/// <summary>
/// An SAE feature dashboard in the spirit of sae_vis / Neuronpedia: per feature, its metrics (density, max and mean activation,
/// decoder norm, encoder–decoder cosine, nearest features), the histogram of its nonzero activations, the tokens whose logits its
/// decoder direction boosts and suppresses, its top-activating contexts with every token shaded by the feature's activation, and
/// samples from activation bands. Static, self-contained HTML (inline CSS and SVG, no script, no network), so it renders in
/// Jupyter, VS Code, saved reports and script-blocking viewers alike; hover a token for its id and activation. Several features
/// stack as collapsible sections. Notebooks display it through the formatter SafetyNotebooks.Interactive registers (text/html).
/// The data comes from <see cref="FeatureDashboards.Compute"/>.
/// </summary>
public sealed class FeatureDashboard
{
    /// <summary>Marker class on the dashboard's root element.</summary>
    public const string CssClass = "sn-feature-dashboard";

    FeatureDashboard(string html, IReadOnlyList<int> features)
    {
        Html = html;
        Features = features;
    }

    /// <summary>The self-contained HTML fragment (a div with inline styles and SVG).</summary>
    public string Html { get; }
    /// <summary>The features shown, in order.</summary>
    public IReadOnlyList<int> Features { get; }

    /// <summary>A dashboard for one feature; token ids are shown with <paramref name="tokenizer"/>'s per-token strings.</summary>
    public static FeatureDashboard Create(FeatureDashboardData feature, ITokenizer tokenizer, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(feature);
        return Create(new[] { feature }, tokenizer, title);
    }

    /// <summary>A dashboard for several features (each a collapsible section; the first is open).</summary>
    public static FeatureDashboard Create(IReadOnlyList<FeatureDashboardData> features, ITokenizer tokenizer, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return Create(features, id => TokenString(tokenizer, id), title);
    }

    /// <summary>A dashboard for several features, with <paramref name="tokenString"/> naming each token id.</summary>
    public static FeatureDashboard Create(IReadOnlyList<FeatureDashboardData> features, Func<long, string> tokenString, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(tokenString);
        if (features.Count == 0) throw new ArgumentException("No feature data given; compute it with FeatureDashboards.Compute(model, sae, tokens, features).", nameof(features));
        var sb = new StringBuilder();
        sb.Append("<div class=\"").Append(CssClass).Append("\" style=\"font-family:sans-serif;font-size:13px;max-width:1100px\">");
        if (title is not null) sb.Append("<div style=\"font-weight:bold;font-size:15px;margin-bottom:6px\">").Append(E(title)).Append("</div>");
        for (int i = 0; i < features.Count; i++) RenderFeature(sb, features[i], tokenString, open: i == 0);
        sb.Append("</div>");
        return new FeatureDashboard(sb.ToString(), features.Select(f => f.Feature).ToList());
    }

    /// <summary>A complete standalone HTML page holding the dashboard.</summary>
    public string Page(string title = "SAE feature dashboard") =>
        $"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{E(title)}</title></head><body>\n{Html}\n</body></html>";

    /// <summary>Writes <see cref="Page"/> to <paramref name="path"/>.</summary>
    public void Save(string path, string title = "SAE feature dashboard")
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, Page(title));
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"FeatureDashboard: feature{(Features.Count == 1 ? "" : "s")} {string.Join(", ", Features)} (HTML; displays in a notebook, or Save(path))";

    // ---- rendering -------------------------------------------------------------------------------------------

    static string E(string s) => WebUtility.HtmlEncode(s);
    static string N(double v, string fmt = "0.###") => v.ToString(fmt, CultureInfo.InvariantCulture);

    static string TokenString(ITokenizer tokenizer, long id)
    {
        if (id < 0 || id >= tokenizer.VocabSize) return $"<{id}>";
        return tokenizer.ToStrTokens(new[] { (int)id })[0];
    }

    // Visible form of a token: whitespace made visible so contexts read as they were tokenised.
    static string Visible(string s) => s.Replace("\n", "↵").Replace("\t", "⇥").Replace("\r", "");

    static void RenderFeature(StringBuilder sb, FeatureDashboardData d, Func<long, string> tok, bool open)
    {
        sb.Append("<details").Append(open ? " open" : "").Append(" style=\"border:1px solid #ccc;border-radius:4px;margin:6px 0;padding:4px 8px\">");
        sb.Append("<summary style=\"cursor:pointer;font-weight:bold\">Feature ").Append(d.Feature);
        if (d.HookName is not null) sb.Append(" <span style=\"font-weight:normal;color:#666\">· ").Append(E(d.HookName)).Append("</span>");
        sb.Append(" <span style=\"font-weight:normal;color:#666\">· density ").Append(N(100 * d.Density, "0.###")).Append("% · max ").Append(N(d.MaxActivation)).Append("</span></summary>");
        sb.Append("<div style=\"display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap;margin-top:6px\">");

        // Left column: metrics, neighbours, logit tables.
        sb.Append("<div style=\"flex:0 0 300px\">");
        sb.Append("<div style=\"font-weight:bold\">Metrics</div><table style=\"border-collapse:collapse\">");
        void Row(string k, string v) => sb.Append("<tr><td style=\"padding:1px 8px 1px 0;color:#555\">").Append(E(k)).Append("</td><td style=\"text-align:right\">").Append(E(v)).Append("</td></tr>");
        Row("density (fraction of tokens > 0)", N(d.Density, "0.#####"));
        Row("log10 density", N(d.Log10Density, "0.00"));
        Row("tokens scored", d.TokensScored.ToString(CultureInfo.InvariantCulture));
        Row("max activation", N(d.MaxActivation));
        Row("mean activation when active", N(d.MeanActiveActivation));
        if (d.DecoderNorm > 0)
        {
            Row("decoder norm ‖W_dec[f]‖", N(d.DecoderNorm));
            Row("cos(W_enc[:, f], W_dec[f])", N(d.EncoderDecoderCosine));
        }
        sb.Append("</table>");
        if (d.Neighbors.Count > 0)
        {
            sb.Append("<div style=\"font-weight:bold;margin-top:6px\">Nearest features (decoder cosine)</div><div>");
            sb.Append(string.Join(", ", d.Neighbors.Select(nb => $"{nb.Feature} ({N(nb.Cosine, "0.00")})")));
            sb.Append("</div>");
        }
        if (d.TopLogits.Count > 0 || d.BottomLogits.Count > 0)
        {
            double scale = d.TopLogits.Concat(d.BottomLogits).Select(l => Math.Abs(l.Value)).DefaultIfEmpty(0).Max();
            sb.Append("<div style=\"display:flex;gap:10px;margin-top:6px\">");
            LogitTable(sb, "Negative logits", d.BottomLogits, tok, scale, "#4575b4");
            LogitTable(sb, "Positive logits", d.TopLogits, tok, scale, "#d73027");
            sb.Append("</div>");
        }
        sb.Append("</div>");

        // Right column: histogram, top examples, quantiles.
        sb.Append("<div style=\"flex:1 1 500px;min-width:360px\">");
        sb.Append("<div style=\"font-weight:bold\">Activations density <span style=\"font-weight:normal;color:#666\">(nonzero activations; ")
          .Append(d.ActiveTokens.ToString(CultureInfo.InvariantCulture)).Append(" of ").Append(d.TokensScored.ToString(CultureInfo.InvariantCulture)).Append(" tokens)</span></div>");
        Histogram(sb, d);
        sb.Append("<div style=\"font-weight:bold;margin-top:6px\">Top activations</div>");
        if (d.TopExamples.Count == 0) sb.Append("<div style=\"color:#666\">the feature never fired on these tokens</div>");
        foreach (var ex in d.TopExamples) Example(sb, ex, d.MaxActivation, tok);
        foreach (var g in d.Quantiles)
        {
            if (g.Examples.Count == 0) continue;
            sb.Append("<div style=\"font-weight:bold;margin-top:6px\">Interval ").Append(N(g.Lower, "0.00")).Append(" – ").Append(N(g.Upper, "0.00"))
              .Append(" <span style=\"font-weight:normal;color:#666\">(").Append(g.Count.ToString(CultureInfo.InvariantCulture)).Append(" tokens, ")
              .Append(N(d.ActiveTokens == 0 ? 0 : 100.0 * g.Count / d.ActiveTokens, "0.#")).Append("% of activations)</span></div>");
            foreach (var ex in g.Examples) Example(sb, ex, d.MaxActivation, tok);
        }
        sb.Append("</div></div></details>");
    }

    static void LogitTable(StringBuilder sb, string title, IReadOnlyList<LogitEffect> rows, Func<long, string> tok, double scale, string colour)
    {
        sb.Append("<table style=\"border-collapse:collapse;font-family:monospace;font-size:12px\"><tr><th colspan=\"2\" style=\"font-family:sans-serif;text-align:left\">")
          .Append(E(title)).Append("</th></tr>");
        foreach (var r in rows)
        {
            double alpha = scale > 0 ? Math.Abs(r.Value) / scale : 0;
            sb.Append("<tr><td style=\"padding:1px 4px;white-space:pre;background:").Append(Rgba(colour, 0.15 + 0.6 * alpha)).Append("\" title=\"id ")
              .Append(r.TokenId.ToString(CultureInfo.InvariantCulture)).Append("\">").Append(E(Visible(tok(r.TokenId)))).Append("</td><td style=\"text-align:right;padding:1px 4px\">")
              .Append(N(r.Value, "+0.00;-0.00;0.00")).Append("</td></tr>");
        }
        sb.Append("</table>");
    }

    static string Rgba(string hex, double alpha)
    {
        int r = Convert.ToInt32(hex.Substring(1, 2), 16), g = Convert.ToInt32(hex.Substring(3, 2), 16), b = Convert.ToInt32(hex.Substring(5, 2), 16);
        return $"rgba({r},{g},{b},{N(Math.Clamp(alpha, 0, 1), "0.###")})";
    }

    static void Histogram(StringBuilder sb, FeatureDashboardData d)
    {
        const int W = 480, H = 90, Pad = 18;
        int bins = d.HistogramCounts.Length;
        long top = d.HistogramCounts.DefaultIfEmpty(0).Max();
        sb.Append("<svg width=\"").Append(W).Append("\" height=\"").Append(H + Pad).Append("\" style=\"display:block\">");
        if (top > 0 && bins > 0)
        {
            double bw = (double)W / bins;
            for (int i = 0; i < bins; i++)
            {
                long c = d.HistogramCounts[i];
                if (c == 0) continue;
                double h = H * (double)c / top;
                double frac = (i + 0.5) / bins;
                sb.Append("<rect x=\"").Append(N(i * bw, "0.##")).Append("\" y=\"").Append(N(H - h, "0.##")).Append("\" width=\"").Append(N(Math.Max(1, bw - 1), "0.##"))
                  .Append("\" height=\"").Append(N(h, "0.##")).Append("\" fill=\"").Append(Rgba("#ff8c00", 0.3 + 0.7 * frac)).Append("\"><title>")
                  .Append(N(d.HistogramEdges[i], "0.###")).Append(" – ").Append(N(d.HistogramEdges[i + 1], "0.###")).Append(": ").Append(c.ToString(CultureInfo.InvariantCulture)).Append("</title></rect>");
            }
        }
        sb.Append("<line x1=\"0\" y1=\"").Append(H).Append("\" x2=\"").Append(W).Append("\" y2=\"").Append(H).Append("\" stroke=\"#999\"/>");
        sb.Append("<text x=\"0\" y=\"").Append(H + 13).Append("\" font-size=\"11\" fill=\"#555\">0</text>");
        sb.Append("<text x=\"").Append(W).Append("\" y=\"").Append(H + 13).Append("\" font-size=\"11\" fill=\"#555\" text-anchor=\"end\">").Append(N(d.MaxActivation, "0.###")).Append("</text>");
        sb.Append("</svg>");
    }

    static void Example(StringBuilder sb, FeatureExample ex, double max, Func<long, string> tok)
    {
        sb.Append("<div style=\"font-family:monospace;font-size:12px;line-height:1.9em;white-space:nowrap;overflow-x:auto\">");
        sb.Append("<span style=\"display:inline-block;width:4.5em;color:#666\">").Append(N(ex.Activation, "0.000")).Append("</span>");
        for (int i = 0; i < ex.TokenIds.Length; i++)
        {
            double a = ex.Activations[i];
            double alpha = max > 0 && a > 0 ? Math.Clamp(a / max, 0, 1) : 0;
            var text = Visible(tok(ex.TokenIds[i]));
            sb.Append("<span style=\"white-space:pre;padding:1px 1px;margin:0 1px;border-radius:2px;background:").Append(Rgba("#ff8c00", 0.85 * alpha))
              .Append(i == ex.FocusIndex ? ";border-bottom:2px solid #000" : "")
              .Append("\" title=\"").Append(E($"{tok(ex.TokenIds[i])} (id {ex.TokenIds[i]}) · activation {N(a, "0.###")} · row {ex.Sequence}, position {ex.Position - ex.FocusIndex + i}")).Append("\">")
              .Append(E(text.Length == 0 ? "∅" : text)).Append("</span>");
        }
        sb.Append("</div>");
    }
}
