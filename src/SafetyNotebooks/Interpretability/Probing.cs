using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>One batch for a probe: activations <c>[n, d]</c> and their targets.</summary>
/// <param name="Activations">float <c>[n, d]</c>: one activation vector per example (e.g. the residual stream at one position).</param>
/// <param name="Targets">int64 class ids <c>[n]</c> for a <see cref="LogisticProbeObjective"/>; float <c>[n]</c> or <c>[n, k]</c>
/// for a <see cref="LinearRegressionProbeObjective"/>.</param>
public sealed record ProbeBatch(Tensor Activations, Tensor Targets) : IDisposable
{
    /// <summary>Number of examples.</summary>
    public long Count => Activations.shape[0];

    /// <summary>Disposes both tensors.</summary>
    public void Dispose() { Activations.Dispose(); Targets.Dispose(); }
}

/// <summary>Which probe to train.</summary>
public enum ProbeKind
{
    /// <summary>Multinomial logistic regression (a linear map to class logits, cross-entropy loss); metric <c>accuracy</c>.</summary>
    Logistic,
    /// <summary>Linear regression (mean squared error); metric <c>r2</c> (coefficient of determination).</summary>
    LinearRegression,
}

/// <summary>
/// A multi-class linear probe (Alain &amp; Bengio 2016): logits = W·x + b, trained with cross-entropy as an objective for
/// the library's one <see cref="Trainer{TBatch}"/>. Reports <c>accuracy</c>; weighted by the number of examples.
/// </summary>
public sealed class LogisticProbeObjective : ITrainingObjective<ProbeBatch>
{
    /// <summary>Wraps an existing linear layer <c>[d] → [numClasses]</c>.</summary>
    public LogisticProbeObjective(Linear probe) => Probe = probe ?? throw new ArgumentNullException(nameof(probe));

    /// <summary>A fresh probe <c>d → numClasses</c> (PyTorch's default initialisation, from torch's global generator).</summary>
    public LogisticProbeObjective(int dModel, int numClasses)
    {
        if (dModel < 1) throw new ArgumentOutOfRangeException(nameof(dModel), $"dModel is {dModel}; pass the activation width (≥ 1).");
        if (numClasses < 2) throw new ArgumentOutOfRangeException(nameof(numClasses), $"numClasses is {numClasses}; a classification probe needs at least 2 classes (use a LinearRegressionProbeObjective for a scalar target).");
        TorchRuntime.EnsureLoaded();
        Probe = nn.Linear(dModel, numClasses);
    }

    /// <summary>The probe: weight <c>[numClasses, d]</c>, bias <c>[numClasses]</c>.</summary>
    public Linear Probe { get; }
    nn.Module ITrainingObjective<ProbeBatch>.Model => Probe;

    /// <summary>Number of classes.</summary>
    public long NumClasses => Probe.weight!.shape[0];

    /// <summary>
    /// Mean cross-entropy of <paramref name="logits"/> <c>[n, classes]</c> against int64 <paramref name="labels"/> <c>[n]</c>:
    /// <c>mean over examples of −log softmax(logits)[label]</c> (PyTorch's <c>cross_entropy</c>).
    /// </summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor labels) =>
        -logits.log_softmax(-1).gather(1, labels.unsqueeze(1)).squeeze(1).mean();

    /// <inheritdoc/>
    public ObjectiveOutput Compute(ProbeBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        CheckBatch(batch);
        var logits = Probe.call(batch.Activations);
        var loss = CrossEntropy(logits, batch.Targets);
        var accuracy = logits.argmax(-1).eq(batch.Targets).to_type(ScalarType.Float32).mean();
        return new ObjectiveOutput(loss, new Dictionary<string, Tensor> { ["accuracy"] = accuracy },
            Weight: torch.tensor((float)batch.Count, device: batch.Activations.device));
    }

    /// <summary>Fraction of examples whose argmax class is the label (no gradient, eval mode unchanged).</summary>
    public double Accuracy(ProbeBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        CheckBatch(batch);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return Probe.call(batch.Activations).argmax(-1).eq(batch.Targets).to_type(ScalarType.Float64).mean().item<double>();
    }

