using System.Globalization;
using Microsoft.Data.Analysis;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training.Checkpoints;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training;

/// <summary>One row of <see cref="Trainer{TBatch}.History"/>.</summary>
/// <param name="Step">Updates completed (1-based, HF's <c>global_step</c>).</param>
/// <param name="Loss">Training loss of the update's batch (all micro-batches, weighted by their item counts).</param>
/// <param name="LearningRate">Rate used for the update.</param>
/// <param name="GradNorm">Global gradient L2 norm before clipping.</param>
/// <param name="Eval">Eval metrics (keys prefixed <c>eval/</c>) when an evaluation ran at this step.</param>
/// <param name="Metrics">The objective's own training metrics for this update (e.g. <c>rewards/accuracies</c>), or null.</param>
/// <param name="Epoch">Passes over a fixed dataset completed so far (fractional, HF's <c>epoch</c>); null for endless sources.</param>
public sealed record TrainingRecord(int Step, double Loss, double LearningRate, double GradNorm, IReadOnlyDictionary<string, double>? Eval,
    IReadOnlyDictionary<string, double>? Metrics = null, double? Epoch = null);

/// <summary>
/// One training loop for every objective (<see cref="ITrainingObjective{TBatch}"/>): AdamW or Adam, linear warmup +
/// cosine (or linear/constant) decay, clipping by global gradient norm (<c>torch.nn.utils.clip_grad_norm_</c>), gradient
/// accumulation, evaluation every N updates, the metrics history as a DataFrame, safetensors checkpoints with optimizer
/// state, live progress through <see cref="Progress"/>, seeds and one device. Each update runs inside its own dispose
/// scope, so memory stays flat over long runs.
/// <code>
/// var trainer = new Trainer&lt;PreferenceBatch&gt;(new RewardModelObjective(rewardModel), new TrainerConfig { MaxSteps = 500 });
/// trainer.Evaluator = trainer.EvaluateOn(heldOutBatches);
/// trainer.Train((step, rng) =&gt; SamplePairs(rng));
/// trainer.History // DataFrame: step, loss, learning_rate, grad_norm, rewards/accuracies, …, eval/loss, …
/// </code>
/// </summary>
/// <typeparam name="TBatch">The objective's batch type.</typeparam>
public class Trainer<TBatch>
{
    readonly List<TrainingRecord> _records = new();
    readonly OptimizerHelper _optimizer;
    readonly Parameter[] _params;
    Random? _dataRng;

    /// <summary>Moves the objective's model to <see cref="TrainerConfig.Device"/> and builds the optimizer over its trainable parameters.</summary>
    public Trainer(ITrainingObjective<TBatch> objective, TrainerConfig? config = null)
    {
        TorchRuntime.EnsureLoaded();
        Objective = objective ?? throw new ArgumentNullException(nameof(objective));
        Config = config ?? new TrainerConfig();
        if (Config.MaxSteps < 0) throw new ArgumentOutOfRangeException(nameof(config), $"TrainerConfig.MaxSteps is {Config.MaxSteps}; set it to 0 or more.");
        if (Config.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(config), $"TrainerConfig.BatchSize is {Config.BatchSize}; set it to 1 or more.");
        if (Config.GradientAccumulationSteps < 1)
            throw new ArgumentOutOfRangeException(nameof(config), $"TrainerConfig.GradientAccumulationSteps is {Config.GradientAccumulationSteps}; set it to 1 (no accumulation) or more.");
        var model = Objective.Model ?? throw new ArgumentException("The objective's Model is null; return the module being trained.", nameof(objective));
        if (Config.Device is { } device) model.to(device);              // before the optimizer takes the parameters
        Device = Config.Device ?? model.parameters().FirstOrDefault()?.device ?? Devices.Default;
        _params = Objective.TrainableParameters().ToArray();
        if (_params.Length == 0)
            throw new ArgumentException("The objective has no trainable parameters; return them from TrainableParameters() (or leave requires_grad on).", nameof(objective));
        // Partition by the rule, not with Except: Tensor.Equals compares values (and needs data), not identity.
        var decay = _params.Where(p => !Config.DecayOnlyMatrices || p.dim() >= 2).ToArray();
        var noDecay = _params.Where(p => Config.DecayOnlyMatrices && p.dim() < 2).ToArray();
        if (Config.Optimizer == TrainerOptimizer.Adam)
        {
            var groups = new List<Adam.ParamGroup>();
            if (decay.Length > 0) groups.Add(new Adam.ParamGroup(decay, new Adam.Options { weight_decay = Config.WeightDecay }));
            if (noDecay.Length > 0) groups.Add(new Adam.ParamGroup(noDecay, new Adam.Options { weight_decay = 0 }));
            _optimizer = torch.optim.Adam(groups, lr: Config.LearningRate, beta1: Config.AdamBeta1, beta2: Config.AdamBeta2,
                eps: Config.AdamEpsilon, weight_decay: Config.WeightDecay);
        }
        else
        {
            var groups = new List<AdamW.ParamGroup>();
            if (decay.Length > 0) groups.Add(new AdamW.ParamGroup(decay, new AdamW.Options { weight_decay = Config.WeightDecay }));
            if (noDecay.Length > 0) groups.Add(new AdamW.ParamGroup(noDecay, new AdamW.Options { weight_decay = 0 }));
            _optimizer = torch.optim.AdamW(groups, lr: Config.LearningRate, beta1: Config.AdamBeta1, beta2: Config.AdamBeta2,
                eps: Config.AdamEpsilon, weight_decay: Config.WeightDecay);
        }
    }

