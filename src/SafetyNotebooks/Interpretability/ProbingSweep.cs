using Microsoft.Data.Analysis;
using SafetyNotebooks.Models;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>Settings of <see cref="ProbeSweep"/>.</summary>
public sealed record ProbeSweepOptions
{
    /// <summary>Logistic (default; labels are int64 class ids) or linear regression (float targets).</summary>
    public ProbeKind Kind { get; init; } = ProbeKind.Logistic;
    /// <summary>Classes of a logistic probe. Null: one more than the largest label selected by the mask.</summary>
    public int? NumClasses { get; init; }
    /// <summary>Hook points to probe, in order (full names or shorthand such as <c>resid_pre1</c>). Null: the residual stream,
    /// <see cref="ProbeSweep.ResidualHookNames"/>.</summary>
    public IReadOnlyList<string>? HookNames { get; init; }
    /// <summary>Train one probe per position (default true).</summary>
    public bool PerPosition { get; init; } = true;
    /// <summary>Positions that get their own probe when <see cref="PerPosition"/> is on (null: every position). Fewer positions, faster sweep.</summary>
    public IReadOnlyList<int>? Positions { get; init; }
    /// <summary>Train one probe on all selected positions together (default true); its rows have position <see cref="ProbeSweep.AllPositions"/>.</summary>
    public bool Pooled { get; init; } = true;
    /// <summary>Fraction of sequences held out (the split is by sequence, so no test sequence leaks into training through another position). Default 0.25.</summary>
    public double TestFraction { get; init; } = 0.25;
    /// <summary>Seed of the train/test split (<see cref="Probing.TrainTestSplit"/>). Default 0.</summary>
    public int SplitSeed { get; init; }
    /// <summary>Trainer settings for every probe. Null: <see cref="Probing.DefaultTrainerConfig"/>.</summary>
    public TrainerConfig? Trainer { get; init; }
}

/// <summary>
/// Probes every hook point and position of a model for a label: which layer makes a variable linearly readable, and where.
/// Returns a DataFrame with one row per (hook, position): <c>hook</c>, <c>layer</c> (index of the hook in the list; with the
/// default hooks, the residual stream before block <c>layer</c>, and <c>n_layers</c> = after the last block), <c>position</c>
/// (<see cref="AllPositions"/> for the pooled probe), <c>train_accuracy</c>/<c>test_accuracy</c> (or <c>train_r2</c>/<c>test_r2</c>),
/// <c>n_train</c>, <c>n_test</c>.
/// <code>
/// var (_, cache) = model.RunWithCache(tokens, ProbeSweep.ResidualHookFilter(model));
/// var task = ProbeSweep.Run(cache, depth, new ProbeSweepOptions(), labelMask);
/// var control = ProbeSweep.Run(cache, ProbeControlTask.Labels(types, depth, seed: 1, labelMask), new ProbeSweepOptions(), labelMask);
/// ProbeControlTask.Selectivity(task, control)
/// </code>
/// </summary>
public static class ProbeSweep
{
    /// <summary>The <c>position</c> of a probe trained on all positions together.</summary>
    public const int AllPositions = -1;

    /// <summary>The residual stream at every depth: <c>blocks.{l}.hook_resid_pre</c> for each layer, then the last block's <c>hook_resid_post</c>.</summary>
    public static IReadOnlyList<string> ResidualHookNames(HookedTransformer model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var names = Enumerable.Range(0, model.Cfg.NLayers).Select(l => Utils.GetActName("resid_pre", l)).ToList();
        names.Add(Utils.GetActName("resid_post", model.Cfg.NLayers - 1));
        return names;
    }

    /// <summary>A <c>RunWithCache</c> filter keeping exactly <see cref="ResidualHookNames"/>.</summary>
    public static Func<string, bool> ResidualHookFilter(HookedTransformer model)
    {
        var set = new HashSet<string>(ResidualHookNames(model), StringComparer.Ordinal);
        return set.Contains;
    }

