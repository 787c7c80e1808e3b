using System.Diagnostics;
using Microsoft.Data.Analysis;
using SafetyNotebooks.Data;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training.Checkpoints;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training;

/// <summary>One training batch.</summary>
/// <param name="Tokens">int64 <c>[batch, pos]</c>.</param>
/// <param name="TargetMask">Optional bool/0-1 <c>[batch, pos]</c> marking target tokens (see <see cref="Losses"/>); null = every position 1.. counts.</param>
public sealed record TrainingBatch(Tensor Tokens, Tensor? TargetMask = null);

/// <summary>Computes a scalar loss from a model's logits <c>[batch, pos, vocab]</c>, the batch tokens and the optional target mask.</summary>
public delegate Tensor TrainingLoss(Tensor logits, Tensor tokens, Tensor? targetMask);

/// <summary>One row of <see cref="Trainer.History"/>.</summary>
/// <param name="Step">Updates completed (1-based).</param>
/// <param name="Loss">Training loss of the batch.</param>
/// <param name="LearningRate">Rate used for the update.</param>
/// <param name="GradNorm">Global gradient norm before clipping.</param>
/// <param name="Eval">Eval metrics (keys prefixed <c>eval/</c>) when an evaluation ran at this step.</param>
public sealed record TrainingRecord(int Step, double Loss, double LearningRate, double GradNorm, IReadOnlyDictionary<string, double>? Eval);

/// <summary>
/// Trains any causal LM — a <c>Module&lt;Tensor, Tensor&gt;</c> mapping int64 tokens <c>[batch, pos]</c> to logits
/// <c>[batch, pos, vocab]</c> — with AdamW, linear warmup + cosine (or linear/constant) decay, and clipping by global
/// gradient norm. Each update runs inside its own dispose scope, so memory stays flat over long runs.
/// <code>
/// var trainer = new Trainer(model, new TrainerConfig { MaxSteps = 2000, WarmupSteps = 100 });
/// trainer.Evaluator = Trainer.TaskEvaluator(task, evalBatch);
/// trainer.Train(task);
/// trainer.History // DataFrame: step, loss, learning_rate, grad_norm, eval/loss, eval/accuracy
/// </code>
/// </summary>
public sealed class Trainer
{
    readonly List<TrainingRecord> _records = new();
    readonly OptimizerHelper _optimizer;
    readonly Parameter[] _params;

    /// <summary>Creates a trainer and its AdamW optimizer over <paramref name="model"/>'s trainable parameters.</summary>
    public Trainer(nn.Module<Tensor, Tensor> model, TrainerConfig? config = null)
    {
        TorchRuntime.EnsureLoaded();
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Config = config ?? new TrainerConfig();
        if (Config.MaxSteps < 0 || Config.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(config), "MaxSteps ≥ 0 and BatchSize ≥ 1 required.");
        _params = model.parameters().Where(p => p.requires_grad).ToArray();
        var decay = _params.Where(p => !Config.DecayOnlyMatrices || p.dim() >= 2).ToArray();
        var noDecay = _params.Except(decay).ToArray();
        var groups = new List<AdamW.ParamGroup>();
        if (decay.Length > 0) groups.Add(new AdamW.ParamGroup(decay, new AdamW.Options { weight_decay = Config.WeightDecay }));
        if (noDecay.Length > 0) groups.Add(new AdamW.ParamGroup(noDecay, new AdamW.Options { weight_decay = 0 }));
        _optimizer = torch.optim.AdamW(groups, lr: Config.LearningRate, beta1: Config.AdamBeta1, beta2: Config.AdamBeta2,
            eps: Config.AdamEpsilon, weight_decay: Config.WeightDecay);
        Loss = (logits, tokens, mask) => Losses.NextTokenCrossEntropy(logits, tokens, mask);
    }

