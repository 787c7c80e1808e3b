using System.Diagnostics;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment.Rl;

/// <summary>What REINFORCE subtracts from the return before weighting the log-probability.</summary>
public enum ReinforceBaseline
{
    /// <summary>Nothing: the plain estimator (unbiased, high variance).</summary>
    None,
    /// <summary>The batch's mean return-to-go (a constant: still unbiased).</summary>
    MeanReturn,
    /// <summary>A learned state value V(s) (the critic of <see cref="ActorCritic"/>, trained on the returns with its own loss).</summary>
    ValueFunction,
}

/// <summary>REINFORCE hyper-parameters.</summary>
public sealed record ReinforceConfig
{
    /// <summary>Complete episodes per update (one per environment copy). Default 16.</summary>
    public int EpisodesPerBatch { get; init; } = 16;
    /// <summary>Updates (each on a fresh batch of episodes). Default 200.</summary>
    public int Iterations { get; init; } = 200;
    /// <summary>Adam learning rate. Default 3e-3.</summary>
    public double LearningRate { get; init; } = 3e-3;
    /// <summary>Discount γ for the returns-to-go. Default 0.99.</summary>
    public double Gamma { get; init; } = 0.99;
    /// <summary>The baseline. Default <see cref="ReinforceBaseline.ValueFunction"/>.</summary>
    public ReinforceBaseline Baseline { get; init; } = ReinforceBaseline.ValueFunction;
    /// <summary>Weight of the value loss when the baseline is learned. Default 0.5.</summary>
    public double VfCoef { get; init; } = 0.5;
    /// <summary>Global gradient-norm clip; ≤ 0 disables. Default 1.0.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Hidden width of the MLPs. Default 64.</summary>
    public int HiddenSize { get; init; } = 64;
    /// <summary>Seeds the networks, environments and action sampling. Default 1.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Show live progress. Default true.</summary>
    public bool ShowProgress { get; init; } = true;
}

/// <summary>A REINFORCE batch: every step of a set of complete episodes, flat.</summary>
/// <param name="Observations">float32 <c>[m, obsSize]</c>.</param>
/// <param name="Actions">int64 <c>[m]</c>.</param>
/// <param name="Returns">Discounted return-to-go Gₜ from each step, <c>[m]</c>.</param>
public sealed record ReinforceBatch(Tensor Observations, Tensor Actions, Tensor Returns);

/// <summary>
/// REINFORCE with a baseline as a <see cref="ITrainingObjective{TBatch}"/>: <see cref="PolicyGradient.ReinforceLoss"/> with the
/// configured baseline, plus <c>vf_coef · ½·mean((V − G)²)</c> when the baseline is the learned value. Metrics
/// <c>losses/policy_loss</c>, <c>losses/value_loss</c> (learned baseline only), <c>losses/entropy</c>.
/// </summary>
public sealed class ReinforceObjective : ITrainingObjective<ReinforceBatch>
{
    /// <summary>Creates the objective.</summary>
    public ReinforceObjective(ActorCritic agent, ReinforceConfig config)
    {
        Agent = agent ?? throw new ArgumentNullException(nameof(agent));
        Config = config ?? throw new ArgumentNullException(nameof(config));
    }

    /// <summary>The policy (and, for the learned baseline, the critic).</summary>
    public ActorCritic Agent { get; }
    /// <summary>Baseline choice and value weight.</summary>
    public ReinforceConfig Config { get; }
    /// <inheritdoc/>
    public nn.Module Model => Agent;

    /// <inheritdoc/>
    public ObjectiveOutput Compute(ReinforceBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var (logits, values) = Agent.call(batch.Observations);
        var logProbs = PolicyGradient.LogProbs(logits, batch.Actions);
        var metrics = new Dictionary<string, Tensor> { ["losses/entropy"] = PolicyGradient.Entropy(logits).mean().detach() };
        Tensor loss;
        switch (Config.Baseline)
        {
            case ReinforceBaseline.None:
                loss = PolicyGradient.ReinforceLoss(logProbs, batch.Returns);
                metrics["losses/policy_loss"] = loss.detach();
                break;
            case ReinforceBaseline.MeanReturn:
                loss = PolicyGradient.ReinforceLoss(logProbs, batch.Returns, batch.Returns.mean().expand_as(batch.Returns));
                metrics["losses/policy_loss"] = loss.detach();
                break;
            default:
                var pg = PolicyGradient.ReinforceLoss(logProbs, batch.Returns, values.detach());
                var vLoss = PolicyGradient.ValueLoss(values, batch.Returns);
                metrics["losses/policy_loss"] = pg.detach();
                metrics["losses/value_loss"] = vLoss.detach();
                loss = pg + Config.VfCoef * vLoss;
                break;
        }
        return new ObjectiveOutput(loss, metrics);
    }
}

