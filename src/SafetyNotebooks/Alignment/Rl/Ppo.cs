using System.Diagnostics;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment.Rl;

/// <summary>
/// PPO hyper-parameters, named and defaulted as CleanRL's <c>ppo.py</c> (its CartPole-v1 defaults):
/// <c>total_timesteps</c>, <c>learning_rate</c>, <c>num_envs</c>, <c>num_steps</c>, <c>anneal_lr</c>, <c>gamma</c>,
/// <c>gae_lambda</c>, <c>num_minibatches</c>, <c>update_epochs</c>, <c>norm_adv</c>, <c>clip_coef</c>, <c>clip_vloss</c>,
/// <c>ent_coef</c>, <c>vf_coef</c>, <c>max_grad_norm</c>, <c>seed</c>.
/// </summary>
public sealed record PpoAgentConfig
{
    /// <summary>Environment steps in total (all environments together). Default 500,000.</summary>
    public long TotalTimesteps { get; init; } = 500_000;
    /// <summary>Adam learning rate. Default 2.5e-4.</summary>
    public double LearningRate { get; init; } = 2.5e-4;
    /// <summary>Parallel environments. Default 4.</summary>
    public int NumEnvs { get; init; } = 4;
    /// <summary>Steps per environment per rollout. Default 128.</summary>
    public int NumSteps { get; init; } = 128;
    /// <summary>Decay the learning rate linearly to 0 over training. Default true.</summary>
    public bool AnnealLr { get; init; } = true;
    /// <summary>Discount γ. Default 0.99.</summary>
    public double Gamma { get; init; } = 0.99;
    /// <summary>GAE λ. Default 0.95.</summary>
    public double GaeLambda { get; init; } = 0.95;
    /// <summary>Minibatches per epoch (the rollout of NumEnvs·NumSteps samples is split into this many). Default 4.</summary>
    public int NumMinibatches { get; init; } = 4;
    /// <summary>Passes over each rollout. Default 4.</summary>
    public int UpdateEpochs { get; init; } = 4;
    /// <summary>Whiten advantages within each minibatch. Default true.</summary>
    public bool NormAdv { get; init; } = true;
    /// <summary>Surrogate clipping ε. Default 0.2.</summary>
    public double ClipCoef { get; init; } = 0.2;
    /// <summary>Clip the value loss with the same ε. Default true.</summary>
    public bool ClipVLoss { get; init; } = true;
    /// <summary>Entropy bonus weight. Default 0.01.</summary>
    public double EntCoef { get; init; } = 0.01;
    /// <summary>Value loss weight. Default 0.5.</summary>
    public double VfCoef { get; init; } = 0.5;
    /// <summary>Global gradient-norm clip. Default 0.5.</summary>
    public double MaxGradNorm { get; init; } = 0.5;
    /// <summary>Seeds the networks, the environments (copy i gets Seed + i), action sampling and minibatch order. Default 1.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Hidden width of the actor and critic MLPs. Default 64.</summary>
    public int HiddenSize { get; init; } = 64;
    /// <summary>
    /// Not in CleanRL's <c>ppo.py</c> (false there, the default): when an episode is cut off by a time limit, add γ·V(final
    /// observation) to the last reward, so the critic is not taught that a truncated state is worth nothing.
    /// </summary>
    public bool BootstrapTruncated { get; init; }
    /// <summary>Show live progress through <see cref="Progress"/>. Default true.</summary>
    public bool ShowProgress { get; init; } = true;

    /// <summary>Samples per rollout: NumEnvs · NumSteps (CleanRL's <c>batch_size</c>).</summary>
    public int BatchSize => NumEnvs * NumSteps;
    /// <summary>Samples per minibatch (CleanRL's <c>minibatch_size</c>).</summary>
    public int MinibatchSize => BatchSize / Math.Max(1, NumMinibatches);
    /// <summary>Rollout-and-update iterations: TotalTimesteps / BatchSize (CleanRL's <c>num_iterations</c>).</summary>
    public int NumIterations => (int)(TotalTimesteps / Math.Max(1, BatchSize));