    /// <summary>The model being trained.</summary>
    public nn.Module<Tensor, Tensor> Model { get; }
    /// <summary>The hyper-parameters.</summary>
    public TrainerConfig Config { get; }
    /// <summary>Updates completed so far.</summary>
    public int Step { get; private set; }

    /// <summary>Loss used for training. Default: <see cref="Losses.NextTokenCrossEntropy"/> over the batch's target mask.</summary>
    public TrainingLoss Loss { get; set; }

    /// <summary>Sets a custom loss that ignores the target mask: <c>(logits, tokens) → scalar</c>.</summary>
    public Trainer WithLoss(Func<Tensor, Tensor, Tensor> loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        Loss = (l, t, _) => loss(l, t);
        return this;
    }

    /// <summary>
    /// Called every <see cref="TrainerConfig.EvalEvery"/> updates and after the last, with the model in eval mode and
    /// gradients off. Returned keys are stored with an <c>eval/</c> prefix (unless they already have one).
    /// </summary>
    public Func<nn.Module<Tensor, Tensor>, IReadOnlyDictionary<string, double>>? Evaluator { get; set; }

    /// <summary>
    /// Receives a <see cref="TrainingProgress"/> after every update, called synchronously on the training thread (so a
    /// plain <see cref="IProgress{T}"/> implementation sees every step in order; note that <see cref="Progress{T}"/>
    /// instead posts to its captured context and may run later). Independent of the console line
    /// (<see cref="TrainerConfig.ConsoleProgress"/>).
    /// </summary>
    public IProgress<TrainingProgress>? Progress { get; set; }

    /// <summary>Every update's record, in order.</summary>
    public IReadOnlyList<TrainingRecord> Records => _records;

    /// <summary>Training losses in step order.</summary>
    public IReadOnlyList<double> LossHistory => _records.Select(r => r.Loss).ToArray();

    /// <summary>
    /// The metrics history as a DataFrame: <c>step</c>, <c>loss</c>, <c>learning_rate</c>, <c>grad_norm</c>, then one
    /// column per eval metric (e.g. <c>eval/loss</c>), null on steps without an evaluation.
    /// </summary>
    public DataFrame History
    {
        get
        {
            var evalKeys = _records.Where(r => r.Eval != null).SelectMany(r => r.Eval!.Keys).Distinct().ToList();
            var cols = new List<DataFrameColumn>
            {
                new Int32DataFrameColumn("step", _records.Select(r => r.Step)),
                new DoubleDataFrameColumn("loss", _records.Select(r => r.Loss)),
                new DoubleDataFrameColumn("learning_rate", _records.Select(r => r.LearningRate)),
                new DoubleDataFrameColumn("grad_norm", _records.Select(r => r.GradNorm)),
            };
            foreach (var k in evalKeys)
                cols.Add(new DoubleDataFrameColumn(k, _records.Select(r => r.Eval != null && r.Eval.TryGetValue(k, out var v) ? v : (double?)null)));
            return new DataFrame(cols);
        }
    }

    /// <summary>An evaluator computing <paramref name="task"/>'s metrics on a fixed <paramref name="evalBatch"/>.</summary>
    public static Func<nn.Module<Tensor, Tensor>, IReadOnlyDictionary<string, double>> TaskEvaluator(ISyntheticTask task, TaskBatch evalBatch) =>
        model =>
        {
            using var scope = torch.NewDisposeScope();
            return task.Metrics(model.call(evalBatch.Tokens), evalBatch);
        };

