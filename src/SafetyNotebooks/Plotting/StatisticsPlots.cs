using Plotly.NET;
using SafetyNotebooks.Statistics;
using CSharpChart = Plotly.NET.CSharp.Chart;

namespace SafetyNotebooks.Plotting;

/// <summary>Charts for evaluation statistics: estimates with their confidence intervals (a forest plot).</summary>
public static class StatisticsPlots
{
    /// <summary>
    /// One row per label: the estimate as a dot and the interval as a horizontal bar, with an optional vertical reference
    /// line (e.g. the baseline rate, or 0 for differences). Rows read top to bottom in the order given.
    /// </summary>
    public static GenericChart Intervals(string title, string xTitle, IReadOnlyList<string> labels, IReadOnlyList<Interval> intervals, double? reference = null)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(intervals);
        if (labels.Count != intervals.Count || labels.Count == 0)
            throw new ArgumentException($"{labels.Count} labels for {intervals.Count} intervals: give one label per interval (at least one).");
        var charts = new List<GenericChart>();
        for (int i = 0; i < labels.Count; i++)
            charts.Add(CSharpChart.Line<double, string, string>(x: new[] { intervals[i].Lower, intervals[i].Upper }, y: new[] { labels[i], labels[i] },
                ShowLegend: false, LineColor: Color.fromString("#4c78a8"), LineWidth: 3));
        charts.Add(CSharpChart.Point<double, string, string>(x: intervals.Select(v => v.Estimate).ToArray(), y: labels.ToArray(), Name: "estimate",
            ShowLegend: false, MultiText: intervals.Select(v => v.ToString()).ToArray(), MarkerColor: Color.fromString("#1f1f1f")));
        if (reference is { } r)
            charts.Add(CSharpChart.Line<double, string, string>(x: new[] { r, r }, y: new[] { labels[0], labels[^1] }, ShowLegend: false,
                LineColor: Color.fromString("#b2182b"), LineDash: StyleParam.DrawingStyle.Dash));
        var chart = Plots.Style(CSharpChart.Combine(charts), title, xTitle, "");
        return Plotly.NET.CSharp.GenericChartExtensions.WithYAxisStyle<double, double, string>(chart, CategoryOrder: StyleParam.CategoryOrder.Array,
            CategoryArray: labels.Reverse().ToArray());
    }
}