/// <summary>
/// REINFORCE (Williams 1992) with a baseline: each update plays <see cref="ReinforceConfig.EpisodesPerBatch"/> complete
/// episodes with the current policy (one per environment copy, in lockstep), computes every step's discounted
/// return-to-go with <see cref="Alignment.Advantages.Gae"/> (λ = 1 and zero values give exactly Σₖ γᵏ rₜ₊ₖ, stopping at the
/// episode's end), and takes one gradient step of <see cref="ReinforceObjective"/> through the library's
/// <see cref="Trainer{TBatch}"/> (Adam, global-norm clipping, constant rate).
/// </summary>
public sealed class Reinforce
{
    readonly Func<IEnvironment> _envFactory;
    readonly VectorEnv _env;
    readonly Random _actionRng;
    readonly List<EpisodeRecord> _episodes = new();
    readonly List<double> _meanReturns = new();
    bool _trained;
    long _globalStep;

    /// <summary>Builds the environments, the agent and the trainer.</summary>
    public Reinforce(Func<IEnvironment> envFactory, ReinforceConfig? config = null)
    {
        _envFactory = envFactory ?? throw new ArgumentNullException(nameof(envFactory));
        Config = config ?? new ReinforceConfig();
        if (Config.EpisodesPerBatch < 1 || Config.Iterations < 1)
            throw new ArgumentException($"ReinforceConfig: EpisodesPerBatch ({Config.EpisodesPerBatch}) and Iterations ({Config.Iterations}) must be 1 or more.");
        TorchRuntime.EnsureLoaded();
        _env = new VectorEnv(envFactory, Config.EpisodesPerBatch);
        Agent = new ActorCritic(_env.ObservationSize, _env.ActionCount, Config.HiddenSize, seed: Config.Seed);
        _actionRng = new Random(Config.Seed);
        Trainer = new Trainer<ReinforceBatch>(new ReinforceObjective(Agent, Config), new TrainerConfig
        {
            Optimizer = TrainerOptimizer.Adam,
            LearningRate = Config.LearningRate,
            WeightDecay = 0,
            MaxGradNorm = Config.MaxGradNorm,
            LrSchedulerType = LrSchedulerType.Constant,
            MaxSteps = Config.Iterations,
            BatchSize = Config.EpisodesPerBatch,
            EvalEvery = 0,
            Seed = Config.Seed,
            ConsoleProgress = false,
        });
    }

    /// <summary>The hyper-parameters.</summary>
    public ReinforceConfig Config { get; }
    /// <summary>The policy (actor) and baseline (critic).</summary>
    public ActorCritic Agent { get; }
    /// <summary>The library trainer running the gradient steps.</summary>
    public Trainer<ReinforceBatch> Trainer { get; }
    /// <summary>Every training episode, in order.</summary>
    public IReadOnlyList<EpisodeRecord> Episodes => _episodes;
    /// <summary>The mean undiscounted return of each update's batch of episodes.</summary>
    public IReadOnlyList<double> MeanReturns => _meanReturns;
    /// <summary>Where live progress goes (null: <see cref="Progress.SinkFactory"/> when <see cref="ReinforceConfig.ShowProgress"/>).</summary>
    public IProgressSink? ProgressSink { get; set; }