    /// <summary>The objective being optimized.</summary>
    public ITrainingObjective<TBatch> Objective { get; }
    /// <summary>The hyper-parameters.</summary>
    public TrainerConfig Config { get; }
    /// <summary>The device training runs on (<see cref="TrainerConfig.Device"/>, else the model's).</summary>
    public Device Device { get; }
    /// <summary>Updates completed so far.</summary>
    public int Step { get; private set; }

    /// <summary>
    /// Called every <see cref="TrainerConfig.EvalEvery"/> updates and after the last, with the model in eval mode and
    /// gradients off. Returned keys are stored with an <c>eval/</c> prefix (unless they already have one).
    /// See <see cref="EvaluateOn"/> for the objective's own loss and metrics on held-out batches.
    /// </summary>
    public Func<IReadOnlyDictionary<string, double>>? Evaluator { get; set; }

    /// <summary>Where live progress goes. Null (default): <see cref="Progress.SinkFactory"/> when
    /// <see cref="TrainerConfig.ConsoleProgress"/> is on, nowhere otherwise. A sink set here always receives every update.</summary>
    public IProgressSink? ProgressSink { get; set; }

    /// <summary>Every update's record, in order.</summary>
    public IReadOnlyList<TrainingRecord> Records => _records;

    /// <summary>Training losses in step order.</summary>
    public IReadOnlyList<double> LossHistory => _records.Select(r => r.Loss).ToArray();

    /// <summary>
    /// The metrics history as a DataFrame, in HF Trainer names: <c>step</c>, <c>epoch</c> (when training on a fixed
    /// dataset), <c>loss</c>, <c>learning_rate</c>, <c>grad_norm</c>, the objective's metrics, then one column per eval
    /// metric (e.g. <c>eval/loss</c>), null on steps without an evaluation.
    /// </summary>
    public DataFrame History
    {
        get
        {
            var metricKeys = _records.Where(r => r.Metrics != null).SelectMany(r => r.Metrics!.Keys).Distinct().ToList();
            var evalKeys = _records.Where(r => r.Eval != null).SelectMany(r => r.Eval!.Keys).Distinct().ToList();
            var cols = new List<DataFrameColumn> { new Int32DataFrameColumn("step", _records.Select(r => r.Step)) };
            if (_records.Any(r => r.Epoch != null)) cols.Add(new DoubleDataFrameColumn("epoch", _records.Select(r => r.Epoch)));
            cols.Add(new DoubleDataFrameColumn("loss", _records.Select(r => r.Loss)));
            cols.Add(new DoubleDataFrameColumn("learning_rate", _records.Select(r => r.LearningRate)));
            cols.Add(new DoubleDataFrameColumn("grad_norm", _records.Select(r => r.GradNorm)));
            foreach (var k in metricKeys)
                cols.Add(new DoubleDataFrameColumn(k, _records.Select(r => r.Metrics != null && r.Metrics.TryGetValue(k, out var v) ? v : (double?)null)));
            foreach (var k in evalKeys)
                cols.Add(new DoubleDataFrameColumn(k, _records.Select(r => r.Eval != null && r.Eval.TryGetValue(k, out var v) ? v : (double?)null)));
            return new DataFrame(cols);
        }
    }

    /// <summary>
    /// An evaluator running the objective on fixed held-out <paramref name="batches"/>: <c>loss</c> and every metric the
    /// objective reports, each averaged over all batches weighted by <see cref="ObjectiveOutput.Weight"/> (so a split
    /// into batches gives the same numbers as one big batch).
    /// </summary>
    public Func<IReadOnlyDictionary<string, double>> EvaluateOn(IReadOnlyList<TBatch> batches)
    {
        ArgumentNullException.ThrowIfNull(batches);
        if (batches.Count == 0) throw new ArgumentException("EvaluateOn needs at least one held-out batch.", nameof(batches));
        return () =>
        {
            using var scope = torch.NewDisposeScope();
            var acc = new WeightedSums();
            foreach (var b in batches) acc.Add(Objective.Compute(b));
            return acc.Read();
        };
    }