    internal void Validate()
    {
        if (NumEnvs < 1 || NumSteps < 1) throw new ArgumentException($"PpoAgentConfig: NumEnvs ({NumEnvs}) and NumSteps ({NumSteps}) must be 1 or more.");
        if (NumMinibatches < 1 || UpdateEpochs < 1) throw new ArgumentException($"PpoAgentConfig: NumMinibatches ({NumMinibatches}) and UpdateEpochs ({UpdateEpochs}) must be 1 or more.");
        if (BatchSize % NumMinibatches != 0)
            throw new ArgumentException($"PpoAgentConfig: NumEnvs·NumSteps = {BatchSize} is not divisible by NumMinibatches = {NumMinibatches}; choose sizes whose product splits evenly (e.g. 4 envs × 128 steps, 4 minibatches).");
        if (NormAdv && MinibatchSize < 2) throw new ArgumentException($"PpoAgentConfig: minibatches of {MinibatchSize} sample cannot be whitened (NormAdv); use fewer minibatches or set NormAdv = false.");
        if (NumIterations < 1) throw new ArgumentException($"PpoAgentConfig: TotalTimesteps {TotalTimesteps} is less than one rollout of NumEnvs·NumSteps = {BatchSize}; raise TotalTimesteps.");
        if (!(LearningRate > 0)) throw new ArgumentException($"PpoAgentConfig: LearningRate is {LearningRate}; use a positive rate such as 2.5e-4.");
    }
}

/// <summary>One PPO minibatch: flat samples from a rollout.</summary>
/// <param name="Observations">float32 <c>[m, obsSize]</c>.</param>
/// <param name="Actions">int64 <c>[m]</c>.</param>
/// <param name="OldLogProbs">log π_old(a|s) at collection time, <c>[m]</c>.</param>
/// <param name="Advantages">GAE advantages, <c>[m]</c> (not yet normalized).</param>
/// <param name="Returns">Value targets (advantages + values), <c>[m]</c>.</param>
/// <param name="OldValues">Values at collection time, <c>[m]</c>.</param>
public sealed record PpoAgentMinibatch(Tensor Observations, Tensor Actions, Tensor OldLogProbs, Tensor Advantages, Tensor Returns, Tensor OldValues);

/// <summary>
/// PPO's loss as a <see cref="ITrainingObjective{TBatch}"/> (CleanRL's update step): <c>pg_loss − ent_coef·entropy + vf_coef·v_loss</c>
/// with the clipped surrogate, the (optionally clipped) value loss and minibatch-whitened advantages. Metrics in CleanRL's
/// names: <c>losses/policy_loss</c>, <c>losses/value_loss</c>, <c>losses/entropy</c>, <c>losses/approx_kl</c>,
/// <c>losses/old_approx_kl</c>, <c>losses/clipfrac</c>.
/// </summary>
public sealed class PpoAgentObjective : ITrainingObjective<PpoAgentMinibatch>
{
    /// <summary>Creates the objective for <paramref name="agent"/> with <paramref name="config"/>'s coefficients.</summary>
    public PpoAgentObjective(ActorCritic agent, PpoAgentConfig config)
    {
        Agent = agent ?? throw new ArgumentNullException(nameof(agent));
        Config = config ?? throw new ArgumentNullException(nameof(config));
    }

    /// <summary>The actor-critic being trained.</summary>
    public ActorCritic Agent { get; }
    /// <summary>Coefficients: clip, entropy and value weights, advantage normalization.</summary>
    public PpoAgentConfig Config { get; }
    /// <inheritdoc/>
    public nn.Module Model => Agent;

    /// <inheritdoc/>
    public ObjectiveOutput Compute(PpoAgentMinibatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var (logits, values) = Agent.call(batch.Observations);
        var newLogProbs = PolicyGradient.LogProbs(logits, batch.Actions);
        var entropy = PolicyGradient.Entropy(logits).mean();
        var advantages = Config.NormAdv ? Alignment.Advantages.MaskedWhiten(batch.Advantages) : batch.Advantages;
        var pg = PolicyGradient.ClippedSurrogateLoss(newLogProbs, batch.OldLogProbs, advantages, Config.ClipCoef);
        var vLoss = PolicyGradient.ValueLoss(values, batch.Returns, batch.OldValues, Config.ClipVLoss ? Config.ClipCoef : null);
        var loss = pg.Loss - Config.EntCoef * entropy + Config.VfCoef * vLoss;
        return new ObjectiveOutput(loss, new Dictionary<string, Tensor>
        {
            ["losses/policy_loss"] = pg.Loss,
            ["losses/value_loss"] = vLoss,
            ["losses/entropy"] = entropy,
            ["losses/approx_kl"] = pg.ApproxKl,
            ["losses/old_approx_kl"] = pg.OldApproxKl,
            ["losses/clipfrac"] = pg.ClipFraction,
        });
    }
}

