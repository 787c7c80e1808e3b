using SafetyNotebooks.Plotting;

namespace SafetyNotebooks.Tests.Plotting;

public class OfflineHtmlTests
{
    [Fact]
    public void The_embedded_Plotly_js_is_the_real_library_and_needs_no_network()
    {
        var js = OfflineHtml.PlotlyJs;
        Assert.True(js.Length > 1_000_000, "plotly.min.js is over 1 MB");
        Assert.Contains("plotly.js v" + OfflineHtml.PlotlyJsVersion, js);
        var tag = OfflineHtml.PlotlyScriptTag();
        Assert.Contains(OfflineHtml.BundleMarker, tag);
        Assert.StartsWith("<script type=\"text/javascript\">", tag);          // inline, not a reference
        Assert.DoesNotContain("<script src=", tag);
        Assert.DoesNotContain("require.config", tag);                         // no RequireJS/CDN loader
    }

    [Fact]
    public void A_chart_div_carries_its_data_title_and_axis_titles()
    {
        var chart = Plots.Line("Loss curve", "step", "loss (nats)", new double[] { 3, 2, 1 }, "train");
        var html = OfflineHtml.ChartDiv(chart);
        Assert.Contains("\"y\":[3.0,2.0,1.0]", html);
        Assert.Contains("Loss curve", html);
        Assert.Contains("loss (nats)", html);
        Assert.DoesNotContain(OfflineHtml.BundleMarker, html);
        Assert.Contains(OfflineHtml.BundleMarker, OfflineHtml.ChartDiv(chart, includePlotlyJs: true));
    }

    [Fact]
    public void Scatter_writes_labels_next_to_points_only_when_asked()
    {
        var labels = new[] { "zero", "one" };
        var hover = OfflineHtml.ChartDiv(Plots.Scatter("t", "x (units)", "y (units)", new double[] { 0, 1 }, new double[] { 1, 0 }, labels));
        var shown = OfflineHtml.ChartDiv(Plots.Scatter("t", "x (units)", "y (units)", new double[] { 0, 1 }, new double[] { 1, 0 }, labels, showLabels: true));
        Assert.Contains("\"mode\":\"markers\"", hover);
        Assert.Contains("\"mode\":\"markers+text\"", shown);
        Assert.Contains("\"text\":[\"zero\",\"one\"]", shown);
    }

    [Fact]
    public void Heatmap_rejects_mismatched_labels()
    {
        var e = Assert.Throws<ArgumentException>(() => Plots.Heatmap("t", "x", "y", new double[2, 3], new[] { "a", "b" }));
        Assert.Contains("2×3", e.Message);
    }
}