    /// <summary>
    /// An evaluator computing <c>loss</c> (with this trainer's <see cref="Loss"/>) and next-token <c>accuracy</c> on a
    /// fixed held-out set, in chunks of <see cref="TrainerConfig.BatchSize"/> rows (averaged by rows).
    /// </summary>
    public Func<nn.Module<Tensor, Tensor>, IReadOnlyDictionary<string, double>> HeldOutEvaluator(Tensor tokens, Tensor? targetMask = null) =>
        model =>
        {
            long n = tokens.shape[0];
            double loss = 0, acc = 0;
            for (long start = 0; start < n; start += Config.BatchSize)
            {
                using var scope = torch.NewDisposeScope();
                long len = Math.Min(Config.BatchSize, n - start);
                var x = tokens.narrow(0, start, len);
                var m = targetMask?.narrow(0, start, len);
                var logits = model.call(x);
                loss += Loss(logits, x, m).item<float>() * len;
                acc += Losses.NextTokenAccuracy(logits, x, m) * len;
            }
            return new Dictionary<string, double> { ["loss"] = loss / n, ["accuracy"] = acc / n };
        };

    /// <summary>Trains on random windows of a token stream (<see cref="TokenWindows.Sample"/>), <paramref name="length"/> tokens per row.</summary>
    public IReadOnlyList<TrainingRecord> Train(IReadOnlyList<int> tokenStream, int length) =>
        Train((_, rng) => new TrainingBatch(TokenWindows.Sample(tokenStream, Config.BatchSize, length, rng)));

    /// <summary>Trains on fresh batches of <paramref name="task"/> drawn with the trainer's seeded data rng.</summary>
    public IReadOnlyList<TrainingRecord> Train(ISyntheticTask task) => Train((_, rng) =>
    {
        var b = task.Generate(Config.BatchSize, rng);
        b.Labels?.Dispose();
        return new TrainingBatch(b.Tokens, b.TargetMask);
    });

