using SafetyNotebooks.Models;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// Settings shared by the group-baseline methods (<see cref="GrpoConfig"/>, <see cref="RlooConfig"/>), named as TRL's
/// <c>GRPOConfig</c>/<c>RLOOConfig</c>: k = <see cref="NumGenerations"/> completions per prompt, β (<see cref="Beta"/>),
/// the clip ε (<see cref="Epsilon"/>, <see cref="EpsilonHigh"/>), μ = <see cref="NumIterations"/> passes per rollout.
/// </summary>
public abstract record GroupRolloutConfig
{
    /// <summary>Completions per prompt, k (TRL's <c>num_generations</c>).</summary>
    public abstract int NumGenerations { get; init; }
    /// <summary>KL coefficient β (TRL's <c>beta</c>); 0 skips the reference model.</summary>
    public abstract double Beta { get; init; }
    /// <summary>Rollouts to collect and train on. Default 100.</summary>
    public int NumTotalBatches { get; init; } = 100;
    /// <summary>Passes over each rollout, μ (TRL's <c>num_iterations</c>). Default 1.</summary>
    public int NumIterations { get; init; } = 1;
    /// <summary>Optimizer steps per pass: the rollout is split into this many mini-batches. Default 1.</summary>
    public int NumMiniBatches { get; init; } = 1;
    /// <summary>Lower clip ε (TRL's <c>epsilon</c>). Default 0.2.</summary>
    public double Epsilon { get; init; } = 0.2;
    /// <summary>Upper clip (TRL's <c>epsilon_high</c>); null: same as <see cref="Epsilon"/>.</summary>
    public double? EpsilonHigh { get; init; }
    /// <summary>Most new tokens per completion (TRL's <c>max_completion_length</c>). Default 256.</summary>
    public int MaxCompletionLength { get; init; } = 256;
    /// <summary>Sampling temperature (TRL's <c>temperature</c>). Default 1.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>The EOS (stop) token; null: completions always run <see cref="MaxCompletionLength"/> tokens.</summary>
    public long? EosTokenId { get; init; }
    /// <summary>Filler after a completion's end. Default: the EOS id.</summary>
    public long? PadTokenId { get; init; }
    /// <summary>Seed of the sampling (rollout i samples with seed + i). Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>The generation options rollout <paramref name="rolloutIndex"/> uses.</summary>
    public GenerationOptions Generation(int rolloutIndex) => new()
    {
        MaxNewTokens = MaxCompletionLength, DoSample = true, Temperature = Temperature, EosTokenId = EosTokenId, PadTokenId = PadTokenId,
        Seed = Seed + rolloutIndex,
    };

    /// <summary>Checks the shared values; throws naming the field and the fix.</summary>
    protected void ValidateShared(string name)
    {
        if (NumGenerations < 2) throw new ArgumentException($"{name}.NumGenerations is {NumGenerations}; a group baseline needs at least 2 completions per prompt.");
        if (!(Beta >= 0)) throw new ArgumentException($"{name}.Beta is {Beta}; set it to 0 (no KL term) or more.");
        if (NumTotalBatches < 1 || NumIterations < 1 || NumMiniBatches < 1)
            throw new ArgumentException($"{name}.NumTotalBatches ({NumTotalBatches}), NumIterations ({NumIterations}) and NumMiniBatches ({NumMiniBatches}) must each be 1 or more.");
        if (!(Epsilon > 0) || EpsilonHigh is double h && !(h > 0)) throw new ArgumentException($"{name}.Epsilon ({Epsilon}) and EpsilonHigh ({EpsilonHigh}) must be > 0.");
        if (MaxCompletionLength < 1) throw new ArgumentException($"{name}.MaxCompletionLength is {MaxCompletionLength}; set it to 1 or more.");
        if (!(Temperature > 0)) throw new ArgumentException($"{name}.Temperature is {Temperature}; set it above 0 (rollouts sample).");
    }
}

/// <summary>One mini-batch of a group rollout: completions, their old and reference log-probs and one advantage per completion.</summary>
public sealed record GroupMinibatch(Tensor QueryResponses, Tensor? AttentionMask, int ContextLength, Tensor ResponseMask,
    Tensor OldLogProbs, Tensor? RefLogProbs, Tensor Advantages, IReadOnlyDictionary<string, double>? RolloutMetrics = null);

