using System.Globalization;
using Microsoft.Data.Analysis;
using SafetyNotebooks.Statistics;

namespace SafetyNotebooks.Evaluation.Harness;

/// <summary>
/// A count of passes out of items for one model, task and dimension — the unit the per-dimension tables pool. A multiple-choice
/// task contributes its correct answers (<c>acc</c>), a generation task its passes under the item's rule, a BBQ task its accuracy.
/// </summary>
public sealed record DimensionCount(string Model, string Task, string Dimension, int Passes, int N);

/// <summary>
/// Results per TrustLLM dimension (truthfulness, safety, fairness, robustness, privacy, machine ethics): items pooled across the
/// tasks of a dimension, with Wilson intervals, as a long DataFrame and as a HELM-style wide table (one row per model, one column
/// per dimension, each cell "value [lower, upper]"). Pooling weights tasks by their size; HELM instead averages per-scenario
/// scores and ranks models by mean win rate — with a handful of tasks per dimension the pooled rate and its interval say more.
/// </summary>
public static class Dimensions
{
    /// <summary>Dimensions in TrustLLM's order, then any others alphabetically.</summary>
    public static IEnumerable<string> Ordered(IEnumerable<string> dimensions)
    {
        var set = dimensions.Distinct(StringComparer.Ordinal).ToList();
        return TrustDimensions.All.Where(set.Contains).Concat(set.Except(TrustDimensions.All).Order(StringComparer.Ordinal));
    }

    /// <summary>One row per model and dimension: <c>model</c>, <c>dimension</c>, <c>tasks</c>, <c>passes</c>, <c>n</c>, <c>value</c>, <c>lower</c>, <c>upper</c>.</summary>
    public static DataFrame Table(IEnumerable<DimensionCount> counts, double level = 0.95)
    {
        var list = counts.Where(c => c.N > 0).ToList();
        var rows = new List<(string Model, string Dim, string Tasks, int Passes, int N, Interval I)>();
        foreach (var model in list.Select(c => c.Model).Distinct(StringComparer.Ordinal))
            foreach (var dim in Ordered(list.Where(c => c.Model == model).Select(c => c.Dimension)))
            {
                var g = list.Where(c => c.Model == model && c.Dimension == dim).ToList();
                int passes = g.Sum(c => c.Passes), n = g.Sum(c => c.N);
                rows.Add((model, dim, string.Join(", ", g.Select(c => c.Task).Distinct(StringComparer.Ordinal)), passes, n, Rates.Wilson(passes, n, level)));
            }
        return new DataFrame(new StringDataFrameColumn("model", rows.Select(r => r.Model)), new StringDataFrameColumn("dimension", rows.Select(r => r.Dim)),
            new StringDataFrameColumn("tasks", rows.Select(r => r.Tasks)), new Int32DataFrameColumn("passes", rows.Select(r => r.Passes)),
            new Int32DataFrameColumn("n", rows.Select(r => r.N)), new DoubleDataFrameColumn("value", rows.Select(r => r.I.Estimate)),
            new DoubleDataFrameColumn("lower", rows.Select(r => r.I.Lower)), new DoubleDataFrameColumn("upper", rows.Select(r => r.I.Upper)));
    }

    /// <summary>HELM-style: one row per model, one string column per dimension with "value [lower, upper]" (n in the header row of <see cref="Table"/>).</summary>
    public static DataFrame Helm(IEnumerable<DimensionCount> counts, double level = 0.95)
    {
        var t = Table(counts, level);
        var models = Enumerable.Range(0, (int)t.Rows.Count).Select(i => (string)t["model"][i]).Distinct(StringComparer.Ordinal).ToList();
        var dims = Ordered(Enumerable.Range(0, (int)t.Rows.Count).Select(i => (string)t["dimension"][i])).ToList();
        var columns = new List<DataFrameColumn> { new StringDataFrameColumn("model", models) };
        foreach (var d in dims)
            columns.Add(new StringDataFrameColumn(d, models.Select(m =>
            {
                for (int i = 0; i < t.Rows.Count; i++)
                    if ((string)t["model"][i] == m && (string)t["dimension"][i] == d)
                        return string.Format(CultureInfo.InvariantCulture, "{0:0.00} [{1:0.00}, {2:0.00}]", (double)t["value"][i], (double)t["lower"][i], (double)t["upper"][i]);
                return "–";
            })));
        return new DataFrame(columns);
    }
}
