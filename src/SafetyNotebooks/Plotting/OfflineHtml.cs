using System.Net;
using System.Reflection;
using Plotly.NET;

namespace SafetyNotebooks.Plotting;

/// <summary>
/// Renders Plotly.NET charts with no network: plotly.js is embedded (read from the copy that
/// Plotly.NET ships inside its assembly), once per notebook or report, and each chart is a div plus
/// a small script that waits for it. Works in JupyterLab 4 / Notebook 7 (no RequireJS), classic
/// Notebook (RequireJS is hidden from plotly.js so it defines a global), VS Code and plain browsers.
/// </summary>
public static class OfflineHtml
{
    /// <summary>A marker inside the embedded plotly.js script, so reports can recognise (and de-duplicate) it.</summary>
    public const string BundleMarker = "safety-notebooks:plotly-bundle";

    static string? _plotlyJs;

    /// <summary>The plotly.js version Plotly.NET ships.</summary>
    public static string PlotlyJsVersion { get; private set; } = "";

    /// <summary>The full plotly.min.js text shipped inside Plotly.NET.</summary>
    public static string PlotlyJs
    {
        get
        {
            if (_plotlyJs != null) return _plotlyJs;
            var asm = typeof(GenericChart).Assembly;
            var name = asm.GetManifestResourceNames().FirstOrDefault(n => n.EndsWith(".min.js", StringComparison.Ordinal) && n.Contains("plotly-"))
                ?? throw new InvalidOperationException("Plotly.NET's embedded plotly.js was not found; is Plotly.NET 6 referenced?");
            PlotlyJsVersion = name.Split("plotly-")[1].Replace(".min.js", "");
            using var s = asm.GetManifestResourceStream(name)!;
            using var r = new StreamReader(s);
            _plotlyJs = r.ReadToEnd();
            return _plotlyJs;
        }
    }

    /// <summary>
    /// A script tag that defines <c>window.Plotly</c> from the embedded plotly.js. AMD/CommonJS
    /// globals are shadowed so plotly.js always attaches to the window, even under RequireJS.
    /// </summary>
    public static string PlotlyScriptTag() =>
        $"<script type=\"text/javascript\">/*{BundleMarker}*/\nif (!window.Plotly) {{ (function(define, module, exports) {{\n{PlotlyJs.Replace("</script", "<\\/script")}\n}}).call(window, undefined, undefined, undefined); }}\n</script>";

    /// <summary>The chart's figure (data + layout + config) as plotly.js JSON.</summary>
    public static string FigureJson(GenericChart chart)
    {
        var figure = GenericChart.toFigure(chart);
        var json = Newtonsoft.Json.JsonConvert.SerializeObject(new
        {
            data = figure.Data,
            layout = figure.Layout,
            config = GenericChart.getConfig(chart),
        }, Globals.JSON_CONFIG);
        return json;
    }

    /// <summary>
    /// A self-contained div for one chart. With <paramref name="includePlotlyJs"/> the plotly.js bundle
    /// is included before it (do that once per page); otherwise the chart waits for one elsewhere on the page.
    /// </summary>
    public static string ChartDiv(GenericChart chart, bool includePlotlyJs = false, int heightPx = 0)
    {
        var id = "sn-chart-" + Guid.NewGuid().ToString("N")[..12];
        var json = FigureJson(chart).Replace("</", "<\\/");
        var style = heightPx > 0 ? $"width:100%;height:{heightPx}px;" : "width:100%;";
        var script = $$"""
<div id="{{id}}" class="{{SafetyNotebooks.Runtime.NotebookContract.ChartCssClass}}" style="{{style}}"></div>
<script type="text/javascript">
(function() {
  var fig = {{json}};
  fig.layout = fig.layout || {};
  delete fig.layout.width; delete fig.layout.height; fig.layout.autosize = true;   // fill the container
  var tries = 0;
  function draw() {
    var el = document.getElementById("{{id}}");
    if (window.Plotly && el) { window.Plotly.newPlot(el, fig.data, fig.layout, Object.assign({responsive: true}, fig.config || {})); return; }
    if (++tries < 400) { setTimeout(draw, 50); }
    else if (el) { el.innerText = "plotly.js did not load: run the notebook's first cell (SafetyNotebooks setup) again."; }
  }
  draw();
})();
</script>
""";
        return includePlotlyJs ? PlotlyScriptTag() + "\n" + script : script;
    }

    /// <summary>A complete standalone HTML page showing the charts, rendering offline.</summary>
    public static string Page(string title, params GenericChart[] charts)
    {
        var body = string.Join("\n", charts.Select(c => ChartDiv(c, false, 450)));
        return $"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{WebUtility.HtmlEncode(title)}</title>\n{PlotlyScriptTag()}\n</head><body>\n<h1>{WebUtility.HtmlEncode(title)}</h1>\n{body}\n</body></html>";
    }

    /// <summary>Writes <see cref="Page"/> to <paramref name="path"/>.</summary>
    public static void SavePage(string path, string title, params GenericChart[] charts)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, Page(title, charts));
    }
}