/// <summary>A group rollout: k completions per prompt (rows <c>g·k … g·k + k − 1</c> share prompt g), their scores and advantages.</summary>
public sealed class GroupRollout : IDisposable
{
    /// <summary>The completions and log-probs.</summary>
    public required Rollout Rollout { get; init; }
    /// <summary>One advantage per completion, float <c>[batch]</c>.</summary>
    public required Tensor Advantages { get; init; }
    /// <summary>TRL's rollout metrics (<c>reward</c>, <c>reward_std</c>, <c>frac_reward_zero_std</c>, <c>completions/mean_length</c>, <c>completions/clipped_ratio</c>, …).</summary>
    public required IReadOnlyDictionary<string, double> Metrics { get; init; }

    /// <summary>Rows <paramref name="rows"/> as a mini-batch.</summary>
    public GroupMinibatch Slice(long[] rows)
    {
        var idx = torch.tensor(rows, device: Advantages.device);
        Tensor S(Tensor t) => t.index_select(0, idx);
        var r = Rollout;
        return new GroupMinibatch(S(r.QueryResponses), r.AttentionMask is null ? null : S(r.AttentionMask), r.ContextLength, S(r.ResponseMask),
            S(r.LogProbs), r.RefLogProbs is null ? null : S(r.RefLogProbs), S(Advantages), Metrics);
    }

    /// <summary>Takes the tensors out of every dispose scope (the caller owns them).</summary>
    public void DetachFromDisposeScopes() { Rollout.DetachFromDisposeScopes(); Advantages.DetachFromDisposeScope(); }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose() { Rollout.Dispose(); Advantages.Dispose(); }
}

/// <summary>
/// The loop shared by <see cref="GrpoTrainer"/> and <see cref="RlooTrainer"/>: each rollout repeats every prompt k times,
/// samples with the KV cache, scores, turns the scores into one advantage per completion with the method's group
/// baseline, then trains μ passes of mini-batches through the library's one <see cref="Trainer{TBatch}"/>.
/// </summary>
public abstract class GroupRolloutTrainer : IDisposable
{
    readonly List<Dictionary<string, double>> _rolloutMetrics = new();
    readonly List<Dictionary<string, double>> _stats = new();
    OnPolicySchedule<GroupRollout, GroupMinibatch>? _schedule;
    readonly GroupRolloutConfig _config;

