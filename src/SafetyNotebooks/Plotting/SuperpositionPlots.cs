using Plotly.NET;
using SafetyNotebooks.Sae;
using TorchSharp;
using static TorchSharp.torch;
using CSharpChart = Plotly.NET.CSharp.Chart;

namespace SafetyNotebooks.Plotting;

/// <summary>
/// Charts of toy models of superposition (<see cref="ToyModel"/>, Elhage et al. 2022; ARENA 1.3.1): WᵀW per instance,
/// feature norms against the superposition measure, the 2-D columns of W, and feature dimensionality against 1/density.
/// The <c>w</c> arguments are a model's <c>W</c>, <c>[instances, m, n]</c> (or <c>[m, n]</c> for one instance).
/// </summary>
public static class SuperpositionPlots
{
    static int Instances(Tensor w) => w.dim() == 3 ? (int)w.shape[0] : 1;

    static string[] Titles(int k, IReadOnlyList<string>? titles)
    {
        if (titles is null) return Enumerable.Range(0, k).Select(i => $"instance {i}").ToArray();
        if (titles.Count != k) throw new ArgumentException($"{titles.Count} instance titles for {k} instances; pass one title per instance (or none).");
        return titles.ToArray();
    }

    static int[] Pick(int k, IReadOnlyList<int>? instances)
    {
        var pick = instances?.ToArray() ?? Enumerable.Range(0, k).ToArray();
        foreach (var i in pick) if (i < 0 || i >= k) throw new ArgumentOutOfRangeException(nameof(instances), $"instance {i} is outside 0..{k - 1}.");
        return pick;
    }

    static GenericChart Grid(IReadOnlyList<GenericChart> charts, IReadOnlyList<string> titles, int maxColumns, string title)
    {
        int cols = Math.Min(maxColumns, charts.Count), rows = (charts.Count + cols - 1) / cols;
        var grid = CSharpChart.Grid(charts, rows, cols, SubPlotTitles: titles.ToArray(), Pattern: StyleParam.LayoutGridPattern.Independent);
        grid = Plotly.NET.Chart.withTitle(title, null).Invoke(grid);
        return Plotly.NET.Chart.withSize((double)Math.Max(450, 260 * cols), (double)Math.Max(350, 260 * rows)).Invoke(grid);
    }

    // Blue below 0, white at 0, red above, whatever the data's range (Plotly scales the colours to [min, max]).
    static StyleParam.Colorscale Diverging(double min, double max)
    {
        var blue = Color.fromString("#2166ac"); var white = Color.fromString("#f7f7f7"); var red = Color.fromString("#b2182b");
        if (min >= 0) return StyleParam.Colorscale.NewCustom(new[] { Tuple.Create(0.0, white), Tuple.Create(1.0, red) });
        if (max <= 0) return StyleParam.Colorscale.NewCustom(new[] { Tuple.Create(0.0, blue), Tuple.Create(1.0, white) });
        double zero = -min / (max - min);
        return StyleParam.Colorscale.NewCustom(new[] { Tuple.Create(0.0, blue), Tuple.Create(zero, white), Tuple.Create(1.0, red) });
    }

    /// <summary>WᵀW of each instance as a heatmap (row and column = feature; the diagonal is ‖W_i‖², off-diagonal entries
    /// are interference), in a grid. Dense instances show a few 1s on the diagonal; sparse ones show more features with
    /// negative (antipodal) or small interference terms.</summary>
    public static GenericChart GramHeatmaps(Tensor w, IReadOnlyList<string>? instanceTitles = null, IReadOnlyList<int>? instances = null, int maxColumns = 4)
    {
        using var gram = Superposition.Gram(w);
        int k = (int)gram.shape[0], n = (int)gram.shape[1];
        var pick = Pick(k, instances);
        var titles = Titles(k, instanceTitles);
        var g = gram.contiguous().data<double>().ToArray();
        var labels = Enumerable.Range(0, n).Select(i => $"f{i}").ToArray();
        var charts = pick.Select((inst, idx) =>
        {
            var z = Enumerable.Range(0, n).Select(r => Enumerable.Range(0, n).Select(c => g[(inst * n + r) * n + c]).ToArray()).ToArray();
            double min = z.Min(r => r.Min()), max = z.Max(r => r.Max());
            return CSharpChart.Heatmap<double, string, string, string>(zData: z, X: labels, Y: labels, ReverseYAxis: true,
                ColorScale: Diverging(min, max), ShowScale: idx == pick.Length - 1, Name: titles[inst]);
        }).ToArray();
        return Grid(charts, pick.Select(i => titles[i]).ToArray(), maxColumns, "WᵀW per instance (feature × feature; diagonal = ‖W_i‖², off-diagonal = interference)");
    }