    void CheckBatch(ProbeBatch b)
    {
        long d = Probe.weight!.shape[1];
        if (b.Activations.dim() != 2 || b.Activations.shape[1] != d)
            throw new ArgumentException($"ProbeBatch.Activations is [{string.Join(", ", b.Activations.shape)}] but the probe reads [n, {d}]; pass one activation vector of width {d} per row.", nameof(b));
        if (b.Targets.dtype != ScalarType.Int64 || b.Targets.dim() != 1 || b.Targets.shape[0] != b.Activations.shape[0])
            throw new ArgumentException($"ProbeBatch.Targets is {b.Targets.dtype} [{string.Join(", ", b.Targets.shape)}] but a logistic probe needs int64 class ids [{b.Activations.shape[0]}]; pass labels as long (e.g. labels.to_type(ScalarType.Int64)).", nameof(b));
    }
}

/// <summary>
/// A linear regression probe: prediction = W·x + b, trained with mean squared error (averaged over examples and outputs) as
/// an objective for <see cref="Trainer{TBatch}"/>. Reports <c>r2</c> (<see cref="RSquared"/>).
/// </summary>
public sealed class LinearRegressionProbeObjective : ITrainingObjective<ProbeBatch>
{
    /// <summary>Wraps an existing linear layer <c>[d] → [outputs]</c>.</summary>
    public LinearRegressionProbeObjective(Linear probe) => Probe = probe ?? throw new ArgumentNullException(nameof(probe));

    /// <summary>A fresh probe <c>d → outputs</c> (PyTorch's default initialisation, from torch's global generator).</summary>
    public LinearRegressionProbeObjective(int dModel, int outputs = 1)
    {
        if (dModel < 1) throw new ArgumentOutOfRangeException(nameof(dModel), $"dModel is {dModel}; pass the activation width (≥ 1).");
        if (outputs < 1) throw new ArgumentOutOfRangeException(nameof(outputs), $"outputs is {outputs}; pass the number of regression targets (≥ 1).");
        TorchRuntime.EnsureLoaded();
        Probe = nn.Linear(dModel, outputs);
    }

    /// <summary>The probe: weight <c>[outputs, d]</c>, bias <c>[outputs]</c>.</summary>
    public Linear Probe { get; }
    nn.Module ITrainingObjective<ProbeBatch>.Model => Probe;

    /// <summary>Predictions <c>[n, outputs]</c>.</summary>
    public Tensor Predict(Tensor activations) => Probe.call(activations);

    /// <summary>
    /// Coefficient of determination, <c>1 − Σ(y − ŷ)² / Σ(y − ȳ)²</c> per output (ȳ the mean of these targets), averaged over
    /// outputs (scikit-learn's <c>r2_score</c>, <c>uniform_average</c>). <paramref name="targets"/> and <paramref name="predictions"/>
    /// are <c>[n]</c> or <c>[n, outputs]</c>.
    /// </summary>
    public static Tensor RSquared(Tensor predictions, Tensor targets)
    {
        var y = targets.dim() == 1 ? targets.unsqueeze(1) : targets;
        var p = predictions.dim() == 1 ? predictions.unsqueeze(1) : predictions;
        // sum(new long[] { 0 }), not sum(0): a literal 0 converts to ScalarType.Byte and picks sum(dtype).
        var ssRes = (y - p).pow(2).sum(new long[] { 0 });
        var ssTot = (y - y.mean(new long[] { 0 }, keepdim: true)).pow(2).sum(new long[] { 0 });
        return (1 - ssRes / ssTot).mean();
    }

    /// <inheritdoc/>
    public ObjectiveOutput Compute(ProbeBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var y = Targets(batch);
        var pred = Probe.call(batch.Activations);
        var loss = (pred - y).pow(2).mean();
        return new ObjectiveOutput(loss, new Dictionary<string, Tensor> { ["r2"] = RSquared(pred.detach(), y) },
            Weight: torch.tensor((float)batch.Count, device: batch.Activations.device));
    }

    /// <summary>R² of the probe on <paramref name="batch"/> (no gradient).</summary>
    public double R2(ProbeBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return RSquared(Probe.call(batch.Activations), Targets(batch)).to_type(ScalarType.Float64).item<double>();
    }

