using SafetyNotebooks.Models;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>How GRPO scales the group-centred rewards (TRL's <c>scale_rewards</c>).</summary>
public enum GrpoRewardScaling
{
    /// <summary>Divide by the group's standard deviation (TRL's <c>"group"</c>, the GRPO paper).</summary>
    Group,
    /// <summary>Divide by the whole batch's standard deviation (TRL's <c>"batch"</c>).</summary>
    Batch,
    /// <summary>No scaling, only the group mean is subtracted (TRL's <c>"none"</c>, Dr. GRPO).</summary>
    None,
}

/// <summary>How GRPO averages its per-token loss (TRL's <c>loss_type</c>).</summary>
public enum GrpoLossType
{
    /// <summary>Mean over each completion's tokens, then over completions (TRL's <c>"grpo"</c>, the paper).</summary>
    Grpo,
    /// <summary>Mean over the mini-batch's tokens (TRL's <c>"bnpo"</c>).</summary>
    Bnpo,
    /// <summary>Sum over tokens divided by completions × <c>max_completion_length</c> (TRL's <c>"dr_grpo"</c>).</summary>
    DrGrpo,
    /// <summary>Sum over tokens divided by the tokens of the whole accumulated batch (TRL's <c>"dapo"</c>, its default).</summary>
    Dapo,
}

/// <summary>GRPO settings (TRL's <c>GRPOConfig</c> names and defaults: <c>num_generations</c> 8, <c>beta</c> 0, <c>epsilon</c> 0.2, <c>scale_rewards</c> group, <c>loss_type</c> dapo).</summary>
public sealed record GrpoConfig : GroupRolloutConfig
{
    /// <inheritdoc/>
    public override int NumGenerations { get; init; } = 8;
    /// <inheritdoc/>
    public override double Beta { get; init; }
    /// <summary>Reward scaling. Default <see cref="GrpoRewardScaling.Group"/>.</summary>
    public GrpoRewardScaling ScaleRewards { get; init; } = GrpoRewardScaling.Group;
    /// <summary>Loss normalisation. Default <see cref="GrpoLossType.Dapo"/> (TRL's default).</summary>
    public GrpoLossType LossType { get; init; } = GrpoLossType.Dapo;

    /// <summary>Checks the values; throws naming the field and the fix.</summary>
    public GrpoConfig Validate() { ValidateShared("GrpoConfig"); return this; }
}

/// <summary>GRPO's group baseline (Shao et al. 2024, as TRL's <c>GRPOTrainer</c>).</summary>
public static class GrpoAdvantages
{
    /// <summary>
    /// Rewards <c>[G·k]</c> (k consecutive completions per prompt) → advantages <c>[G·k]</c>: <c>r − mean(group)</c>, divided
    /// by <c>std + 1e−4</c> (unbiased standard deviation of the group, or of the batch) unless <paramref name="scaling"/> is None.
    /// </summary>
    public static Tensor Compute(Tensor rewards, int k, GrpoRewardScaling scaling = GrpoRewardScaling.Group)
    {
        var grouped = Grouped(rewards, k);
        using var scope = torch.NewDisposeScope();
        var mean = grouped.mean(new long[] { 1 }, keepdim: true);
        var adv = (grouped - mean).view(-1);
        if (scaling == GrpoRewardScaling.None) return adv.MoveToOuterDisposeScope();
        var std = scaling == GrpoRewardScaling.Group
            ? grouped.std(1, unbiased: true, keepdim: true).expand_as(grouped).reshape(-1)
            : rewards.std(unbiased: true).expand_as(adv);
        return (adv / (std + 1e-4)).MoveToOuterDisposeScope();
    }

    internal static Tensor Grouped(Tensor rewards, int k)
    {
        ArgumentNullException.ThrowIfNull(rewards);
        if (k < 2) throw new ArgumentOutOfRangeException(nameof(k), k, "A group baseline needs k ≥ 2 completions per prompt.");
        if (rewards.dim() != 1 || rewards.shape[0] % k != 0)
            throw new ArgumentException($"Group rewards must be [prompts × k] with k = {k} consecutive completions per prompt, got [{string.Join(", ", rewards.shape)}].", nameof(rewards));
        return rewards.to_type(ScalarType.Float32).view(-1, k);
    }
}

/// <summary>
/// GRPO's loss as an objective (TRL's <c>GRPOTrainer._compute_loss</c>, token-level importance sampling): with
/// <c>ρ = exp(log π − log π_old)</c> per token, <c>−min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A) + β·k3(π, π_ref)</c>,
/// averaged as <see cref="GrpoConfig.LossType"/> says. Metrics (TRL's names): <c>kl</c>, <c>entropy</c>,
/// <c>clip_ratio/low_mean</c>, <c>clip_ratio/high_mean</c>, <c>clip_ratio/region_mean</c>.
/// </summary>
public sealed class GrpoObjective : ITrainingObjective<GroupMinibatch>
{
    /// <summary>Creates the objective.</summary>
    public GrpoObjective(HookedTransformer model, GrpoConfig config)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Config = (config ?? throw new ArgumentNullException(nameof(config))).Validate();
    }

    /// <summary>The policy.</summary>
    public HookedTransformer Model { get; }
    nn.Module ITrainingObjective<GroupMinibatch>.Model => Model;
    /// <summary>The settings.</summary>
    public GrpoConfig Config { get; }

    /// <inheritdoc/>
    public ObjectiveOutput Compute(GroupMinibatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        int P = batch.ContextLength;
        long T = batch.ResponseMask.shape[1];
        var logits = Model.forward(batch.QueryResponses, batch.AttentionMask);
        var logps = Rollouts.CompletionLogProbs(logits, batch.QueryResponses, P, Config.Temperature);
        var m = batch.ResponseMask.to_type(ScalarType.Float32);
        var adv = batch.Advantages.unsqueeze(1);
        double lo = Config.Epsilon, hi = Config.EpsilonHigh ?? Config.Epsilon;
        var coef1 = (logps - batch.OldLogProbs).exp();
        var coef2 = coef1.clamp(1 - lo, 1 + hi);
        var perToken = -torch.minimum(coef1 * adv, coef2 * adv);
        Tensor? kl = null;
        if (Config.Beta != 0)
        {
            if (batch.RefLogProbs is null) throw new ArgumentException("GRPO with Beta ≠ 0 needs the reference log-probs in the mini-batch; collect rollouts with a reference model.", nameof(batch));
            kl = KlEstimators.K3(logps, batch.RefLogProbs);
            perToken = perToken + Config.Beta * kl;
        }
        long rows = batch.QueryResponses.shape[0];
        var tokens = m.sum();
        Tensor loss;
        Tensor? weight;
        switch (Config.LossType)
        {
            case GrpoLossType.Grpo:
                loss = ((perToken * m).sum(-1) / m.sum(-1).clamp_min(1)).mean(); weight = torch.tensor((double)rows); break;
            case GrpoLossType.Bnpo:
                loss = (perToken * m).sum() / tokens.clamp_min(1); weight = null; break;
            case GrpoLossType.DrGrpo:
                loss = (perToken * m).sum() / (rows * Config.MaxCompletionLength); weight = torch.tensor((double)rows); break;
            default:
                loss = (perToken * m).sum() / tokens.clamp_min(1); weight = tokens.detach(); break;
        }
        var metrics = new Dictionary<string, Tensor>();
        using (torch.no_grad())
        {
            if (kl is not null) metrics["kl"] = Advantages.MaskedMean(kl.detach(), batch.ResponseMask);
            metrics["entropy"] = Advantages.MaskedMean(Rollouts.CompletionEntropy(logits.detach(), P, T, Config.Temperature), batch.ResponseMask);
            var c = coef1.detach();
            var low = c.lt(1 - lo).logical_and(adv.lt(0).expand_as(c));
            var high = c.gt(1 + hi).logical_and(adv.gt(0).expand_as(c));
            metrics["clip_ratio/low_mean"] = Advantages.MaskedMean(low.to_type(ScalarType.Float32), batch.ResponseMask);
            metrics["clip_ratio/high_mean"] = Advantages.MaskedMean(high.to_type(ScalarType.Float32), batch.ResponseMask);
            metrics["clip_ratio/region_mean"] = Advantages.MaskedMean(low.logical_or(high).to_type(ScalarType.Float32), batch.ResponseMask);
        }
        if (batch.RolloutMetrics is not null)
            foreach (var (key, v) in batch.RolloutMetrics) metrics[key] = torch.tensor(v, dtype: ScalarType.Float64);
        return new ObjectiveOutput(loss, metrics, weight);
    }
}

