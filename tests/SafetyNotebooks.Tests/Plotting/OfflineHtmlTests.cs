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

public class StatisticsPlotsTests
{
    [Fact]
    public void An_interval_plot_draws_each_interval_from_its_bounds_with_the_estimate_between()
    {
        var intervals = new[] { SafetyNotebooks.Statistics.Rates.Wilson(8, 10), SafetyNotebooks.Statistics.Rates.Wilson(0, 20) };
        var json = OfflineHtml.FigureJson(StatisticsPlots.Intervals("Attack success", "rate", ["base64", "rot13"], intervals, reference: 0.5));
        Assert.Contains($"\"x\":[{intervals[0].Lower.ToString("R", System.Globalization.CultureInfo.InvariantCulture)},", json);
        Assert.Contains("\"y\":[\"base64\",\"base64\"]", json);
        Assert.Contains("\"x\":[0.8,0.0]", json);                                   // the two estimates
        Assert.Contains("\"x\":[0.5,0.5]", json);                                   // the reference line
        Assert.Contains("\"categoryarray\":[\"rot13\",\"base64\"]", json);           // first label on top
        Assert.Throws<ArgumentException>(() => StatisticsPlots.Intervals("t", "x", ["one"], intervals));
    }
}