    /// <summary>Per instance, grouped bars per feature: its norm ‖W_i‖ (≈ 1 represented, ≈ 0 ignored) next to its
    /// superposition measure Σ_{j≠i}(Ŵ_i·W_j)² (0 = a dimension of its own).</summary>
    public static GenericChart FeatureNormsAndSuperposition(Tensor w, IReadOnlyList<string>? instanceTitles = null, IReadOnlyList<int>? instances = null, int maxColumns = 4)
    {
        using var norms = Superposition.FeatureNorms(w);
        using var sup = Superposition.SuperpositionMeasure(w);
        int k = (int)norms.shape[0], n = (int)norms.shape[1];
        var pick = Pick(k, instances);
        var titles = Titles(k, instanceTitles);
        var nv = norms.contiguous().data<double>().ToArray();
        var sv = sup.contiguous().data<double>().ToArray();
        var labels = Enumerable.Range(0, n).Select(i => $"f{i}").ToArray();
        var charts = pick.Select((inst, idx) => CSharpChart.Combine(new[]
        {
            CSharpChart.Column<double, string, string>(values: nv.Skip(inst * n).Take(n).ToArray(), Keys: labels, Name: "‖W_i‖ (norm)",
                ShowLegend: idx == 0, MarkerColor: Color.fromString("#08519c")),
            CSharpChart.Column<double, string, string>(values: sv.Skip(inst * n).Take(n).ToArray(), Keys: labels, Name: "Σ_{j≠i} (Ŵ_i·W_j)² (superposition)",
                ShowLegend: idx == 0, MarkerColor: Color.fromString("#e6550d")),
        })).ToArray();
        return Grid(charts, pick.Select(i => titles[i]).ToArray(), maxColumns, "Feature norms vs superposition, per feature (unitless)");
    }