    /// <summary>
    /// Trains on rows of a fixed dataset <paramref name="tokens"/> <c>[n, pos]</c> (with optional target mask): each
    /// epoch visits the rows in a fresh seeded random order, <see cref="TrainerConfig.BatchSize"/> at a time
    /// (the whole dataset per batch if it is smaller).
    /// </summary>
    public IReadOnlyList<TrainingRecord> Train(Tensor tokens, Tensor? targetMask = null)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        int n = checked((int)tokens.shape[0]);
        int bs = Math.Min(Config.BatchSize, n);
        int[] order = Array.Empty<int>();
        int cursor = 0;
        return Train((_, rng) =>
        {
            if (cursor + bs > order.Length)
            {
                order = Enumerable.Range(0, n).ToArray();
                rng.Shuffle(order);
                cursor = 0;
            }
            var idx = torch.tensor(order.AsSpan(cursor, bs).ToArray().Select(i => (long)i).ToArray(), dtype: ScalarType.Int64);
            cursor += bs;
            return new TrainingBatch(tokens.index_select(0, idx), targetMask?.index_select(0, idx));
        });
    }

    /// <summary>
    /// Runs updates from <see cref="Step"/> up to <see cref="TrainerConfig.MaxSteps"/>. <paramref name="nextBatch"/>
    /// gets the 0-based update index and the seeded data <see cref="Random"/>; tensors it creates are disposed after
    /// the update. Seeds torch with <see cref="TrainerConfig.Seed"/> first (on the first call only), so a model built
    /// from the same seed, trained on the same data, gives the same loss history.
    /// </summary>
    public IReadOnlyList<TrainingRecord> Train(Func<int, Random, TrainingBatch> nextBatch)
    {
        ArgumentNullException.ThrowIfNull(nextBatch);
        if (Step == 0)
        {
            torch.random.manual_seed(Config.Seed);
            _dataRng = new Random(Config.Seed);
        }
        var rng = _dataRng ??= new Random(Config.Seed);
        // Live progress goes through Runtime.Progress: one updating output in a notebook (after the
        // setup cell), an in-place or every-10% line on the console elsewhere.
        using var live = Config.ConsoleProgress ? SafetyNotebooks.Runtime.Progress.Start("training", Config.MaxSteps) : null;
        IReadOnlyDictionary<string, double>? lastEval = null;
        var sw = Stopwatch.StartNew();
        bool wasTraining = Model.training;
        Model.train();
        try
        {
            while (Step < Config.MaxSteps)
            {
                int i = Step;
                double lr = LrSchedule.For(Config, i);
                foreach (var g in _optimizer.ParamGroups) g.LearningRate = lr;
                double lossValue, gradNorm;
                using (var scope = torch.NewDisposeScope())
                {
                    var batch = nextBatch(i, rng);
                    _optimizer.zero_grad();
                    var logits = Model.call(batch.Tokens);
                    var loss = Loss(logits, batch.Tokens, batch.TargetMask);
                    loss.backward();
                    gradNorm = ClipGradients(Config.MaxGradNorm);
                    _optimizer.step();
                    lossValue = loss.item<float>();
                }
                Step = i + 1;

                IReadOnlyDictionary<string, double>? eval = null;
                bool last = Step == Config.MaxSteps;
                if (Evaluator != null && (last || (Config.EvalEvery > 0 && Step % Config.EvalEvery == 0)))
                    eval = RunEvaluator();
                if (Config.CheckpointDir != null && Config.CheckpointEvery > 0 && (last || Step % Config.CheckpointEvery == 0))
                    SaveCheckpoint(Path.Combine(Config.CheckpointDir, $"step-{Step}.safetensors"));

                _records.Add(new TrainingRecord(Step, lossValue, lr, gradNorm, eval));
                var p = new TrainingProgress(Step, Config.MaxSteps, lossValue, lr, gradNorm, sw.Elapsed, eval);
                Progress?.Report(p);
                if (eval != null) lastEval = eval;
                if (live != null)
                {
                    var metrics = new List<(string, double)> { ("loss", lossValue), ("lr", lr) };
                    if (lastEval != null) metrics.AddRange(lastEval.Select(kv => (kv.Key, kv.Value)));
                    live.Report(Step, metrics.ToArray());
                }
            }
        }
        finally
        {
            Model.train(wasTraining);
        }
        return _records;
    }

    Random? _dataRng;

    IReadOnlyDictionary<string, double> RunEvaluator()
    {
        bool wasTraining = Model.training;
        Model.eval();
        try
        {
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            return Evaluator!(Model).ToDictionary(kv => kv.Key.StartsWith("eval/", StringComparison.Ordinal) ? kv.Key : "eval/" + kv.Key, kv => kv.Value);
        }
        finally { Model.train(wasTraining); }
    }

    /// <summary>Global L2 norm of all gradients; scales them to <paramref name="maxNorm"/> when larger (PyTorch's clip_grad_norm_ rule, coefficient maxNorm / (norm + 1e-6)).</summary>
    double ClipGradients(double maxNorm)
    {
        using var scope = torch.NewDisposeScope();
        var grads = _params.Select(p => p.grad).Where(g => g is not null).Cast<Tensor>().ToArray();
        if (grads.Length == 0) return 0;
        var norms = torch.stack(grads.Select(g => g.detach().to_type(ScalarType.Float64).norm()));
        double total = norms.norm().item<double>();
        if (maxNorm > 0 && !double.IsPositiveInfinity(maxNorm) && total > maxNorm)
        {
            double coef = maxNorm / (total + 1e-6);
            using var noGrad = torch.no_grad();
            foreach (var g in grads) g.mul_(coef);
        }
        return total;
    }

    /// <summary>Saves the model's parameters and buffers (safetensors) with the step in the metadata.</summary>
    public void SaveCheckpoint(string path) =>
        ModuleCheckpoint.Save(Model, path, new Dictionary<string, string> { ["step"] = Step.ToString(System.Globalization.CultureInfo.InvariantCulture) });

    /// <summary>Loads parameters saved by <see cref="SaveCheckpoint"/> into the model (the optimizer state and step are not restored).</summary>
    public void LoadCheckpoint(string path) => ModuleCheckpoint.Load(Model, path);
}