    /// <summary>
    /// Runs <paramref name="model"/> once (no gradient) on <paramref name="tokens"/>, caching the hooks of
    /// <paramref name="options"/>, and probes them (see <see cref="Run(ActivationCache, Tensor, ProbeSweepOptions?, Tensor?)"/>).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="tokens">int64 <c>[batch, pos]</c>.</param>
    /// <param name="labels"><c>[batch, pos]</c> (int64 classes, or float targets; <c>[batch, pos, k]</c> for several regression targets).</param>
    /// <param name="options">Settings (default: logistic, residual stream, per position and pooled).</param>
    /// <param name="labelMask">bool/0-1 <c>[batch, pos]</c>: which positions are examples (null: all real tokens).</param>
    /// <param name="attentionMask">1/0 <c>[batch, pos]</c> for padded batches; padding is never an example.</param>
    public static DataFrame Run(HookedTransformer model, Tensor tokens, Tensor labels, ProbeSweepOptions? options = null, Tensor? labelMask = null, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokens);
        var o = options ?? new ProbeSweepOptions();
        var names = (o.HookNames ?? ResidualHookNames(model)).Select(n => model.GetHookPoint(n).Name).ToList();
        var set = new HashSet<string>(names, StringComparer.Ordinal);
        Tensor logits;
        ActivationCache cache;
        using (torch.no_grad()) (logits, cache) = model.RunWithCache(tokens, set.Contains, attentionMask: attentionMask);
        logits.Dispose();
        using (cache)
        {
            Tensor? mask = labelMask;
            if (attentionMask is not null)
            {
                using var real = attentionMask.ne(0);
                mask = labelMask is null ? real.clone() : labelMask.ne(0).logical_and(real);
            }
            try { return Run(cache, labels, o with { HookNames = names }, mask); }
            finally { if (!ReferenceEquals(mask, labelMask)) mask?.Dispose(); }
        }
    }

    /// <summary>
    /// Probes cached activations: for each hook of <paramref name="options"/> (default: <see cref="ResidualHookNames"/>) trains a
    /// probe per position and/or one pooled over positions, on a seeded split of the sequences, through <see cref="Trainer{TBatch}"/>.
    /// The same split serves every hook and position, so a control sweep with the same options is comparable row by row.
    /// </summary>
    /// <param name="cache">Activations <c>[batch, pos, ...]</c> (trailing dims are flattened into the probe input).</param>
    /// <param name="labels"><c>[batch, pos]</c> (int64 classes for a logistic probe, floats for regression; <c>[batch, pos, k]</c> for k targets).</param>
    /// <param name="options">Settings.</param>
    /// <param name="labelMask">bool/0-1 <c>[batch, pos]</c>: which positions are examples (null: all).</param>
    public static DataFrame Run(ActivationCache cache, Tensor labels, ProbeSweepOptions? options = null, Tensor? labelMask = null)
    {
        ArgumentNullException.ThrowIfNull(cache);
        var o = options ?? new ProbeSweepOptions();
        var names = o.HookNames ?? ResidualHookNames(cache.Model);
        var acts = names.Select(n =>
        {
            if (!cache.Contains(n))
                throw new ArgumentException($"The cache holds no activation '{n}'; cache it (RunWithCache with a filter that keeps it, e.g. ProbeSweep.ResidualHookFilter(model)) or drop it from ProbeSweepOptions.HookNames.", nameof(cache));
            return (Name: n, Acts: cache[n]);
        }).ToList();
        return Run(acts, labels, o, labelMask);
    }

    /// <summary>
    /// Probes activations given as (name, <c>[batch, pos, ...]</c>) pairs, e.g. from a hand-written hook. See
    /// <see cref="Run(ActivationCache, Tensor, ProbeSweepOptions?, Tensor?)"/>.
    /// </summary>
    public static DataFrame Run(IReadOnlyList<(string Name, Tensor Activations)> activations, Tensor labels, ProbeSweepOptions? options = null, Tensor? labelMask = null)
    {
        ArgumentNullException.ThrowIfNull(activations);
        ArgumentNullException.ThrowIfNull(labels);
        var o = options ?? new ProbeSweepOptions();
        if (activations.Count == 0) throw new ArgumentException("No activations to probe; pass at least one (name, [batch, pos, d]) pair.", nameof(activations));
        if (!o.PerPosition && !o.Pooled) throw new ArgumentException("ProbeSweepOptions has PerPosition and Pooled both false: nothing to train. Turn one on.", nameof(options));
        long batch = labels.shape[0], pos = labels.dim() >= 2 ? labels.shape[1] : 0;
        if (labels.dim() < 2) throw new ArgumentException($"labels are [{string.Join(", ", labels.shape)}]; pass one label per token, [batch, pos] (or [batch, pos, k] for k regression targets).", nameof(labels));
        bool logistic = o.Kind == ProbeKind.Logistic;
        if (logistic && (labels.dtype != ScalarType.Int64 || labels.dim() != 2))
            throw new ArgumentException($"A logistic sweep needs int64 class labels [batch, pos], got {labels.dtype} [{string.Join(", ", labels.shape)}]; convert with labels.to_type(ScalarType.Int64), or set Kind = ProbeKind.LinearRegression.", nameof(labels));
        foreach (var (name, a) in activations)
            if (a.dim() < 3 || a.shape[0] != batch || a.shape[1] != pos)
                throw new ArgumentException($"Activation '{name}' is [{string.Join(", ", a.shape)}] but the labels are [{batch}, {pos}]; probe activations of the same tokens, [batch, pos, ...].", nameof(activations));
        using var scope = torch.NewDisposeScope();
        var device = activations[0].Activations.device;
        var mask = (labelMask is null ? torch.ones(batch, pos, dtype: ScalarType.Bool) : labelMask.ne(0)).to(device);
        if (!mask.shape.SequenceEqual(new[] { batch, pos }))
            throw new ArgumentException($"labelMask is [{string.Join(", ", mask.shape)}] but the labels are [{batch}, {pos}]; pass one flag per token.", nameof(labelMask));
        var y = labels.to(device);
        int numClasses = 0;
        if (logistic)
        {
            var selected = y.masked_select(mask);
            if (selected.numel() == 0) throw new ArgumentException("labelMask selects no token; select at least one position.", nameof(labelMask));
            if (selected.min().item<long>() < 0)
                throw new ArgumentException("Some selected labels are negative; class ids must be ≥ 0 (mask out positions without a label with labelMask).", nameof(labels));
            numClasses = o.NumClasses ?? (int)selected.max().item<long>() + 1;
            numClasses = Math.Max(numClasses, 2);
        }
        if (o.Positions is { } wanted && wanted.Any(p => p < 0 || p >= pos))
            throw new ArgumentException($"ProbeSweepOptions.Positions holds {string.Join(", ", o.Positions!.Where(p => p < 0 || p >= pos))}, outside the {pos} positions of the labels; use 0…{pos - 1}.", nameof(options));
        var (trainRows, testRows) = Probing.TrainTestSplit((int)batch, o.TestFraction, o.SplitSeed);
        var trainIdx = torch.tensor(trainRows.Select(i => (long)i).ToArray(), device: device);
        var testIdx = torch.tensor(testRows.Select(i => (long)i).ToArray(), device: device);
        var cfg = o.Trainer ?? Probing.DefaultTrainerConfig;
        string metric = logistic ? "accuracy" : "r2";

        var hooks = new List<string>(); var layers = new List<int>(); var positions = new List<int>();
        var trainScores = new List<double>(); var testScores = new List<double>(); var nTrain = new List<long>(); var nTest = new List<long>();
        for (int h = 0; h < activations.Count; h++)
        {
            var (name, raw) = activations[h];
            var a = raw.detach().reshape(batch, pos, -1).to_type(ScalarType.Float32);
            var slots = new List<int>();
            if (o.Pooled) slots.Add(AllPositions);
            if (o.PerPosition) slots.AddRange(o.Positions ?? Enumerable.Range(0, (int)pos).ToArray());
            foreach (var p in slots)
            {
                using var inner = torch.NewDisposeScope();
                var train = Select(a, y, mask, trainIdx, p);
                var test = Select(a, y, mask, testIdx, p);
                if (train.Count == 0) continue;                                    // no example at this position
                var result = logistic
                    ? Probing.TrainLogistic(train, test.Count > 0 ? test : null, numClasses, cfg)
                    : Probing.TrainLinearRegression(train, test.Count > 0 ? test : null, cfg);
                result.Probe.Dispose();
                hooks.Add(name); layers.Add(h); positions.Add(p);
                trainScores.Add(result.TrainMetric); testScores.Add(result.TestMetric);
                nTrain.Add(train.Count); nTest.Add(test.Count);
            }
        }
        return new DataFrame(
            new StringDataFrameColumn("hook", hooks), new Int32DataFrameColumn("layer", layers), new Int32DataFrameColumn("position", positions),
            new DoubleDataFrameColumn("train_" + metric, trainScores), new DoubleDataFrameColumn("test_" + metric, testScores),
            new Int64DataFrameColumn("n_train", nTrain), new Int64DataFrameColumn("n_test", nTest));
    }

    /// <summary>Examples of rows <paramref name="rows"/> at position <paramref name="p"/> (or all positions) where the mask is set.</summary>
    static ProbeBatch Select(Tensor acts, Tensor labels, Tensor mask, Tensor rows, int p)
    {
        var a = acts.index_select(0, rows);                                        // [r, pos, d]
        var y = labels.index_select(0, rows);                                      // [r, pos(, k)]
        var m = mask.index_select(0, rows);                                        // [r, pos]
        if (p != AllPositions) { a = a.narrow(1, p, 1); y = y.narrow(1, p, 1); m = m.narrow(1, p, 1); }
        var keep = m.reshape(-1).nonzero().squeeze(1);
        var x = a.reshape(-1, a.shape[2]).index_select(0, keep);
        var t = y.dim() == 3 ? y.reshape(-1, y.shape[2]).index_select(0, keep) : y.reshape(-1).index_select(0, keep);
        return new ProbeBatch(x, t);
    }

    /// <summary>The rows of a sweep for one position (<see cref="AllPositions"/> for the pooled probes), in layer order.</summary>
    public static DataFrame AtPosition(DataFrame sweep, int position)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        var col = (Int32DataFrameColumn)sweep["position"];
        var keep = new PrimitiveDataFrameColumn<bool>("keep", Enumerable.Range(0, (int)sweep.Rows.Count).Select(i => col[i] == position));
        return sweep.Filter(keep);
    }
}