/// <summary>One finished training episode.</summary>
/// <param name="GlobalStep">Environment steps taken (all environments) when it finished.</param>
/// <param name="Return">Undiscounted return.</param>
/// <param name="Length">Steps.</param>
public sealed record EpisodeRecord(long GlobalStep, double Return, int Length);

/// <summary>One PPO iteration (rollout + updates): CleanRL's logged scalars, the losses averaged over the iteration's updates.</summary>
public sealed record PpoIteration(int Iteration, long GlobalStep, double LearningRate, double? MeanEpisodicReturn, int EpisodesFinished,
    double PolicyLoss, double ValueLoss, double Entropy, double ApproxKl, double ClipFraction, double ExplainedVariance, double ElapsedSeconds);

/// <summary>
/// Proximal Policy Optimization for discrete actions, with the semantics of CleanRL's <c>ppo.py</c>: <see cref="PpoAgentConfig.NumEnvs"/>
/// environments in a <see cref="VectorEnv"/>, rollouts of <see cref="PpoAgentConfig.NumSteps"/> steps, GAE through
/// <see cref="Alignment.Advantages.Gae"/> (episode ends stop the recursion; the last state's value is the bootstrap), then
/// <see cref="PpoAgentConfig.UpdateEpochs"/> epochs over shuffled minibatches of the clipped objective.
/// <para>The gradient steps run through the library's one training loop: a <see cref="Trainer{TBatch}"/> with
/// <see cref="PpoAgentObjective"/> (Adam with ε = 1e-5, no weight decay, global-norm clipping at <see cref="PpoAgentConfig.MaxGradNorm"/>,
/// linear learning-rate decay). The trainer's batch source does the RL part: at the first update of each iteration it
/// collects a rollout and computes advantages, then it serves that rollout's minibatches. One difference from CleanRL:
/// with <see cref="PpoAgentConfig.AnnealLr"/> the trainer decays the rate per update (<c>lr·(1 − u/U)</c> over all U updates)
/// rather than once per iteration; the two curves differ by less than one iteration's step. CleanRL's optional
/// <c>target_kl</c> early stop is not offered (the trainer runs a fixed number of updates; it is off by default in CleanRL too).</para>
/// </summary>
public sealed class Ppo
{
    readonly Func<IEnvironment> _envFactory;
    readonly VectorEnv _env;
    readonly Random _actionRng;
    readonly List<EpisodeRecord> _episodes = new();
    readonly List<PpoIteration> _iterations = new();
    float[] _nextObs = Array.Empty<float>();
    // The current rollout, flat in [env, step] order (index e·T + t), as GAE wants it.
    float[] _obs = Array.Empty<float>(), _logProbs = Array.Empty<float>(), _values = Array.Empty<float>(), _advantages = Array.Empty<float>(), _returns = Array.Empty<float>();
    long[] _actions = Array.Empty<long>();
    int[] _order = Array.Empty<int>();
    bool _trained;

    /// <summary>Builds the environments (<see cref="PpoAgentConfig.NumEnvs"/> copies from <paramref name="envFactory"/>), the agent and the trainer.</summary>
    public Ppo(Func<IEnvironment> envFactory, PpoAgentConfig? config = null)
    {
        _envFactory = envFactory ?? throw new ArgumentNullException(nameof(envFactory));
        Config = config ?? new PpoAgentConfig();
        Config.Validate();
        TorchRuntime.EnsureLoaded();
        _env = new VectorEnv(envFactory, Config.NumEnvs);
        Agent = new ActorCritic(_env.ObservationSize, _env.ActionCount, Config.HiddenSize, seed: Config.Seed);
        _actionRng = new Random(Config.Seed);
        Trainer = new Trainer<PpoAgentMinibatch>(new PpoAgentObjective(Agent, Config), new TrainerConfig
        {
            Optimizer = TrainerOptimizer.Adam,
            LearningRate = Config.LearningRate,
            AdamEpsilon = 1e-5,
            WeightDecay = 0,
            MaxGradNorm = Config.MaxGradNorm,
            LrSchedulerType = Config.AnnealLr ? LrSchedulerType.Linear : LrSchedulerType.Constant,
            MaxSteps = UpdatesPerIteration * Config.NumIterations,
            BatchSize = Config.MinibatchSize,
            EvalEvery = 0,
            Seed = Config.Seed,
            ConsoleProgress = false,
        });
    }