    /// <summary>
    /// Trains on the batches of a fixed dataset: each epoch visits <paramref name="batches"/> in a fresh seeded random
    /// order, one per micro-batch, until <see cref="TrainerConfig.MaxSteps"/> (e.g. PPO's several epochs over the
    /// minibatches of one rollout). The batches are not disposed.
    /// </summary>
    public IReadOnlyList<TrainingRecord> Train(IReadOnlyList<TBatch> batches)
    {
        ArgumentNullException.ThrowIfNull(batches);
        if (batches.Count == 0) throw new ArgumentException("Train needs at least one batch.", nameof(batches));
        int[] order = Array.Empty<int>();
        int cursor = 0;
        long seen = 0;
        return Train((_, rng) =>
        {
            if (cursor >= order.Length)
            {
                order = Enumerable.Range(0, batches.Count).ToArray();
                rng.Shuffle(order);
                cursor = 0;
            }
            var b = batches[order[cursor++]];
            Epoch = (double)++seen / batches.Count;
            return b;
        });
    }

    /// <summary>
    /// Passes over the fixed dataset completed so far, for sources that know it (set by the dataset overloads of
    /// <c>Train</c>); logged as <c>epoch</c>. Null for endless sources.
    /// </summary>
    protected double? Epoch { get; set; }

