using Microsoft.Data.Analysis;
using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>
/// Control tasks for probes (Hewitt &amp; Liang 2019, <i>Designing and Interpreting Probes with Control Tasks</i>): every
/// word type gets a label drawn at random from the empirical distribution of the real labels, fixed once (seeded). A probe
/// can only solve the control task by memorizing types, so the gap <b>selectivity = task accuracy − control accuracy</b>
/// says how much of the task accuracy reflects the representation rather than the probe's own capacity.
/// </summary>
public static class ProbeControlTask
{
    /// <summary>
    /// Control labels <c>[batch, pos]</c> (int64): each distinct value of <paramref name="typeIds"/> gets one label, drawn
    /// with <c>new Random(seed)</c> from the empirical distribution of <paramref name="taskLabels"/> (over the positions
    /// <paramref name="mask"/> selects), type by type in ascending id order. Unselected positions get the label of their type too.
    /// </summary>
    /// <param name="typeIds">int64 <c>[batch, pos]</c>: the "word type" of each position, e.g. the token id (Hewitt &amp; Liang)
    /// or <see cref="TokenPositionTypes"/> when a vocabulary is too small for token identity alone to be a fair control.</param>
    /// <param name="taskLabels">int64 <c>[batch, pos]</c>: the real labels (only their distribution is used).</param>
    /// <param name="seed">Seed of the assignment.</param>
    /// <param name="mask">bool/0-1 <c>[batch, pos]</c>: positions whose labels form the distribution (null: all).</param>
    public static Tensor Labels(Tensor typeIds, Tensor taskLabels, int seed, Tensor? mask = null)
    {
        ArgumentNullException.ThrowIfNull(typeIds);
        ArgumentNullException.ThrowIfNull(taskLabels);
        TorchRuntime.EnsureLoaded();
        if (!typeIds.shape.SequenceEqual(taskLabels.shape))
            throw new ArgumentException($"typeIds are [{string.Join(", ", typeIds.shape)}] but the task labels are [{string.Join(", ", taskLabels.shape)}]; pass one type id per labelled token.", nameof(typeIds));
        if (typeIds.dtype != ScalarType.Int64 || taskLabels.dtype != ScalarType.Int64)
            throw new ArgumentException($"typeIds ({typeIds.dtype}) and task labels ({taskLabels.dtype}) must be int64; convert with .to_type(ScalarType.Int64).", nameof(typeIds));
        using var scope = torch.NewDisposeScope();
        var types = typeIds.cpu().reshape(-1).data<long>().ToArray();
        var labels = taskLabels.cpu().reshape(-1).data<long>().ToArray();
        var keep = mask is null ? null : mask.ne(0).cpu().reshape(-1).data<bool>().ToArray();
        if (keep is not null && keep.Length != labels.Length)
            throw new ArgumentException($"mask is [{string.Join(", ", mask!.shape)}] but the labels are [{string.Join(", ", taskLabels.shape)}]; pass one flag per token.", nameof(mask));
        var counts = new SortedDictionary<long, long>();
        for (int i = 0; i < labels.Length; i++)
            if (keep is null || keep[i]) counts[labels[i]] = counts.GetValueOrDefault(labels[i]) + 1;
        if (counts.Count == 0) throw new ArgumentException("The mask selects no label, so there is no label distribution to draw control labels from; select at least one position.", nameof(mask));
        var values = counts.Keys.ToArray();
        var cumulative = new double[values.Length];
        double total = counts.Values.Sum(), run = 0;
        for (int i = 0; i < values.Length; i++) { run += counts[values[i]]; cumulative[i] = run / total; }
        var rng = new Random(seed);
        var assignment = new Dictionary<long, long>();
        foreach (var t in types.Distinct().Order())
        {
            double u = rng.NextDouble();
            int k = Array.FindIndex(cumulative, c => u < c);
            assignment[t] = values[k < 0 ? values.Length - 1 : k];
        }
        var result = types.Select(t => assignment[t]).ToArray();
        return torch.tensor(result, taskLabels.shape, dtype: ScalarType.Int64, device: taskLabels.device).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Type ids for the surface form of each position (int64 <c>[batch, pos]</c>): the last <paramref name="context"/> tokens
    /// ending there, and the position itself. With <paramref name="context"/> = 1 this is <c>token + vocabSize · position</c>.
    /// With only a few token types (brackets), a control keyed on the token alone is trivially memorized; keyed on the local
    /// surface form, it asks how much arbitrary structure of the input a probe can read off, which is what selectivity needs.
    /// Columns before the start count as an extra symbol (<paramref name="vocabSize"/>).
    /// </summary>
    public static Tensor TokenPositionTypes(Tensor tokens, int vocabSize, int context = 1)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.dim() != 2) throw new ArgumentException($"tokens are [{string.Join(", ", tokens.shape)}]; pass [batch, pos].", nameof(tokens));
        if (vocabSize < 1) throw new ArgumentOutOfRangeException(nameof(vocabSize), $"vocabSize is {vocabSize}; pass the tokenizer's vocabulary size.");
        if (context < 1) throw new ArgumentOutOfRangeException(nameof(context), $"context is {context}; pass how many tokens ending at each position form its type (≥ 1).");
        using var scope = torch.NewDisposeScope();
        var t = tokens.to_type(ScalarType.Int64);
        if (context == 1)
        {
            var pos = torch.arange(tokens.shape[1], dtype: ScalarType.Int64, device: tokens.device).unsqueeze(0);
            return (t + pos * vocabSize).MoveToOuterDisposeScope();
        }
        long b = t.shape[0], n = t.shape[1], radix = vocabSize + 1;
        // Left-pad with the extra symbol, then read the window of `context` tokens ending at each column in base vocabSize + 1.
        var padded = torch.cat(new[] { torch.full(b, context - 1, vocabSize, dtype: ScalarType.Int64, device: t.device), t }, 1);
        var id = torch.zeros(b, n, dtype: ScalarType.Int64, device: t.device);
        for (int i = 0; i < context; i++) id = id * radix + padded.narrow(1, i, n);
        long span = 1;
        for (int i = 0; i < context; i++) span *= radix;
        var position = torch.arange(n, dtype: ScalarType.Int64, device: t.device).unsqueeze(0);
        return (id + position * span).MoveToOuterDisposeScope();
    }

    /// <summary>Hewitt &amp; Liang's selectivity: task accuracy − control accuracy (both on held-out data).</summary>
    public static double Selectivity(double taskAccuracy, double controlAccuracy) => taskAccuracy - controlAccuracy;

    /// <summary>
    /// Joins a task sweep and a control sweep (<see cref="ProbeSweep"/>, same options and split) row by row on (hook, position):
    /// <c>hook</c>, <c>layer</c>, <c>position</c>, <c>task_accuracy</c>, <c>control_accuracy</c>, <c>selectivity</c> (held-out accuracies).
    /// </summary>
    public static DataFrame Selectivity(DataFrame task, DataFrame control)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(control);
        foreach (var (df, which) in new[] { (task, "task"), (control, "control") })
            if (!df.Columns.Any(c => c.Name == "test_accuracy"))
                throw new ArgumentException($"The {which} sweep has no test_accuracy column; pass two logistic ProbeSweep results (Kind = ProbeKind.Logistic).", which);
        var controlByKey = new Dictionary<(string, int), double>();
        for (long i = 0; i < control.Rows.Count; i++)
            controlByKey[((string)control["hook"][i], (int)control["position"][i]!)] = (double)control["test_accuracy"][i]!;
        var hooks = new List<string>(); var layers = new List<int>(); var positions = new List<int>();
        var t = new List<double>(); var c = new List<double>(); var s = new List<double>();
        for (long i = 0; i < task.Rows.Count; i++)
        {
            var key = ((string)task["hook"][i], (int)task["position"][i]!);
            if (!controlByKey.TryGetValue(key, out var ctl))
                throw new ArgumentException($"The control sweep has no row for hook '{key.Item1}', position {key.Item2}; run both sweeps with the same ProbeSweepOptions and label mask.", nameof(control));
            double acc = (double)task["test_accuracy"][i]!;
            hooks.Add(key.Item1); layers.Add((int)task["layer"][i]!); positions.Add(key.Item2);
            t.Add(acc); c.Add(ctl); s.Add(Selectivity(acc, ctl));
        }
        return new DataFrame(new StringDataFrameColumn("hook", hooks), new Int32DataFrameColumn("layer", layers), new Int32DataFrameColumn("position", positions),
            new DoubleDataFrameColumn("task_accuracy", t), new DoubleDataFrameColumn("control_accuracy", c), new DoubleDataFrameColumn("selectivity", s));
    }
}