    /// <summary>The hyper-parameters.</summary>
    public PpoAgentConfig Config { get; }
    /// <summary>The actor-critic.</summary>
    public ActorCritic Agent { get; }
    /// <summary>The library trainer that runs the gradient steps (its <see cref="Trainer{TBatch}.History"/> has every update's losses).</summary>
    public Trainer<PpoAgentMinibatch> Trainer { get; }
    /// <summary>Every training episode that finished, in order.</summary>
    public IReadOnlyList<EpisodeRecord> Episodes => _episodes;
    /// <summary>One record per iteration.</summary>
    public IReadOnlyList<PpoIteration> Iterations => _iterations;
    /// <summary>Environment steps taken so far.</summary>
    public long GlobalStep { get; private set; }
    /// <summary>Optimizer updates per iteration: UpdateEpochs · NumMinibatches.</summary>
    public int UpdatesPerIteration => Config.UpdateEpochs * Config.NumMinibatches;
    /// <summary>Where live progress goes (null: <see cref="Progress.SinkFactory"/> when <see cref="PpoAgentConfig.ShowProgress"/>).</summary>
    public IProgressSink? ProgressSink { get; set; }

    /// <summary>Runs all <see cref="PpoAgentConfig.NumIterations"/> iterations; returns the per-iteration records.</summary>
    public IReadOnlyList<PpoIteration> Train()
    {
        if (_trained) throw new InvalidOperationException("Ppo.Train was already called on this instance; build a new Ppo to train again.");
        _trained = true;
        _nextObs = _env.Reset(Config.Seed);
        var sink = ProgressSink ?? (Config.ShowProgress ? Progress.SinkFactory() : null);
        using var live = sink is null ? null : Progress.Start("PPO", (long)Config.NumIterations * Config.BatchSize, sink);
        var clock = Stopwatch.StartNew();
        int episodesBefore = 0;
        int upi = UpdatesPerIteration;
        Trainer.Train((update, rng) =>
        {
            int k = update % upi;
            if (k == 0)
            {
                if (update > 0) Summarize(update / upi, ref episodesBefore, clock, live);
                CollectRollout();
            }
            if (k % Config.NumMinibatches == 0)
            {
                _order = Enumerable.Range(0, Config.BatchSize).ToArray();
                rng.Shuffle(_order);
            }
            return Minibatch(k % Config.NumMinibatches);
        });
        Summarize(Config.NumIterations, ref episodesBefore, clock, live);
        return _iterations;
    }

    void Summarize(int iteration, ref int episodesBefore, Stopwatch clock, Progress? live)
    {
        var records = Trainer.Records.Skip((iteration - 1) * UpdatesPerIteration).Take(UpdatesPerIteration).ToArray();
        double M(string key) => records.Average(r => r.Metrics != null && r.Metrics.TryGetValue(key, out var v) ? v : double.NaN);
        var finished = _episodes.Skip(episodesBefore).ToArray();
        episodesBefore = _episodes.Count;
        double? meanReturn = finished.Length > 0 ? finished.Average(e => e.Return) : null;
        var rec = new PpoIteration(iteration, GlobalStep, records[0].LearningRate, meanReturn, finished.Length,
            M("losses/policy_loss"), M("losses/value_loss"), M("losses/entropy"), M("losses/approx_kl"), M("losses/clipfrac"),
            ExplainedVariance(), clock.Elapsed.TotalSeconds);
        _iterations.Add(rec);
        if (live != null)
        {
            var shown = new List<(string, double)> { ("sps", GlobalStep / Math.Max(1e-9, clock.Elapsed.TotalSeconds)), ("value_loss", rec.ValueLoss), ("entropy", rec.Entropy) };
            var recent = _episodes.TakeLast(20).ToArray();
            if (recent.Length > 0) shown.Insert(0, ("episodic_return", recent.Average(e => e.Return)));
            live.Report(GlobalStep, shown.ToArray());
        }
    }