    /// <summary>
    /// Runs updates from <see cref="Step"/> up to <see cref="TrainerConfig.MaxSteps"/>. <paramref name="nextBatch"/> gets
    /// the 0-based update index and the seeded data <see cref="Random"/>, and is called
    /// <see cref="TrainerConfig.GradientAccumulationSteps"/> times per update; tensors it creates are disposed after the
    /// update. Seeds torch with <see cref="TrainerConfig.Seed"/> first (when starting from step 0), so a model built from
    /// the same seed, trained on the same data, gives the same loss history.
    /// </summary>
    public IReadOnlyList<TrainingRecord> Train(Func<int, Random, TBatch> nextBatch)
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
        var sink = ProgressSink ?? (Config.ConsoleProgress ? Progress.SinkFactory() : null);
        using var live = sink is null ? null : Progress.Start("training", Config.MaxSteps, sink);
        IReadOnlyDictionary<string, double>? lastEval = null;
        var model = Objective.Model;
        bool wasTraining = model.training;
        model.train();
        try
        {
            while (Step < Config.MaxSteps)
            {
                int i = Step;
                double lr = LrSchedule.For(Config, i);
                foreach (var g in _optimizer.ParamGroups) g.LearningRate = lr;
                var (lossValue, gradNorm, metrics) = Update(i, rng, nextBatch);
                Step = i + 1;

                IReadOnlyDictionary<string, double>? eval = null;
                bool last = Step == Config.MaxSteps;
                if (Evaluator != null && (last || (Config.EvalEvery > 0 && Step % Config.EvalEvery == 0)))
                    eval = RunEvaluator();
                if (Config.CheckpointDir != null && Config.CheckpointEvery > 0 && (last || Step % Config.CheckpointEvery == 0))
                    SaveCheckpoint(Path.Combine(Config.CheckpointDir, $"step-{Step}.safetensors"));

                _records.Add(new TrainingRecord(Step, lossValue, lr, gradNorm, eval, metrics.Count > 0 ? metrics : null, Epoch));
                if (eval != null) lastEval = eval;
                if (live != null)
                {
                    var shown = new List<(string, double)> { ("loss", lossValue), ("learning_rate", lr) };
                    shown.AddRange(metrics.Select(kv => (kv.Key, kv.Value)));
                    if (lastEval != null) shown.AddRange(lastEval.Select(kv => (kv.Key, kv.Value)));
                    live.Report(Step, shown.ToArray());
                }
            }
        }
        finally
        {
            model.train(wasTraining);
        }
        return _records;
    }

    (double Loss, double GradNorm, Dictionary<string, double> Metrics) Update(int step, Random rng, Func<int, Random, TBatch> nextBatch)
    {
        using var scope = torch.NewDisposeScope();
        _optimizer.zero_grad();
        int k = Config.GradientAccumulationSteps;
        var sums = new WeightedSums();
        for (int micro = 0; micro < k; micro++)
        {
            var output = Objective.Compute(nextBatch(step, rng));
            if (k == 1) output.Loss.backward();
            else
            {
                // Σ wᵢ·lossᵢ now, divided by Σ wᵢ once all micro-batches are in: the big batch's mean, exactly.
                using var weight = WeightedSums.WeightOf(output);
                using var weighted = output.Loss * weight;
                weighted.backward();
            }
            sums.Add(output);
        }
        if (k > 1)
        {
            using var noGrad = torch.no_grad();
            using var inv = sums.TotalWeight!.clamp_min(1e-12).reciprocal();
            foreach (var p in _params)
                if (p.grad is { } g) g.mul_(inv);
        }
        double gradNorm = ClipGradients();
        _optimizer.step();
        using (torch.no_grad()) Objective.AfterOptimizerStep();
        var values = sums.Read();
        double loss = values["loss"];
        values.Remove("loss");
        return (loss, gradNorm, values);
    }

    /// <summary>Clips with TorchSharp's <c>clip_grad_norm_</c> (PyTorch's rule: coefficient maxNorm / (norm + 1e-6), capped at 1)
    /// and returns the norm before clipping. The meta device holds no data, so there the norm is NaN and nothing is clipped.</summary>
    double ClipGradients()
    {
        if (_params.Any(p => p.device_type == DeviceType.META)) return double.NaN;
        double max = Config.MaxGradNorm > 0 ? Config.MaxGradNorm : double.PositiveInfinity;
        return torch.nn.utils.clip_grad_norm_(_params, max);
    }

    IReadOnlyDictionary<string, double> RunEvaluator()
    {
        var model = Objective.Model;
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            return Evaluator!().ToDictionary(kv => kv.Key.StartsWith("eval/", StringComparison.Ordinal) ? kv.Key : "eval/" + kv.Key, kv => kv.Value);
        }
        finally { model.train(wasTraining); }
    }

    /// <summary>The optimizer-state file written next to a checkpoint: <c>step-10.safetensors</c> → <c>step-10.optimizer.bin</c>.</summary>
    public static string OptimizerStatePath(string checkpointPath) => Path.ChangeExtension(checkpointPath, ".optimizer.bin");

    /// <summary>
    /// Saves the model's parameters and buffers (safetensors, through <see cref="ModuleCheckpoint"/>) with the step in the
    /// metadata, and the optimizer state (TorchSharp's <c>save_state_dict</c>) to <see cref="OptimizerStatePath"/>.
    /// </summary>
    public void SaveCheckpoint(string path)
    {
        ModuleCheckpoint.Save(Objective.Model, path, new Dictionary<string, string> { ["step"] = Step.ToString(CultureInfo.InvariantCulture) });
        // Temp file + rename, so a crash mid-write never leaves a truncated optimizer state beside a good model file.
        var optPath = OptimizerStatePath(path);
        var tmp = optPath + ".tmp";
        _optimizer.save_state_dict(tmp);
        File.Move(tmp, optPath, overwrite: true);
    }

    /// <summary>
    /// Loads a checkpoint written by <see cref="SaveCheckpoint"/>: the model's parameters, the step (so the schedule
    /// resumes where it stopped) and, when its file exists, the optimizer state. The data order restarts from the seed.
    /// </summary>
    public void LoadCheckpoint(string path)
    {
        var meta = ModuleCheckpoint.Load(Objective.Model, path);
        if (meta.TryGetValue("step", out var s) && int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var step)) Step = step;
        var opt = OptimizerStatePath(path);
        if (File.Exists(opt)) _optimizer.load_state_dict(opt);
    }

    /// <summary>Reads a 0-d tensor as a double; NaN on the meta device, which has no data.</summary>
    internal static double ReadScalar(Tensor t) =>
        t.device_type == DeviceType.META ? double.NaN : t.detach().to_type(ScalarType.Float64).item<double>();

    /// <summary>Weighted sums of loss and metrics over micro-batches, kept on the device until read.</summary>
    sealed class WeightedSums
    {
        readonly Dictionary<string, Tensor> _sums = new();
        public Tensor? TotalWeight { get; private set; }

        public static Tensor WeightOf(ObjectiveOutput o) =>
            o.Weight is { } w ? w.detach().to_type(ScalarType.Float64) : torch.ones_like(o.Loss, dtype: ScalarType.Float64);

        public void Add(ObjectiveOutput o)
        {
            var w = WeightOf(o);
            TotalWeight = TotalWeight is null ? w : TotalWeight + w;
            Accumulate("loss", o.Loss, w);
            if (o.Metrics != null) foreach (var (name, v) in o.Metrics) Accumulate(name, v, w);
        }

        void Accumulate(string name, Tensor v, Tensor w)
        {
            var term = v.detach().to_type(ScalarType.Float64) * w;
            _sums[name] = _sums.TryGetValue(name, out var s) ? s + term : term;
        }

        public Dictionary<string, double> Read()
        {
            var total = TotalWeight!.clamp_min(1e-12);
            return _sums.ToDictionary(kv => kv.Key, kv => ReadScalar(kv.Value / total));
        }
    }
}
