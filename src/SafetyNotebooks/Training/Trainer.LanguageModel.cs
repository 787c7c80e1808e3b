using SafetyNotebooks.Data;
using SafetyNotebooks.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training;

/// <summary>
/// The language-model trainer: <see cref="Trainer{TBatch}"/> with a <see cref="LanguageModelingObjective"/>, plus the
/// usual token sources (a token stream, a synthetic task, a fixed dataset) and evaluators.
/// <code>
/// var trainer = new Trainer(model, new TrainerConfig { MaxSteps = 2000, WarmupSteps = 100 });
/// trainer.Evaluator = trainer.TaskEvaluator(task, evalBatch);
/// trainer.Train(task);
/// trainer.History // DataFrame: step, loss, learning_rate, grad_norm, eval/loss, eval/accuracy
/// </code>
/// </summary>
public sealed class Trainer : Trainer<TrainingBatch>
{
    /// <summary>Creates a trainer for <paramref name="model"/> (tokens <c>[batch, pos]</c> → logits <c>[batch, pos, vocab]</c>) with next-token loss.</summary>
    public Trainer(nn.Module<Tensor, Tensor> model, TrainerConfig? config = null)
        : base(new LanguageModelingObjective(model ?? throw new ArgumentNullException(nameof(model))), config) { }

    /// <summary>The language-modeling objective.</summary>
    public new LanguageModelingObjective Objective => (LanguageModelingObjective)base.Objective;

    /// <summary>The model being trained.</summary>
    public nn.Module<Tensor, Tensor> Model => Objective.Model;

    /// <summary>Loss used for training. Default: <see cref="LanguageModelLoss.Mean"/> over the batch's target mask.</summary>
    public TrainingLoss Loss { get => Objective.Loss; set => Objective.Loss = value ?? throw new ArgumentNullException(nameof(value)); }

    /// <summary>Sets a custom loss that ignores the target mask: <c>(logits, tokens) → scalar</c>.</summary>
    public Trainer WithLoss(Func<Tensor, Tensor, Tensor> loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        Loss = (l, t, _) => loss(l, t);
        return this;
    }

    /// <summary>An evaluator computing <paramref name="task"/>'s metrics (<c>loss</c>, <c>accuracy</c>, …) on a fixed <paramref name="evalBatch"/>.</summary>
    public Func<IReadOnlyDictionary<string, double>> TaskEvaluator(ISyntheticTask task, TaskBatch evalBatch)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(evalBatch);
        return () =>
        {
            using var scope = torch.NewDisposeScope();
            var tokens = evalBatch.Tokens.to(Device);
            return task.Metrics(Model.call(tokens), evalBatch with { Tokens = tokens, TargetMask = evalBatch.TargetMask.to(Device) });
        };
    }

    /// <summary>
    /// An evaluator computing <c>loss</c> (with this trainer's <see cref="Loss"/>) and next-token <c>accuracy</c> on a
    /// fixed held-out set, in chunks of <see cref="TrainerConfig.BatchSize"/> rows (averaged by rows).
    /// </summary>
    public Func<IReadOnlyDictionary<string, double>> HeldOutEvaluator(Tensor tokens, Tensor? targetMask = null)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return () =>
        {
            using var scope = torch.NewDisposeScope();
            long n = tokens.shape[0];
            Tensor loss = torch.zeros(Array.Empty<long>(), dtype: ScalarType.Float64, device: Device);
            Tensor acc = torch.zeros(Array.Empty<long>(), dtype: ScalarType.Float64, device: Device);
            for (long start = 0; start < n; start += Config.BatchSize)
            {
                long len = Math.Min(Config.BatchSize, n - start);
                var x = tokens.narrow(0, start, len).to(Device);
                var m = targetMask?.narrow(0, start, len).to(Device);
                var logits = Model.call(x);
                loss = loss + Loss(logits, x, m).to_type(ScalarType.Float64) * len;
                acc = acc + LanguageModelLoss.AccuracyTensor(logits, x, m) * len;
            }
            return new Dictionary<string, double> { ["loss"] = ReadScalar(loss / n), ["accuracy"] = ReadScalar(acc / n) };
        };
    }

    /// <summary>Trains on random windows of a token stream (<see cref="TokenWindows.Sample"/>), <paramref name="length"/> tokens per row.</summary>
    public IReadOnlyList<TrainingRecord> Train(IReadOnlyList<int> tokenStream, int length) =>
        Train((_, rng) => new TrainingBatch(TokenWindows.Sample(tokenStream, Config.BatchSize, length, rng, Device)));

    /// <summary>Trains on fresh batches of <paramref name="task"/> drawn with the trainer's seeded data rng, on the trainer's device.</summary>
    public IReadOnlyList<TrainingRecord> Train(ISyntheticTask task)
    {
        ArgumentNullException.ThrowIfNull(task);
        return Train((_, rng) =>
        {
            var b = task.Generate(Config.BatchSize, rng, Device);
            b.Labels?.Dispose();
            return new TrainingBatch(b.Tokens, b.TargetMask);
        });
    }

    /// <summary>
    /// Trains on rows of a fixed dataset <paramref name="tokens"/> <c>[n, pos]</c> (with optional target mask): each
    /// epoch visits the rows in a fresh seeded random order, <see cref="TrainerConfig.BatchSize"/> at a time
    /// (the whole dataset per batch if it is smaller). Rows are moved to the trainer's device batch by batch.
    /// </summary>
    public IReadOnlyList<TrainingRecord> Train(Tensor tokens, Tensor? targetMask = null)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        int n = checked((int)tokens.shape[0]);
        if (n == 0) throw new ArgumentException("The dataset has no rows; pass tokens [n, pos] with n ≥ 1.", nameof(tokens));
        int bs = Math.Min(Config.BatchSize, n);
        int[] order = Array.Empty<int>();
        int cursor = 0;
        long seen = 0;
        return Train((_, rng) =>
        {
            if (cursor + bs > order.Length)
            {
                order = Enumerable.Range(0, n).ToArray();
                rng.Shuffle(order);
                cursor = 0;
            }
            var idx = torch.tensor(order.AsSpan(cursor, bs).ToArray().Select(i => (long)i).ToArray(), dtype: ScalarType.Int64, device: tokens.device);
            cursor += bs;
            seen += bs;
            Epoch = (double)seen / n;
            return new TrainingBatch(tokens.index_select(0, idx).to(Device), targetMask?.index_select(0, idx.to(targetMask.device)).to(Device));
        });
    }
}