/// <summary>
/// GRPO (Shao et al. 2024) as TRL's <c>GRPOTrainer</c>: k completions per prompt, advantage <c>(r − mean)/(std + 1e−4)</c>
/// within each group (<see cref="GrpoAdvantages"/>), the clipped token-level objective with <c>β·k3</c> to the frozen
/// reference (<see cref="GrpoObjective"/>). No value head. Shares the rollout code with PPO and RLOO.
/// </summary>
public sealed class GrpoTrainer : GroupRolloutTrainer
{
    /// <summary>Creates the trainer; <paramref name="reference"/> may be null when β = 0.</summary>
    public GrpoTrainer(HookedTransformer model, HookedTransformer? reference, ScoreFunction score, GrpoConfig? config = null, TrainerConfig? trainerConfig = null)
        : this(model, reference, score, (config ?? new GrpoConfig()).Validate(), trainerConfig, 0) { }

    GrpoTrainer(HookedTransformer model, HookedTransformer? reference, ScoreFunction score, GrpoConfig config, TrainerConfig? trainerConfig, int _)
        : base(model, reference, score, config, new GrpoObjective(model, config), trainerConfig) => Config = config;

    /// <summary>The settings.</summary>
    public GrpoConfig Config { get; }

    /// <inheritdoc/>
    protected override Tensor GroupAdvantages(Rollout rollout, Dictionary<string, double> metrics)
    {
        AddRewardMetrics(rollout.Scores, Config.NumGenerations, metrics);
        return GrpoAdvantages.Compute(rollout.Scores, Config.NumGenerations, Config.ScaleRewards);
    }
}