    Tensor Targets(ProbeBatch b)
    {
        long d = Probe.weight!.shape[1], k = Probe.weight!.shape[0];
        if (b.Activations.dim() != 2 || b.Activations.shape[1] != d)
            throw new ArgumentException($"ProbeBatch.Activations is [{string.Join(", ", b.Activations.shape)}] but the probe reads [n, {d}]; pass one activation vector of width {d} per row.", nameof(b));
        var y = b.Targets.dim() == 1 ? b.Targets.unsqueeze(1) : b.Targets;
        if (y.dim() != 2 || y.shape[0] != b.Activations.shape[0] || y.shape[1] != k)
            throw new ArgumentException($"ProbeBatch.Targets is [{string.Join(", ", b.Targets.shape)}] but this regression probe predicts [{b.Activations.shape[0]}, {k}]; pass one target row per activation row.", nameof(b));
        return y.to_type(b.Activations.dtype);
    }
}

/// <summary>A trained probe and its scores.</summary>
/// <param name="Kind">Logistic or linear regression.</param>
/// <param name="Probe">The trained linear layer (owned by the caller).</param>
/// <param name="TrainMetric">Accuracy (logistic) or R² (regression) on the training examples.</param>
/// <param name="TestMetric">The same on the held-out examples (NaN when there are none).</param>
/// <param name="TrainCount">Training examples.</param>
/// <param name="TestCount">Held-out examples.</param>
/// <param name="FinalLoss">Training loss of the last update.</param>
public sealed record ProbeResult(ProbeKind Kind, Linear Probe, double TrainMetric, double TestMetric, long TrainCount, long TestCount, double FinalLoss)
{
    /// <summary>Name of the metric: <c>accuracy</c> or <c>r2</c>.</summary>
    public string MetricName => Kind == ProbeKind.Logistic ? "accuracy" : "r2";
}

/// <summary>
/// Linear probes on activations: a seeded train/test split, training through <see cref="Trainer{TBatch}"/> with a
/// <see cref="LogisticProbeObjective"/> or <see cref="LinearRegressionProbeObjective"/>, and scores. Sweeps over layers and
/// positions of a <see cref="Models.HookedTransformer"/> are in <see cref="ProbeSweep"/>.
/// </summary>
public static class Probing
{
    /// <summary>
    /// Trainer settings for probes: full-batch AdamW (lr 0.01, no weight decay, no clipping, constant rate), 300 updates, seed 0,
    /// no console progress. Override with <c>Probing.DefaultTrainerConfig with { MaxSteps = 1000 }</c>.
    /// </summary>
    public static TrainerConfig DefaultTrainerConfig { get; } = new()
    {
        LearningRate = 1e-2, WeightDecay = 0, MaxGradNorm = 0, MaxSteps = 300, BatchSize = int.MaxValue,
        LrSchedulerType = LrSchedulerType.Constant, EvalEvery = 0, Seed = 0, ConsoleProgress = false,
    };