    /// <summary>Sets up the trainer (MaxSteps of <paramref name="trainerConfig"/> becomes NumTotalBatches × NumIterations × NumMiniBatches).</summary>
    protected GroupRolloutTrainer(HookedTransformer model, HookedTransformer? reference, ScoreFunction score, GroupRolloutConfig config,
        ITrainingObjective<GroupMinibatch> objective, TrainerConfig? trainerConfig)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Score = score ?? throw new ArgumentNullException(nameof(score));
        _config = config;
        if (config.Beta != 0 && reference is null)
            throw new ArgumentException($"Beta is {config.Beta} but no reference model was given; pass Rollouts.FrozenReference(model), or set Beta = 0.", nameof(reference));
        if (reference is not null && ReferenceEquals(reference, model))
            throw new ArgumentException("The reference model is the policy itself; pass a frozen copy (Rollouts.FrozenReference(model)).", nameof(reference));
        Reference = config.Beta != 0 ? reference : null;
        var tc = (trainerConfig ?? new TrainerConfig()) with { MaxSteps = config.NumTotalBatches * config.NumIterations * config.NumMiniBatches };
        Trainer = new Trainer<GroupMinibatch>(objective, tc);
    }

    /// <summary>The policy (trained).</summary>
    public HookedTransformer Model { get; }
    /// <summary>The frozen reference model, or null when β = 0.</summary>
    public HookedTransformer? Reference { get; }
    /// <summary>The score function.</summary>
    public ScoreFunction Score { get; }
    /// <summary>The trainer (one <c>History</c> row per optimizer step).</summary>
    public Trainer<GroupMinibatch> Trainer { get; }
    /// <summary>Called with each new rollout.</summary>
    public Action<int, GroupRollout>? OnRollout { get; set; }
    /// <summary>One dictionary per rollout: its rollout metrics and the averages of the step metrics over its updates (TRL's names).</summary>
    public IReadOnlyList<IReadOnlyDictionary<string, double>> Stats => _stats;

    /// <summary>One advantage per completion from the (penalised) scores, float <c>[batch]</c>, plus metrics to log.</summary>
    protected abstract Tensor GroupAdvantages(Rollout rollout, Dictionary<string, double> metrics);

    /// <summary>
    /// Runs the remaining rollouts. <paramref name="prompts"/> returns rollout i's distinct prompts (each is repeated
    /// <see cref="GroupRolloutConfig.NumGenerations"/> times); prompts × k must be a multiple of NumMiniBatches × accumulation.
    /// </summary>
    public IReadOnlyList<IReadOnlyDictionary<string, double>> Train(Func<int, Random, PromptBatch> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        _schedule ??= new OnPolicySchedule<GroupRollout, GroupMinibatch>(
            (i, rng) => CollectRollout(i, prompts(i, rng)), r => r.DetachFromDisposeScopes(), r => (int)r.Rollout.BatchSize, (r, rows) => r.Slice(rows),
            _config.NumIterations, _config.NumMiniBatches, Trainer.Config.GradientAccumulationSteps)
        { OnRollout = (i, r) => OnRollout?.Invoke(i, r) };
        var schedule = _schedule;
        Trainer.Train((step, rng) => schedule.Next(step, rng));
        _stats.Clear();
        int per = _config.NumIterations * _config.NumMiniBatches;
        for (int i = 0; i < _rolloutMetrics.Count; i++)
        {
            var steps = Trainer.Records.Skip(i * per).Take(per).Where(r => r.Metrics != null).ToList();
            if (steps.Count == 0) continue;
            var d = new Dictionary<string, double>(_rolloutMetrics[i]);
            foreach (var key in steps[0].Metrics!.Keys.Where(k => !d.ContainsKey(k))) d[key] = steps.Average(r => r.Metrics![key]);
            d["loss"] = steps.Average(r => r.Loss);
            _stats.Add(d);
        }
        return _stats;
    }

    /// <summary>Collects rollout <paramref name="index"/>: every prompt of <paramref name="prompts"/> k times, scores and group advantages.</summary>
    public GroupRollout CollectRollout(int index, PromptBatch prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        using var noGrad = torch.no_grad();
        Rollout rollout;
        using (var s = torch.NewDisposeScope())
        {
            int k = _config.NumGenerations;
            var repeated = new PromptBatch(prompts.Tokens.repeat_interleave(k, 0), prompts.AttentionMask?.repeat_interleave(k, 0));
            rollout = Rollouts.Collect(Model, Reference, repeated, Score, _config.Generation(index));
            rollout.DetachFromDisposeScopes();
        }
        try
        {
            using var scope = torch.NewDisposeScope();
            var lengths = rollout.ResponseMask.to_type(ScalarType.Float32).sum(1);
            var metrics = new Dictionary<string, double>
            {
                ["completions/mean_length"] = lengths.mean().item<float>(),
                ["completions/clipped_ratio"] = rollout.ContainsEos.logical_not().to_type(ScalarType.Float32).mean().item<float>(),
            };
            var adv = GroupAdvantages(rollout, metrics);
            _rolloutMetrics.Add(metrics);
            return new GroupRollout { Rollout = rollout, Advantages = adv.MoveToOuterDisposeScope(), Metrics = metrics };
        }
        catch
        {
            rollout.Dispose();
            throw;
        }
    }

    /// <summary>Per-group reward statistics TRL logs: <c>reward</c>, <c>reward_std</c> (unbiased), <c>frac_reward_zero_std</c>.</summary>
    protected static void AddRewardMetrics(Tensor rewards, int k, Dictionary<string, double> metrics)
    {
        using var scope = torch.NewDisposeScope();
        var groupStd = rewards.view(-1, k).std(1, unbiased: true);
        metrics["reward"] = rewards.mean().item<float>();
        metrics["reward_std"] = rewards.numel() > 1 ? rewards.std(unbiased: true).item<float>() : 0;
        metrics["frac_reward_zero_std"] = groupStd.abs().lt(1e-8).to_type(ScalarType.Float32).mean().item<float>();
    }

    /// <summary>Disposes the last rollout.</summary>
    public void Dispose() => _schedule?.Dispose();
}
