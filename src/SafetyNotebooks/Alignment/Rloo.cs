using SafetyNotebooks.Models;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>RLOO settings (TRL's <c>RLOOConfig</c> names and defaults: <c>num_generations</c> 2, <c>beta</c> 0.05, <c>epsilon</c> 0.2, <c>normalize_advantages</c> false).</summary>
public sealed record RlooConfig : GroupRolloutConfig
{
    /// <inheritdoc/>
    public override int NumGenerations { get; init; } = 2;
    /// <inheritdoc/>
    public override double Beta { get; init; } = 0.05;
    /// <summary>Whiten the advantages over the batch (TRL's <c>normalize_advantages</c>). Default false.</summary>
    public bool NormalizeAdvantages { get; init; }

    /// <summary>Checks the values; throws naming the field and the fix.</summary>
    public RlooConfig Validate() { ValidateShared("RlooConfig"); return this; }
}

/// <summary>RLOO's leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024), as TRL's <c>RLOOTrainer</c>.</summary>
public static class RlooAdvantages
{
    /// <summary>
    /// Rewards <c>[G·k]</c> (k consecutive completions per prompt) → advantages: <c>rᵢ − (Σⱼ rⱼ − rᵢ)/(k − 1)</c>, the
    /// mean of the other completions of the same prompt as the baseline; with <paramref name="normalize"/> then
    /// <c>(A − mean A)/(std A + 1e−4)</c> over the batch (unbiased std).
    /// </summary>
    public static Tensor Compute(Tensor rewards, int k, bool normalize = false)
    {
        var grouped = GrpoAdvantages.Grouped(rewards, k);
        using var scope = torch.NewDisposeScope();
        var baseline = (grouped.sum(new long[] { 1 }, keepdim: true) - grouped) / (k - 1);
        var adv = (grouped - baseline).view(-1);
        if (normalize) adv = (adv - adv.mean()) / (adv.std(unbiased: true) + 1e-4);
        return adv.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// RLOO's loss as an objective (TRL's <c>RLOOTrainer</c>): a sequence-level ratio <c>ρ = exp(Σₜ log π − Σₜ log π_old)</c>
/// over each completion's tokens, loss = mean over completions of <c>−min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A)</c>.
/// The KL to the reference is in the reward (see <see cref="RlooTrainer"/>). Metrics: <c>entropy</c>, <c>clip_ratio/*</c>.
/// </summary>
public sealed class RlooObjective : ITrainingObjective<GroupMinibatch>
{
    /// <summary>Creates the objective.</summary>
    public RlooObjective(HookedTransformer model, RlooConfig config)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Config = (config ?? throw new ArgumentNullException(nameof(config))).Validate();
    }

    /// <summary>The policy.</summary>
    public HookedTransformer Model { get; }
    nn.Module ITrainingObjective<GroupMinibatch>.Model => Model;
    /// <summary>The settings.</summary>
    public RlooConfig Config { get; }

    /// <inheritdoc/>
    public ObjectiveOutput Compute(GroupMinibatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        int P = batch.ContextLength;
        long T = batch.ResponseMask.shape[1];
        var logits = Model.forward(batch.QueryResponses, batch.AttentionMask);
        var m = batch.ResponseMask.to_type(ScalarType.Float32);
        var logps = (Rollouts.CompletionLogProbs(logits, batch.QueryResponses, P, Config.Temperature) * m).sum(1);
        var oldLogps = (batch.OldLogProbs * m).sum(1);
        double lo = Config.Epsilon, hi = Config.EpsilonHigh ?? Config.Epsilon;
        var coef1 = (logps - oldLogps).exp();
        var coef2 = coef1.clamp(1 - lo, 1 + hi);
        var adv = batch.Advantages;
        var loss = (-torch.minimum(coef1 * adv, coef2 * adv)).mean();
        var metrics = new Dictionary<string, Tensor>();
        using (torch.no_grad())
        {
            metrics["entropy"] = Advantages.MaskedMean(Rollouts.CompletionEntropy(logits.detach(), P, T, Config.Temperature), batch.ResponseMask);
            var c = coef1.detach();
            var low = c.lt(1 - lo).logical_and(adv.lt(0));
            var high = c.gt(1 + hi).logical_and(adv.gt(0));
            metrics["clip_ratio/low_mean"] = low.to_type(ScalarType.Float32).mean();
            metrics["clip_ratio/high_mean"] = high.to_type(ScalarType.Float32).mean();
            metrics["clip_ratio/region_mean"] = low.logical_or(high).to_type(ScalarType.Float32).mean();
        }
        if (batch.RolloutMetrics is not null)
            foreach (var (key, v) in batch.RolloutMetrics) metrics[key] = torch.tensor(v, dtype: ScalarType.Float64);
        return new ObjectiveOutput(loss, metrics, torch.tensor((double)batch.QueryResponses.shape[0]));
    }
}

/// <summary>
/// RLOO (Ahmadian et al. 2024) as TRL's <c>RLOOTrainer</c>: k completions per prompt, reward = score − β·Σₜ k1 (the
/// sequence's summed log-ratio to the frozen reference), leave-one-out baseline (<see cref="RlooAdvantages"/>), and the
/// clipped sequence-level objective (<see cref="RlooObjective"/>). Shares the rollout code with PPO and GRPO.
/// </summary>
public sealed class RlooTrainer : GroupRolloutTrainer
{
    /// <summary>Creates the trainer; <paramref name="reference"/> may be null when β = 0.</summary>
    public RlooTrainer(HookedTransformer model, HookedTransformer? reference, ScoreFunction score, RlooConfig? config = null, TrainerConfig? trainerConfig = null)
        : this(model, reference, score, (config ?? new RlooConfig()).Validate(), trainerConfig, 0) { }

    RlooTrainer(HookedTransformer model, HookedTransformer? reference, ScoreFunction score, RlooConfig config, TrainerConfig? trainerConfig, int _)
        : base(model, reference, score, config, new RlooObjective(model, config), trainerConfig) => Config = config;

    /// <summary>The settings.</summary>
    public RlooConfig Config { get; }

    /// <summary>
    /// RLOO's rewards: <c>score − β·Σₜ (log π − log π_ref)</c> over each completion's real tokens (k1 summed, as TRL), or
    /// the scores when β = 0 or no reference log-probs were collected.
    /// </summary>
    public static Tensor Rewards(Rollout rollout, double beta)
    {
        ArgumentNullException.ThrowIfNull(rollout);
        if (beta == 0 || rollout.RefLogProbs is null) return rollout.Scores.clone();
        using var scope = torch.NewDisposeScope();
        var kl = (KlEstimators.K1(rollout.LogProbs, rollout.RefLogProbs) * rollout.ResponseMask.to_type(ScalarType.Float32)).sum(1);
        return (rollout.Scores - beta * kl).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override Tensor GroupAdvantages(Rollout rollout, Dictionary<string, double> metrics)
    {
        using var scope = torch.NewDisposeScope();
        if (rollout.RefLogProbs is not null)
            metrics["kl"] = Advantages.MaskedMean(KlEstimators.K1(rollout.LogProbs, rollout.RefLogProbs), rollout.ResponseMask).item<float>();
        AddRewardMetrics(rollout.Scores, Config.NumGenerations, metrics);
        var rewards = Rewards(rollout, Config.Beta);
        return RlooAdvantages.Compute(rewards, Config.NumGenerations, Config.NormalizeAdvantages).MoveToOuterDisposeScope();
    }
}