    /// <summary>
    /// Splits <paramref name="count"/> example indices into train and test sets with a seeded shuffle (<c>new Random(seed)</c>):
    /// the first <c>round(count · testFraction)</c> shuffled indices are the test set. Both lists come back sorted.
    /// </summary>
    public static (int[] Train, int[] Test) TrainTestSplit(int count, double testFraction, int seed)
    {
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), $"count is {count}; a train/test split needs at least 2 examples.");
        if (testFraction is <= 0 or >= 1 || double.IsNaN(testFraction))
            throw new ArgumentOutOfRangeException(nameof(testFraction), $"testFraction is {testFraction}; pass a fraction strictly between 0 and 1 (e.g. 0.25).");
        var idx = Enumerable.Range(0, count).ToArray();
        new Random(seed).Shuffle(idx);
        int nTest = Math.Clamp((int)Math.Round(count * testFraction), 1, count - 1);
        return (idx[nTest..].Order().ToArray(), idx[..nTest].Order().ToArray());
    }

    /// <summary>
    /// Trains a multinomial logistic probe on <paramref name="train"/> and scores accuracy on both sets. Torch is seeded with
    /// <see cref="TrainerConfig.Seed"/> before the probe is initialised, so the same data and config give the same probe.
    /// </summary>
    /// <param name="train">Training activations <c>[n, d]</c> and int64 labels <c>[n]</c>.</param>
    /// <param name="test">Held-out examples, or null.</param>
    /// <param name="numClasses">Number of classes (labels must lie in 0…numClasses − 1).</param>
    /// <param name="config">Trainer settings (default <see cref="DefaultTrainerConfig"/>); <see cref="TrainerConfig.BatchSize"/> ≥ n trains full-batch.</param>
    public static ProbeResult TrainLogistic(ProbeBatch train, ProbeBatch? test, int numClasses, TrainerConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        CheckLabels(train, numClasses, "train");
        if (test is not null) CheckLabels(test, numClasses, "test");
        var cfg = config ?? DefaultTrainerConfig;
        TorchRuntime.EnsureLoaded();
        torch.random.manual_seed(cfg.Seed);
        var objective = new LogisticProbeObjective((int)train.Activations.shape[1], numClasses);
        double loss = Fit(objective, train, cfg);
        return new ProbeResult(ProbeKind.Logistic, objective.Probe, objective.Accuracy(train), test is null ? double.NaN : objective.Accuracy(test),
            train.Count, test?.Count ?? 0, loss);
    }

    /// <summary>
    /// Trains a linear regression probe (MSE) on <paramref name="train"/> and scores R² on both sets. Torch is seeded with
    /// <see cref="TrainerConfig.Seed"/> before the probe is initialised.
    /// </summary>
    /// <param name="train">Training activations <c>[n, d]</c> and float targets <c>[n]</c> or <c>[n, k]</c>.</param>
    /// <param name="test">Held-out examples, or null.</param>
    /// <param name="config">Trainer settings (default <see cref="DefaultTrainerConfig"/>).</param>
    public static ProbeResult TrainLinearRegression(ProbeBatch train, ProbeBatch? test, TrainerConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        var cfg = config ?? DefaultTrainerConfig;
        TorchRuntime.EnsureLoaded();
        torch.random.manual_seed(cfg.Seed);
        int outputs = train.Targets.dim() == 1 ? 1 : (int)train.Targets.shape[1];
        var objective = new LinearRegressionProbeObjective((int)train.Activations.shape[1], outputs);
        double loss = Fit(objective, train, cfg);
        return new ProbeResult(ProbeKind.LinearRegression, objective.Probe, objective.R2(train), test is null ? double.NaN : objective.R2(test),
            train.Count, test?.Count ?? 0, loss);
    }

    /// <summary>Trains any probe objective on the examples of <paramref name="train"/> (in minibatches of <see cref="TrainerConfig.BatchSize"/>) and returns the last update's loss.</summary>
    public static double Fit(ITrainingObjective<ProbeBatch> objective, ProbeBatch train, TrainerConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(objective);
        ArgumentNullException.ThrowIfNull(train);
        var cfg = config ?? DefaultTrainerConfig;
        if (train.Count == 0) throw new ArgumentException("The training set is empty; pass at least one example (check the label mask and the split).", nameof(train));
        var batches = new List<ProbeBatch>();
        var x = train.Activations.detach();
        var y = train.Targets.detach();
        for (long start = 0; start < train.Count; start += Math.Max(1, cfg.BatchSize))
        {
            long len = Math.Min(Math.Max(1, cfg.BatchSize), train.Count - start);
            batches.Add(len == train.Count ? new ProbeBatch(x, y) : new ProbeBatch(x.narrow(0, start, len), y.narrow(0, start, len)));
        }
        var trainer = new Trainer<ProbeBatch>(objective, cfg with { BatchSize = (int)Math.Min(cfg.BatchSize, train.Count) });
        var records = trainer.Train(batches);
        objective.Model.eval();
        return records.Count > 0 ? records[^1].Loss : double.NaN;
    }

    static void CheckLabels(ProbeBatch b, int numClasses, string which)
    {
        if (numClasses < 2) throw new ArgumentOutOfRangeException(nameof(numClasses), $"numClasses is {numClasses}; a classification probe needs at least 2 classes.");
        if (b.Targets.dtype != ScalarType.Int64)
            throw new ArgumentException($"The {which} labels are {b.Targets.dtype}; a logistic probe needs int64 class ids (labels.to_type(ScalarType.Int64)).", nameof(b));
        if (b.Targets.numel() == 0) return;
        using var scope = torch.NewDisposeScope();
        long min = b.Targets.min().item<long>(), max = b.Targets.max().item<long>();
        if (min < 0 || max >= numClasses)
            throw new ArgumentException($"The {which} labels range over [{min}, {max}] but numClasses is {numClasses}; labels must lie in 0…{numClasses - 1} (raise numClasses or mask out the others).", nameof(b));
    }
}