    /// <summary>The columns W_i of each instance with m = 2 as arrows from the origin in the hidden plane (labelled by
    /// feature). Five features in two dimensions at high sparsity form a pentagon.</summary>
    public static GenericChart Columns2D(Tensor w, IReadOnlyList<string>? instanceTitles = null, IReadOnlyList<int>? instances = null, int maxColumns = 4)
    {
        var x = w.dim() == 2 ? w.unsqueeze(0) : w;
        if (x.dim() != 3 || x.shape[1] != 2)
            throw new ArgumentException($"Columns2D needs W of shape [instances, 2, n] (m = 2 hidden dimensions); got [{string.Join(", ", w.shape)}].");
        int k = (int)x.shape[0], n = (int)x.shape[2];
        var pick = Pick(k, instances);
        var titles = Titles(k, instanceTitles);
        var v = x.detach().to_type(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
        double lim = Math.Max(1.2, v.Select(Math.Abs).DefaultIfEmpty(0).Max() * 1.15);
        var charts = pick.Select((inst, idx) =>
        {
            var traces = new List<GenericChart>();
            for (int f = 0; f < n; f++)
            {
                double fx = v[(inst * 2 + 0) * n + f], fy = v[(inst * 2 + 1) * n + f];
                traces.Add(CSharpChart.Line<double, double, string>(x: new[] { 0.0, fx }, y: new[] { 0.0, fy }, ShowMarkers: true,
                    Name: $"f{f}", ShowLegend: false, MultiText: new[] { "", $"f{f}" }, TextPosition: StyleParam.TextPosition.TopCenter));
            }
            // Invisible corners fix a square, equal range on both axes so angles read true.
            traces.Add(CSharpChart.Point<double, double, string>(x: new[] { -lim, lim }, y: new[] { -lim, lim }, ShowLegend: false, Opacity: 0.0));
            return CSharpChart.Combine(traces);
        }).ToArray();
        return Grid(charts, pick.Select(i => titles[i]).ToArray(), maxColumns, "Columns W_i of W in the 2-D hidden space (hidden dim 0 → x, hidden dim 1 → y)");
    }

    /// <summary>
    /// Feature dimensionality D_i (<see cref="Superposition.FeatureDimensionality"/>) of every feature of every instance
    /// against 1 / feature probability of its instance (log axis), with each instance's dimensions per feature m/‖W‖_F²
    /// as a line and dashed references at 1 (a dimension of its own) and 1/2 (an antipodal pair): the values where
    /// Elhage et al. found features "stick".
    /// </summary>
    /// <param name="w">W <c>[instances, m, n]</c>.</param>
    /// <param name="featureProbability">p per instance <c>[instances]</c> (or <see cref="ToyModel.FeatureProbability"/>
    /// <c>[instances, n]</c>, averaged over features).</param>
    public static GenericChart DimensionalityVsDensity(Tensor w, Tensor featureProbability)
    {
        using var dims = Superposition.FeatureDimensionality(w);
        using var dpf = Superposition.DimensionsPerFeature(w);
        int k = (int)dims.shape[0], n = (int)dims.shape[1];
        using var p = featureProbability.detach().to_type(ScalarType.Float64).cpu();
        using var pk = p.dim() == 2 ? p.mean(new long[] { 1 }) : p.reshape(-1);
        if (pk.shape[0] != k)
            throw new ArgumentException($"featureProbability has {pk.shape[0]} instances but W has {k}; pass one p per instance (e.g. model.FeatureProbability).");
        var inv = pk.data<double>().Select(q => 1 / q).ToArray();
        var d = dims.contiguous().data<double>().ToArray();
        var perInstance = dpf.data<double>().ToArray();
        var xs = Enumerable.Range(0, k * n).Select(i => inv[i / n]).ToArray();
        var labels = Enumerable.Range(0, k * n).Select(i => $"instance {i / n}, feature {i % n}").ToArray();
        var order = Enumerable.Range(0, k).OrderBy(i => inv[i]).ToArray();
        double lo = inv.Min(), hi = inv.Max();
        var chart = CSharpChart.Combine(new[]
        {
            CSharpChart.Point<double, double, string>(x: xs, y: d, Name: "D_i of each feature", MultiText: labels, Opacity: 0.5,
                MarkerColor: Color.fromString("#08519c")),
            CSharpChart.Line<double, double, string>(x: order.Select(i => inv[i]).ToArray(), y: order.Select(i => perInstance[i]).ToArray(),
                Name: "m / ‖W‖_F² (dimensions per feature)", ShowMarkers: true, LineColor: Color.fromString("#000000")),
            CSharpChart.Line<double, double, string>(x: new[] { lo, hi }, y: new[] { 1.0, 1.0 }, Name: "D = 1",
                LineDash: StyleParam.DrawingStyle.Dash, LineColor: Color.fromString("#888888")),
            CSharpChart.Line<double, double, string>(x: new[] { lo, hi }, y: new[] { 0.5, 0.5 }, Name: "D = 1/2 (antipodal pair)",
                LineDash: StyleParam.DrawingStyle.Dot, LineColor: Color.fromString("#888888")),
        });
        chart = Plots.Style(chart, "Feature dimensionality vs 1 / feature density", "1 / feature probability (log scale)", "dimensions per feature (D_i)");
        return Plotly.NET.CSharp.GenericChartExtensions.WithXAxisStyle<double, double, string>(chart, AxisType: StyleParam.AxisType.Log);
    }
}