    /// <summary>Runs all updates; returns the mean return of each batch.</summary>
    public IReadOnlyList<double> Train()
    {
        if (_trained) throw new InvalidOperationException("Reinforce.Train was already called on this instance; build a new Reinforce to train again.");
        _trained = true;
        var sink = ProgressSink ?? (Config.ShowProgress ? Progress.SinkFactory() : null);
        using var live = sink is null ? null : Progress.Start("REINFORCE", Config.Iterations, sink);
        bool first = true;
        Trainer.Train((update, rng) =>
        {
            if (live != null && update > 0) live.Report(update, ("episodic_return", _meanReturns[^1]));
            var batch = CollectEpisodes(first ? Config.Seed : null);
            first = false;
            return batch;
        });
        live?.Report(Config.Iterations, ("episodic_return", _meanReturns[^1]));
        return _meanReturns;
    }

    /// <summary>
    /// Plays one batch of complete episodes with the current policy (the environments reseeded with <paramref name="seed"/>,
    /// or continuing their generators when null) and returns every step with its discounted return-to-go. Training calls
    /// this once per update; call it directly to inspect what an update sees.
    /// </summary>
    public ReinforceBatch CollectEpisodes(int? seed = null)
    {
        int n = Config.EpisodesPerBatch, d = _env.ObservationSize;
        var obs = _env.Reset(seed);
        var epObs = Enumerable.Range(0, n).Select(_ => new List<float>()).ToArray();
        var epActions = Enumerable.Range(0, n).Select(_ => new List<long>()).ToArray();
        var epRewards = Enumerable.Range(0, n).Select(_ => new List<float>()).ToArray();
        var finished = new bool[n];
        int steps = 0;
        while (!finished.All(f => f))
        {
            if (++steps > 1_000_000) throw new InvalidOperationException("REINFORCE: an episode ran for 1,000,000 steps without ending; give the environment a time limit (e.g. CartPole's maxEpisodeSteps).");
            var (actions, _, _) = PolicySampling.Act(Agent, obs, _actionRng);
            var step = _env.Step(actions);
            for (int e = 0; e < n; e++)
            {
                if (finished[e]) continue;
                _globalStep++;
                for (int k = 0; k < d; k++) epObs[e].Add(obs[e * d + k]);
                epActions[e].Add(actions[e]);
                epRewards[e].Add((float)step.Rewards[e]);
                if (step.Done(e))
                {
                    finished[e] = true;
                    _episodes.Add(new EpisodeRecord(_globalStep, step.EpisodeReturns[e]!.Value, step.EpisodeLengths[e]!.Value));
                }
            }
            obs = step.Observations;
        }
        _meanReturns.Add(_episodes.TakeLast(n).Average(x => x.Return));
        // Returns-to-go for every episode at once: pad to [n, Tmax] with a done flag at each episode's last step.
        int tMax = epRewards.Max(r => r.Count);
        var rewards = new float[n * tMax];
        var dones = new bool[n * tMax];
        for (int e = 0; e < n; e++)
        {
            epRewards[e].CopyTo(rewards, e * tMax);
            dones[e * tMax + epRewards[e].Count - 1] = true;
        }
        float[] rtg;
        using (torch.no_grad())
        using (var scope = torch.NewDisposeScope())
        {
            var r = torch.tensor(rewards, new long[] { n, tMax });
            var (returnsToGo, _) = Alignment.Advantages.Gae(r, torch.zeros_like(r), Config.Gamma, 1.0, dones: torch.tensor(dones, new long[] { n, tMax }));
            rtg = returnsToGo.contiguous().data<float>().ToArray();
        }
        var flatReturns = Enumerable.Range(0, n).SelectMany(e => Enumerable.Range(0, epRewards[e].Count).Select(t => rtg[e * tMax + t])).ToArray();
        int m = flatReturns.Length;
        var device = Trainer.Device;
        return new ReinforceBatch(torch.tensor(epObs.SelectMany(x => x).ToArray(), new long[] { m, d }, device: device),
            torch.tensor(epActions.SelectMany(x => x).ToArray(), device: device), torch.tensor(flatReturns, device: device));
    }

    /// <summary>Plays <paramref name="episodes"/> episodes with the trained policy (see <see cref="PolicySampling.Evaluate"/>).</summary>
    public double[] Evaluate(int episodes = 100, int seed = 10_000, bool greedy = true) =>
        PolicySampling.Evaluate(Agent, _envFactory, episodes, seed, greedy);
}
