using Microsoft.Data.Analysis;
using Plotly.NET;
using SafetyNotebooks.Interpretability;

namespace SafetyNotebooks.Plotting;

/// <summary>Charts for probe sweeps (<see cref="ProbeSweep"/>) and steering sweeps (<see cref="SteeringSweep"/>).</summary>
public static class ProbePlots
{
    /// <summary>
    /// Layer × position grid of a sweep column (per-position rows only; pooled rows are skipped): <c>z[layer, position]</c>,
    /// NaN where no probe was trained, with row labels from the hook names and column labels the positions.
    /// </summary>
    public static (double[,] Z, string[] RowLabels, string[] ColumnLabels) Grid(DataFrame sweep, string column = "test_accuracy")
    {
        ArgumentNullException.ThrowIfNull(sweep);
        Require(sweep, column);
        var rows = Enumerable.Range(0, (int)sweep.Rows.Count)
            .Select(i => (Layer: (int)sweep["layer"][i]!, Pos: (int)sweep["position"][i]!, Hook: (string)sweep["hook"][i], Value: Convert.ToDouble(sweep[column][i])))
            .Where(r => r.Pos != ProbeSweep.AllPositions).ToArray();
        if (rows.Length == 0) throw new ArgumentException("The sweep has no per-position rows; run it with ProbeSweepOptions.PerPosition = true.", nameof(sweep));
        int layers = rows.Max(r => r.Layer) + 1, positions = rows.Max(r => r.Pos) + 1;
        var z = new double[layers, positions];
        for (int l = 0; l < layers; l++) for (int p = 0; p < positions; p++) z[l, p] = double.NaN;
        var labels = Enumerable.Range(0, layers).Select(l => $"layer {l}").ToArray();
        foreach (var r in rows) { z[r.Layer, r.Pos] = r.Value; labels[r.Layer] = $"{r.Layer}: {ShortHook(r.Hook)}"; }
        return (z, labels, Enumerable.Range(0, positions).Select(p => p.ToString()).ToArray());
    }

    /// <summary>Heatmap of a sweep column (default held-out accuracy) over layer (rows) and position (columns).</summary>
    public static GenericChart Heatmap(DataFrame sweep, string column = "test_accuracy", string title = "Probe accuracy (held out) per layer and position")
    {
        var (z, rows, cols) = Grid(sweep, column);
        return Plots.Heatmap(title, "position", "residual stream (layer: hook)", z, cols, rows, colorScale: "Blues");
    }

    /// <summary>
    /// Held-out (and training) score of the pooled probes per layer, with the control task's held-out score when
    /// <paramref name="control"/> is given (a <see cref="ProbeControlTask"/> sweep with the same options).
    /// </summary>
    public static GenericChart ByLayer(DataFrame sweep, DataFrame? control = null, string title = "Probe accuracy per layer (all positions pooled)")
    {
        ArgumentNullException.ThrowIfNull(sweep);
        string metric = sweep.Columns.Any(c => c.Name == "test_accuracy") ? "accuracy" : "r2";
        var series = new List<(string, IEnumerable<double>, IEnumerable<double>)>
        {
            ("task, train", Pooled(sweep, "layer"), Pooled(sweep, "train_" + metric)),
            ("task, held out", Pooled(sweep, "layer"), Pooled(sweep, "test_" + metric)),
        };
        if (control is not null) series.Add(("control task, held out", Pooled(control, "layer"), Pooled(control, "test_" + metric)));
        return Plots.Line(title, "layer (residual stream before block; last = after the final block)", metric == "r2" ? "R²" : "accuracy (fraction correct)", series.ToArray());
    }

    /// <summary>A steering sweep's metric against the coefficient (a table from <see cref="SteeringSweep"/>).</summary>
    public static GenericChart Steering(DataFrame table, string metricName, string title = "Steering: behaviour vs coefficient", string? yTitle = null)
    {
        ArgumentNullException.ThrowIfNull(table);
        Require(table, metricName);
        var x = Enumerable.Range(0, (int)table.Rows.Count).Select(i => (double)table["coefficient"][i]!).ToArray();
        var y = Enumerable.Range(0, (int)table.Rows.Count).Select(i => (double)table[metricName][i]!).ToArray();
        return Plots.Line(title, "steering coefficient", yTitle ?? metricName, (metricName, x, y));
    }

    static double[] Pooled(DataFrame df, string column)
    {
        Require(df, column);
        var values = Enumerable.Range(0, (int)df.Rows.Count).Where(i => (int)df["position"][i]! == ProbeSweep.AllPositions)
            .Select(i => Convert.ToDouble(df[column][i])).ToArray();
        if (values.Length == 0) throw new ArgumentException("The sweep has no pooled rows; run it with ProbeSweepOptions.Pooled = true.", nameof(df));
        return values;
    }

    static void Require(DataFrame df, string column)
    {
        if (!df.Columns.Any(c => c.Name == column))
            throw new ArgumentException($"The table has no column '{column}'; its columns are {string.Join(", ", df.Columns.Select(c => c.Name))}.", nameof(column));
    }

    static string ShortHook(string hook) => hook.StartsWith("blocks.", StringComparison.Ordinal) ? hook["blocks.".Length..].Replace(".hook_", " ") : hook;
}