    double ExplainedVariance()
    {
        // 1 − Var(returns − values) / Var(returns) over the rollout (CleanRL's explained_variance).
        double meanR = _returns.Average(x => (double)x);
        double varR = _returns.Average(x => (x - meanR) * (x - meanR));
        if (varR == 0) return double.NaN;
        var diff = _returns.Zip(_values, (r, v) => (double)r - v).ToArray();
        double meanD = diff.Average();
        return 1 - diff.Average(x => (x - meanD) * (x - meanD)) / varR;
    }

    void CollectRollout()
    {
        int n = Config.NumEnvs, T = Config.NumSteps, d = _env.ObservationSize;
        _obs = new float[n * T * d];
        _actions = new long[n * T];
        _logProbs = new float[n * T];
        _values = new float[n * T];
        var rewards = new float[n * T];
        var dones = new bool[n * T];
        for (int t = 0; t < T; t++)
        {
            for (int e = 0; e < n; e++) Array.Copy(_nextObs, e * d, _obs, (e * T + t) * d, d);
            var (actions, logProbs, values) = PolicySampling.Act(Agent, _nextObs, _actionRng);
            var step = _env.Step(actions);
            GlobalStep += n;
            for (int e = 0; e < n; e++)
            {
                int j = e * T + t;
                _actions[j] = actions[e];
                _logProbs[j] = logProbs[e];
                _values[j] = values[e];
                rewards[j] = (float)step.Rewards[e];
                dones[j] = step.Done(e);
                if (step.EpisodeReturns[e] is { } ret) _episodes.Add(new EpisodeRecord(GlobalStep, ret, step.EpisodeLengths[e]!.Value));
            }
            if (Config.BootstrapTruncated) AddTruncationBootstrap(step, rewards, t);
            _nextObs = step.Observations;
        }
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var nextValue = Agent.GetValue(torch.tensor(_nextObs, new long[] { n, d }));
        var (adv, ret2) = Alignment.Advantages.Gae(torch.tensor(rewards, new long[] { n, T }), torch.tensor(_values, new long[] { n, T }),
            Config.Gamma, Config.GaeLambda, nextValue, torch.tensor(dones, new long[] { n, T }));
        _advantages = adv.contiguous().data<float>().ToArray();
        _returns = ret2.contiguous().data<float>().ToArray();
    }

    void AddTruncationBootstrap(VectorStep step, float[] rewards, int t)
    {
        int n = Config.NumEnvs, T = Config.NumSteps, d = _env.ObservationSize;
        var cut = Enumerable.Range(0, n).Where(e => step.Truncated[e] && !step.Terminated[e]).ToArray();
        if (cut.Length == 0) return;
        var finals = cut.SelectMany(e => step.FinalObservations[e]!).ToArray();
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var v = Agent.GetValue(torch.tensor(finals, new long[] { cut.Length, d })).data<float>().ToArray();
        for (int i = 0; i < cut.Length; i++) rewards[cut[i] * T + t] += (float)(Config.Gamma * v[i]);
    }

    PpoAgentMinibatch Minibatch(int index)
    {
        int m = Config.MinibatchSize, d = _env.ObservationSize;
        var obs = new float[m * d];
        var actions = new long[m];
        var logp = new float[m];
        var adv = new float[m];
        var ret = new float[m];
        var val = new float[m];
        for (int i = 0; i < m; i++)
        {
            int j = _order[index * m + i];
            Array.Copy(_obs, j * d, obs, i * d, d);
            (actions[i], logp[i], adv[i], ret[i], val[i]) = (_actions[j], _logProbs[j], _advantages[j], _returns[j], _values[j]);
        }
        var device = Trainer.Device;
        return new PpoAgentMinibatch(torch.tensor(obs, new long[] { m, d }, device: device), torch.tensor(actions, device: device),
            torch.tensor(logp, device: device), torch.tensor(adv, device: device), torch.tensor(ret, device: device), torch.tensor(val, device: device));
    }

    /// <summary>Plays <paramref name="episodes"/> episodes with the trained agent (see <see cref="PolicySampling.Evaluate"/>) and returns their returns.</summary>
    public double[] Evaluate(int episodes = 100, int seed = 10_000, bool greedy = true) =>
        PolicySampling.Evaluate(Agent, _envFactory, episodes, seed, greedy);
}
