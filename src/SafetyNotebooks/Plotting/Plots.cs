using Plotly.NET;
using CSharpChart = Plotly.NET.CSharp.Chart;

namespace SafetyNotebooks.Plotting;

/// <summary>
/// Chart helpers for lessons: every chart gets a title and labelled axes (with units), so a plot
/// explains itself. They return Plotly.NET <see cref="GenericChart"/>s, which notebooks display
/// offline once the setup cell ran, and <see cref="OfflineHtml"/> saves as pages.
/// </summary>
public static class Plots
{
    /// <summary>A line chart of one or more named series sharing an x axis.</summary>
    public static GenericChart Line(string title, string xTitle, string yTitle, params (string Name, IEnumerable<double> X, IEnumerable<double> Y)[] series)
    {
        if (series.Length == 0) throw new ArgumentException("Plots.Line needs at least one series.", nameof(series));
        var charts = series.Select(s => CSharpChart.Line<double, double, string>(x: s.X.ToArray(), y: s.Y.ToArray(), Name: s.Name, ShowLegend: series.Length > 1));
        return Style(CSharpChart.Combine(charts), title, xTitle, yTitle);
    }

    /// <summary>A line chart of y against its index (e.g. a loss curve against the step).</summary>
    public static GenericChart Line(string title, string xTitle, string yTitle, IEnumerable<double> y, string name = "")
    {
        var ys = y.ToArray();
        return Line(title, xTitle, yTitle, (name, Enumerable.Range(0, ys.Length).Select(i => (double)i), ys));
    }

    /// <summary>
    /// A scatter plot of points, optionally with labels: shown on hover, or also written next to each point when
    /// <paramref name="showLabels"/> is true (useful for a few dozen labelled points, e.g. embeddings of a small vocabulary).
    /// </summary>
    public static GenericChart Scatter(string title, string xTitle, string yTitle, IEnumerable<double> x, IEnumerable<double> y, IEnumerable<string>? labels = null, string name = "", bool showLabels = false)
    {
        var chart = showLabels && labels is not null
            ? CSharpChart.Point<double, double, string>(x: x.ToArray(), y: y.ToArray(), Name: name,
                MultiText: labels.ToArray(), TextPosition: StyleParam.TextPosition.TopCenter)
            : CSharpChart.Point<double, double, string>(x: x.ToArray(), y: y.ToArray(), Name: name,
                MultiText: labels?.ToArray());
        return Style(chart, title, xTitle, yTitle);
    }

    /// <summary>A bar chart with one bar per label.</summary>
    public static GenericChart Bar(string title, string xTitle, string yTitle, IEnumerable<string> labels, IEnumerable<double> values)
    {
        var chart = CSharpChart.Column<double, string, string>(values: values.ToArray(), Keys: labels.ToArray());
        return Style(chart, title, xTitle, yTitle);
    }

    /// <summary>
    /// A heatmap of <paramref name="z"/> (rows × columns), row 0 at the top, e.g. an attention pattern
    /// with query positions as rows and key positions as columns.
    /// </summary>
    public static GenericChart Heatmap(string title, string xTitle, string yTitle, double[,] z, IEnumerable<string>? columnLabels = null, IEnumerable<string>? rowLabels = null, string colorScale = "RdBu")
    {
        int rows = z.GetLength(0), cols = z.GetLength(1);
        var zz = Enumerable.Range(0, rows).Select(r => Enumerable.Range(0, cols).Select(c => z[r, c]).ToArray()).ToArray();
        var xs = (columnLabels ?? Enumerable.Range(0, cols).Select(i => i.ToString())).ToArray();
        var ys = (rowLabels ?? Enumerable.Range(0, rows).Select(i => i.ToString())).ToArray();
        if (xs.Length != cols || ys.Length != rows)
            throw new ArgumentException($"Heatmap has {rows}×{cols} values but {ys.Length} row labels and {xs.Length} column labels; pass one label per row and per column.");
        var chart = CSharpChart.Heatmap<double, string, string, string>(
            zData: zz, X: xs, Y: ys, ReverseYAxis: true,
            ColorScale: StyleParam.Colorscale.NewCustom(colorScale == "RdBu"
                ? new[] { Tuple.Create(0.0, Color.fromString("#2166ac")), Tuple.Create(0.5, Color.fromString("#f7f7f7")), Tuple.Create(1.0, Color.fromString("#b2182b")) }
                : new[] { Tuple.Create(0.0, Color.fromString("#f7fbff")), Tuple.Create(1.0, Color.fromString("#08306b")) }));
        return Style(chart, title, xTitle, yTitle);
    }

    /// <summary>Applies a title and axis titles (optionally a log-scale y axis).</summary>
    public static GenericChart Style(GenericChart chart, string title, string xTitle, string yTitle, bool logY = false)
    {
        chart = Plotly.NET.Chart.withTitle(title, null).Invoke(chart);
        chart = Plotly.NET.CSharp.GenericChartExtensions.WithXAxisStyle<double, double, string>(chart, TitleText: xTitle);
        chart = logY
            ? Plotly.NET.CSharp.GenericChartExtensions.WithYAxisStyle<double, double, string>(chart, TitleText: yTitle, AxisType: StyleParam.AxisType.Log)
            : Plotly.NET.CSharp.GenericChartExtensions.WithYAxisStyle<double, double, string>(chart, TitleText: yTitle);
        return chart;
    }

    /// <summary>Switches a chart's y axis to a log scale (e.g. for loss curves).</summary>
    public static GenericChart LogY(GenericChart chart) =>
        Plotly.NET.CSharp.GenericChartExtensions.WithYAxisStyle<double, double, string>(chart, AxisType: StyleParam.AxisType.Log);
}
