using SafetyNotebooks.Models;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// PPO-RLHF hyper-parameters, named and defaulted as TRL's 0.1x <c>PPOConfig</c> (with its <c>OnPolicyConfig</c>):
/// <c>num_ppo_epochs</c> 4, <c>num_mini_batches</c> 1, <c>kl_coef</c> 0.05, <c>kl_estimator</c> k1, <c>cliprange</c> 0.2,
/// <c>cliprange_value</c> 0.2, <c>vf_coef</c> 0.1, <c>gamma</c> 1, <c>lam</c> 0.95, <c>whiten_rewards</c> false,
/// <c>response_length</c> 53, <c>temperature</c> 0.7, <c>missing_eos_penalty</c> none. The adaptive KL controller
/// (<see cref="KlTarget"/>, <see cref="KlHorizon"/>) is the one of TRL's earlier PPOTrainer (Ziegler et al.).
/// </summary>
public sealed record PpoConfig
{
    /// <summary>Rollouts to collect and train on (TRL's <c>num_total_batches</c>). Default 100.</summary>
    public int NumTotalBatches { get; init; } = 100;
    /// <summary>Passes over each rollout (TRL's <c>num_ppo_epochs</c>). Default 4.</summary>
    public int NumPpoEpochs { get; init; } = 4;
    /// <summary>Optimizer steps per pass: the rollout is split into this many mini-batches (TRL's <c>num_mini_batches</c>). Default 1.</summary>
    public int NumMiniBatches { get; init; } = 1;
    /// <summary>β of the per-token penalty −β·KL (TRL's <c>kl_coef</c>; the initial β with <see cref="KlTarget"/>). Default 0.05.</summary>
    public double KlCoef { get; init; } = 0.05;
    /// <summary>Per-token KL estimator in the reward (TRL's <c>kl_estimator</c>). Default k1.</summary>
    public KlEstimator KlEstimator { get; init; } = KlEstimator.K1;
    /// <summary>When set, β adapts towards this KL per sequence (<see cref="AdaptiveKlController"/>, TRL's <c>target</c>); null: β stays <see cref="KlCoef"/>.</summary>
    public double? KlTarget { get; init; }
    /// <summary>Horizon of the adaptive controller in sequences (TRL's <c>horizon</c>). Default 10000.</summary>
    public double KlHorizon { get; init; } = 10000;
    /// <summary>Policy ratio clip ε (TRL's <c>cliprange</c>). Default 0.2.</summary>
    public double Cliprange { get; init; } = 0.2;
    /// <summary>Value clip around the rollout's values (TRL's <c>cliprange_value</c>). Default 0.2.</summary>
    public double CliprangeValue { get; init; } = 0.2;
    /// <summary>Weight of the value loss (TRL's <c>vf_coef</c>). Default 0.1.</summary>
    public double VfCoef { get; init; } = 0.1;
    /// <summary>Discount γ (TRL's <c>gamma</c>). Default 1.</summary>
    public double Gamma { get; init; } = 1.0;
    /// <summary>GAE λ (TRL's <c>lam</c>). Default 0.95.</summary>
    public double Lam { get; init; } = 0.95;
    /// <summary>Whiten the per-token rewards (mean kept) before GAE (TRL's <c>whiten_rewards</c>). Default false.</summary>
    public bool WhitenRewards { get; init; }
    /// <summary>Subtracted from the score of completions without an EOS (TRL's <c>missing_eos_penalty</c>); null: none.</summary>
    public double? MissingEosPenalty { get; init; }
    /// <summary>Most new tokens per completion (TRL's <c>response_length</c>). Default 53.</summary>
    public int ResponseLength { get; init; } = 53;
    /// <summary>Sampling temperature; the log-probs are of the tempered distribution (TRL's <c>temperature</c>). Default 0.7.</summary>
    public double Temperature { get; init; } = 0.7;
    /// <summary>The EOS (stop) token: a completion ends with it. Null: completions always run <see cref="ResponseLength"/> tokens.</summary>
    public long? EosTokenId { get; init; }
    /// <summary>Filler after a completion's end. Default: the EOS id.</summary>
    public long? PadTokenId { get; init; }
    /// <summary>Seed of the sampling (rollout i samples with seed + i). Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>The generation options a rollout uses.</summary>
    public GenerationOptions Generation(int rolloutIndex) => new()
    {
        MaxNewTokens = ResponseLength, DoSample = true, Temperature = Temperature, EosTokenId = EosTokenId, PadTokenId = PadTokenId,
        Seed = Seed + rolloutIndex,
    };

    /// <summary>Checks the values; throws naming the field and the fix.</summary>
    public PpoConfig Validate()
    {
        if (NumTotalBatches < 1) throw new ArgumentException($"PpoConfig.NumTotalBatches is {NumTotalBatches}; set it to 1 or more.");
        if (NumPpoEpochs < 1) throw new ArgumentException($"PpoConfig.NumPpoEpochs is {NumPpoEpochs}; set it to 1 or more.");
        if (NumMiniBatches < 1) throw new ArgumentException($"PpoConfig.NumMiniBatches is {NumMiniBatches}; set it to 1 or more.");
        if (!(KlCoef >= 0)) throw new ArgumentException($"PpoConfig.KlCoef is {KlCoef}; set it to 0 or more.");
        if (!(Cliprange > 0)) throw new ArgumentException($"PpoConfig.Cliprange is {Cliprange}; set it above 0 (TRL: 0.2).");
        if (!(CliprangeValue > 0)) throw new ArgumentException($"PpoConfig.CliprangeValue is {CliprangeValue}; set it above 0 (TRL: 0.2).");
        if (!(VfCoef >= 0)) throw new ArgumentException($"PpoConfig.VfCoef is {VfCoef}; set it to 0 or more.");
        if (!(Gamma >= 0 && Gamma <= 1) || !(Lam >= 0 && Lam <= 1)) throw new ArgumentException($"PpoConfig.Gamma ({Gamma}) and Lam ({Lam}) must lie in [0, 1].");
        if (ResponseLength < 1) throw new ArgumentException($"PpoConfig.ResponseLength is {ResponseLength}; set it to 1 or more.");
        if (!(Temperature > 0)) throw new ArgumentException($"PpoConfig.Temperature is {Temperature}; set it above 0 (rollouts sample).");
        if (MissingEosPenalty is double p && !(p > 0)) throw new ArgumentException($"PpoConfig.MissingEosPenalty is {p}; it must be > 0 (it is subtracted), or null.");
        if (MissingEosPenalty is not null && EosTokenId is null) throw new ArgumentException("PpoConfig.MissingEosPenalty needs PpoConfig.EosTokenId (the stop token).");
        return this;
    }
}

/// <summary>
/// PPO-RLHF's per-token rewards and advantages, as TRL's PPO trainer builds them from a rollout: the KL penalty
/// <c>−β·KL</c> at every completion token, the score added at the completion's last real token (its EOS, or the last
/// token when it was cut), nothing after it; then GAE and masked whitening (<see cref="Alignment.Advantages"/>).
/// <para>TRL 0.1x adds the score one position after the last real token (its <c>sequence_lengths_p1</c>) and keeps the
/// value there; here the score sits on the last real token, as in TRL's earlier <c>compute_rewards</c> and Ziegler et al.</para>
/// </summary>
public static class PpoRewards
{
    /// <summary>
    /// Per-token rewards <c>[batch, T]</c>: <c>−β·KL(t)</c> at every real completion token (KL from
    /// <see cref="KlEstimators"/>), plus <paramref name="scores"/>[b] at the last real token of row b; 0 after the end.
    /// Returns the rewards, the non-score part <c>−β·KL</c> and the per-token KL (both 0 after the end).
    /// <paramref name="responseMask"/> is true for each row's leading real tokens.
    /// </summary>
    public static (Tensor Rewards, Tensor NonScoreReward, Tensor Kl) TokenRewards(Tensor logProbs, Tensor refLogProbs, Tensor scores,
        Tensor responseMask, double klCoef, KlEstimator estimator = KlEstimator.K1)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(responseMask);
        if (!responseMask.shape.SequenceEqual(logProbs.shape))
            throw new ArgumentException($"responseMask is [{string.Join(", ", responseMask.shape)}] but the log-probs are [{string.Join(", ", logProbs.shape)}]; pass the rollout's ResponseMask.", nameof(responseMask));
        if (scores.dim() != 1 || scores.shape[0] != logProbs.shape[0])
            throw new ArgumentException($"scores must be [batch] = [{logProbs.shape[0]}], one per completion, got [{string.Join(", ", scores.shape)}].", nameof(scores));
        using var scope = torch.NewDisposeScope();
        var m = responseMask.to_type(ScalarType.Float32);
        var lengths = m.sum(1).to_type(ScalarType.Int64);
        if (lengths.eq(0).any().item<bool>())
            throw new ArgumentException("A completion has no real token (its responseMask row is all false); every rollout row must have at least one generated token.", nameof(responseMask));
        var kl = KlEstimators.Estimate(logProbs.to_type(ScalarType.Float32), refLogProbs.to_type(ScalarType.Float32), estimator) * m;
        var nonScore = kl * -klCoef;
        var last = (lengths - 1).unsqueeze(1);
        var rewards = nonScore.scatter_add(1, last, scores.to_type(ScalarType.Float32).unsqueeze(1));
        return (rewards.MoveToOuterDisposeScope(), nonScore.MoveToOuterDisposeScope(), kl.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// GAE over the completion (<see cref="Advantages.Gae"/> with rewards and values zeroed after the end), returns =
    /// advantages + values, then the advantages whitened over the real tokens (<see cref="Advantages.MaskedWhiten"/>) and
    /// zeroed after the end. With <paramref name="whitenRewards"/> the rewards are whitened first (mean kept), as TRL's
    /// <c>whiten_rewards</c>.
    /// </summary>
    public static (Tensor Advantages, Tensor Returns) AdvantagesAndReturns(Tensor rewards, Tensor values, Tensor responseMask,
        double gamma, double lam, bool whitenRewards = false)
    {
        using var scope = torch.NewDisposeScope();
        var m = responseMask.to_type(ScalarType.Float32);
        var r = rewards.to_type(ScalarType.Float32) * m;
        if (whitenRewards) r = Advantages.MaskedWhiten(r, responseMask, shiftMean: false) * m;
        var v = values.to_type(ScalarType.Float32) * m;
        var (adv, returns) = Advantages.Gae(r, v, gamma, lam);
        var white = Advantages.MaskedWhiten(adv, responseMask) * m;
        return (white.MoveToOuterDisposeScope(), returns.MoveToOuterDisposeScope());
    }
}

/// <summary>The clipped PPO policy loss and its diagnostics (TRL's names in brackets).</summary>
/// <param name="Loss">Masked mean of <c>max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε))</c> [<c>pg_loss</c>].</param>
/// <param name="ClipFrac">Fraction of tokens where the clipped term is the larger [<c>policy/clipfrac_avg</c>].</param>
/// <param name="ApproxKl">½·mean((log ρ)²) over the tokens [<c>policy/approxkl_avg</c>].</param>
/// <param name="RatioMean">Mean ratio ρ over the tokens [<c>val/ratio</c>].</param>
/// <param name="K3Kl">CleanRL's <c>approx_kl</c>: masked mean of <c>(ρ − 1) − log ρ</c> (Schulman's k3 estimator).</param>
/// <param name="OldApproxKl">CleanRL's <c>old_approx_kl</c>: masked mean of <c>−log ρ</c> (k1).</param>
/// <param name="RatioOutsideClip">CleanRL's <c>clipfracs</c>: fraction of tokens with <c>|ρ − 1| &gt; ε</c>.</param>
public sealed record PolicyLossOutput(Tensor Loss, Tensor ClipFrac, Tensor ApproxKl, Tensor RatioMean, Tensor K3Kl, Tensor OldApproxKl, Tensor RatioOutsideClip) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose() { Loss.Dispose(); ClipFrac.Dispose(); ApproxKl.Dispose(); RatioMean.Dispose(); K3Kl.Dispose(); OldApproxKl.Dispose(); RatioOutsideClip.Dispose(); }
}

/// <summary>PPO's clipped policy and value losses, as TRL's PPO trainer computes them (masked means over the real completion tokens).</summary>
public static class PpoLosses
{
    /// <summary>
    /// With <c>ρ = exp(newLogProbs − oldLogProbs)</c>: loss = masked mean of <c>max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε))</c>
    /// (<paramref name="cliprange"/> = ε), clip fraction = masked mean of [clipped term &gt; unclipped term], approx KL =
    /// ½·masked mean of (log ρ)², and the masked mean ratio. All tensors <c>[batch, T]</c>; <paramref name="mask"/> null = all.
    /// </summary>
    public static PolicyLossOutput PolicyLoss(Tensor newLogProbs, Tensor oldLogProbs, Tensor advantages, Tensor? mask, double cliprange)
    {
        CheckSame(newLogProbs, oldLogProbs, nameof(oldLogProbs));
        CheckSame(newLogProbs, advantages, nameof(advantages));
        using var scope = torch.NewDisposeScope();
        var diff = newLogProbs - oldLogProbs.detach();
        var ratio = diff.exp();
        var adv = advantages.detach();
        var l1 = -adv * ratio;
        var l2 = -adv * ratio.clamp(1 - cliprange, 1 + cliprange);
        var loss = Advantages.MaskedMean(torch.maximum(l1, l2), mask);
        Tensor clipFrac, approxKl, ratioMean, k3, k1, outside;
        using (torch.no_grad())
        {
            clipFrac = Advantages.MaskedMean(l2.gt(l1).to_type(ScalarType.Float32), mask);
            approxKl = 0.5 * Advantages.MaskedMean(diff.square(), mask);
            ratioMean = Advantages.MaskedMean(ratio, mask);
            k3 = Advantages.MaskedMean((ratio - 1) - diff, mask);
            k1 = Advantages.MaskedMean(-diff, mask);
            outside = Advantages.MaskedMean((ratio - 1).abs().gt(cliprange).to_type(ScalarType.Float32), mask);
        }
        return new PolicyLossOutput(loss.MoveToOuterDisposeScope(), clipFrac.MoveToOuterDisposeScope(), approxKl.MoveToOuterDisposeScope(), ratioMean.MoveToOuterDisposeScope(),
            k3.MoveToOuterDisposeScope(), k1.MoveToOuterDisposeScope(), outside.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Clipped value loss: <c>V̂ = clip(V, V_old − c, V_old + c)</c> (<paramref name="cliprangeValue"/> = c), loss =
    /// ½·masked mean of <c>max((V − R)², (V̂ − R)²)</c>, clip fraction = masked mean of [(V̂ − R)² &gt; (V − R)²].
    /// </summary>
    public static (Tensor Loss, Tensor ClipFrac) ValueLoss(Tensor values, Tensor oldValues, Tensor returns, Tensor? mask, double cliprangeValue)
    {
        CheckSame(values, oldValues, nameof(oldValues));
        CheckSame(values, returns, nameof(returns));
        using var scope = torch.NewDisposeScope();
        var old = oldValues.detach();
        var ret = returns.detach();
        var clipped = torch.maximum(torch.minimum(values, old + cliprangeValue), old - cliprangeValue);
        var vf1 = (values - ret).square();
        var vf2 = (clipped - ret).square();
        var loss = 0.5 * Advantages.MaskedMean(torch.maximum(vf1, vf2), mask);
        Tensor clipFrac;
        using (torch.no_grad()) clipFrac = Advantages.MaskedMean(vf2.gt(vf1).to_type(ScalarType.Float32), mask);
        return (loss.MoveToOuterDisposeScope(), clipFrac.MoveToOuterDisposeScope());
    }

    static void CheckSame(Tensor a, Tensor b, string name)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (!a.shape.SequenceEqual(b.shape))
            throw new ArgumentException($"PPO loss: {name} is [{string.Join(", ", b.shape)}] but the current tensor is [{string.Join(", ", a.shape)}]; slice both from the same rollout rows.", name);
    }
}

/// <summary>One PPO mini-batch (rows of a rollout with their advantages and returns).</summary>
public sealed record PpoMinibatch(Tensor QueryResponses, Tensor? AttentionMask, int ContextLength, Tensor ResponseMask,
    Tensor OldLogProbs, Tensor OldValues, Tensor Advantages, Tensor Returns, IReadOnlyDictionary<string, double>? RolloutMetrics = null);

/// <summary>
/// The PPO update as a <see cref="ITrainingObjective{TBatch}"/>: one pass of the policy with its value head over the
/// mini-batch, new log-probs at the sampling temperature, loss = clipped policy loss + <c>vf_coef</c> × clipped value
/// loss. Metrics carry TRL's names: <c>policy/approxkl_avg</c>, <c>policy/clipfrac_avg</c>, <c>loss/policy_avg</c>,
/// <c>loss/value_avg</c>, <c>val/clipfrac_avg</c>, <c>policy/entropy_avg</c>, <c>val/ratio</c> (averaged by the trainer
/// over the rollout's steps), plus the rollout's <c>objective/*</c> metrics.
/// </summary>
public sealed class PpoObjective : ITrainingObjective<PpoMinibatch>
{
    /// <summary>Creates the objective.</summary>
    public PpoObjective(HookedTransformerWithValueHead model, PpoConfig config)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Config = (config ?? throw new ArgumentNullException(nameof(config))).Validate();
    }

    /// <summary>The policy with its value head.</summary>
    public HookedTransformerWithValueHead Model { get; }
    nn.Module ITrainingObjective<PpoMinibatch>.Model => Model;
    /// <summary>The hyper-parameters.</summary>
    public PpoConfig Config { get; }

    /// <inheritdoc/>
    public ObjectiveOutput Compute(PpoMinibatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        int P = batch.ContextLength;
        long T = batch.ResponseMask.shape[1];
        var (logits, values) = Model.Forward(batch.QueryResponses, batch.AttentionMask);
        var newLogProbs = Rollouts.CompletionLogProbs(logits, batch.QueryResponses, P, Config.Temperature);
        var vpred = values.narrow(1, P - 1, T);
        var mask = batch.ResponseMask;
        var pg = PpoLosses.PolicyLoss(newLogProbs, batch.OldLogProbs, batch.Advantages, mask, Config.Cliprange);
        var (vf, vfClip) = PpoLosses.ValueLoss(vpred, batch.OldValues, batch.Returns, mask, Config.CliprangeValue);
        var loss = pg.Loss + Config.VfCoef * vf;
        Tensor entropy;
        using (torch.no_grad()) entropy = Advantages.MaskedMean(Rollouts.CompletionEntropy(logits.detach(), P, T, Config.Temperature), mask);
        var metrics = new Dictionary<string, Tensor>
        {
            ["policy/approxkl_avg"] = pg.ApproxKl,
            ["policy/clipfrac_avg"] = pg.ClipFrac,
            ["loss/policy_avg"] = pg.Loss.detach(),
            ["loss/value_avg"] = vf.detach(),
            ["val/clipfrac_avg"] = vfClip,
            ["policy/entropy_avg"] = entropy,
            ["val/ratio"] = pg.RatioMean,
        };
        if (batch.RolloutMetrics is not null)
            foreach (var (k, v) in batch.RolloutMetrics) metrics[k] = torch.tensor(v, dtype: ScalarType.Float64);
        return new ObjectiveOutput(loss, metrics, Weight: mask.to_type(ScalarType.Float32).sum());
    }
}

/// <summary>A PPO rollout with its per-token rewards, advantages, returns and TRL's <c>objective/*</c> metrics.</summary>
public sealed class PpoRollout : IDisposable
{
    /// <summary>The sampled completions, log-probs, values and scores.</summary>
    public required Rollout Rollout { get; init; }
    /// <summary>Per-token rewards <c>[batch, T]</c> (−β·KL plus the score at the end).</summary>
    public required Tensor Rewards { get; init; }
    /// <summary>Whitened GAE advantages <c>[batch, T]</c>.</summary>
    public required Tensor Advantages { get; init; }
    /// <summary>Value targets <c>[batch, T]</c>.</summary>
    public required Tensor Returns { get; init; }
    /// <summary>TRL's rollout metrics: <c>objective/kl</c>, <c>objective/entropy</c>, <c>objective/non_score_reward</c>,
    /// <c>objective/rlhf_reward</c>, <c>objective/scores</c>, <c>objective/kl_coef</c>, <c>val/num_eos_tokens</c>.</summary>
    public required IReadOnlyDictionary<string, double> Metrics { get; init; }

    /// <summary>Rows <paramref name="rows"/> as a mini-batch.</summary>
    public PpoMinibatch Slice(long[] rows)
    {
        var idx = torch.tensor(rows, device: Rewards.device);
        Tensor S(Tensor t) => t.index_select(0, idx);
        var r = Rollout;
        return new PpoMinibatch(S(r.QueryResponses), r.AttentionMask is null ? null : S(r.AttentionMask), r.ContextLength, S(r.ResponseMask),
            S(r.LogProbs), S(r.Values!), S(Advantages), S(Returns), Metrics);
    }

    /// <summary>Takes the tensors out of every dispose scope: the caller then owns them (dispose the rollout).</summary>
    public void DetachFromDisposeScopes()
    {
        Rollout.DetachFromDisposeScopes();
        Rewards.DetachFromDisposeScope(); Advantages.DetachFromDisposeScope(); Returns.DetachFromDisposeScope();
    }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose() { Rollout.Dispose(); Rewards.Dispose(); Advantages.Dispose(); Returns.Dispose(); }
}

/// <summary>
/// PPO-RLHF (Ziegler et al. 2019; Ouyang et al. 2022) following TRL's 0.1x <c>PPOTrainer</c>: each rollout samples
/// completions from the policy (KV cache), scores them (score function, missing-EOS penalty), builds per-token rewards
/// (−β·KL to the frozen reference, score at the end token), GAE advantages (whitened) and returns, then runs
/// <see cref="PpoConfig.NumPpoEpochs"/> shuffled passes of <see cref="PpoConfig.NumMiniBatches"/> clipped-PPO updates
/// through the library's one <see cref="Trainer{TBatch}"/>. <see cref="Stats"/> holds one dictionary per rollout with
/// TRL's metric names.
/// <code>
/// var policy = new HookedTransformerWithValueHead(model);
/// using var ppo = new PpoTrainer(policy, Rollouts.FrozenReference(model), score, new PpoConfig { EosTokenId = eos },
///     new TrainerConfig { LearningRate = 1e-4, LrSchedulerType = LrSchedulerType.Constant });
/// ppo.Train((i, rng) =&gt; new PromptBatch(prompts));
/// ppo.Stats[^1]["objective/scores"]
/// </code>
/// </summary>
public sealed class PpoTrainer : IDisposable
{
    readonly List<Dictionary<string, double>> _stats = new();
    readonly List<Dictionary<string, double>> _rolloutMetrics = new();
    OnPolicySchedule<PpoRollout, PpoMinibatch>? _schedule;

    /// <summary>
    /// Creates the trainer. <paramref name="trainerConfig"/> supplies the optimizer settings (learning rate, schedule,
    /// clipping, seed, progress); its <c>MaxSteps</c> is replaced by <c>NumTotalBatches × NumPpoEpochs × NumMiniBatches</c>.
    /// </summary>
    public PpoTrainer(HookedTransformerWithValueHead model, HookedTransformer reference, ScoreFunction score, PpoConfig? config = null,
        TrainerConfig? trainerConfig = null)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Reference = reference ?? throw new ArgumentNullException(nameof(reference));
        Score = score ?? throw new ArgumentNullException(nameof(score));
        Config = (config ?? new PpoConfig()).Validate();
        if (ReferenceEquals(reference, model.Policy))
            throw new ArgumentException("The reference model is the policy itself; pass a frozen copy (Rollouts.FrozenReference(policy)) so the KL measures drift.", nameof(reference));
        KlController = Config.KlTarget is double target ? new AdaptiveKlController(Config.KlCoef, target, Config.KlHorizon) : new FixedKlController(Config.KlCoef);
        var tc = (trainerConfig ?? new TrainerConfig()) with { MaxSteps = Config.NumTotalBatches * Config.NumPpoEpochs * Config.NumMiniBatches };
        Trainer = new Trainer<PpoMinibatch>(new PpoObjective(model, Config), tc);
    }

    /// <summary>The policy with its value head (trained).</summary>
    public HookedTransformerWithValueHead Model { get; }
    /// <summary>The frozen reference model.</summary>
    public HookedTransformer Reference { get; }
    /// <summary>The score function.</summary>
    public ScoreFunction Score { get; }
    /// <summary>The hyper-parameters.</summary>
    public PpoConfig Config { get; }
    /// <summary>β and its updates.</summary>
    public IKlController KlController { get; }
    /// <summary>The trainer running the PPO updates (its <c>History</c> has one row per optimizer step).</summary>
    public Trainer<PpoMinibatch> Trainer { get; }
    /// <summary>Called with each new rollout (e.g. to print completions).</summary>
    public Action<int, PpoRollout>? OnRollout { get; set; }

    /// <summary>
    /// One dictionary per completed rollout, TRL's names: the rollout's <c>objective/kl</c>, <c>objective/entropy</c>,
    /// <c>objective/non_score_reward</c>, <c>objective/rlhf_reward</c>, <c>objective/scores</c>, <c>objective/kl_coef</c>,
    /// <c>val/num_eos_tokens</c>, and the averages over its PPO steps of <c>policy/approxkl_avg</c>, <c>policy/clipfrac_avg</c>,
    /// <c>loss/policy_avg</c>, <c>loss/value_avg</c>, <c>val/clipfrac_avg</c>, <c>policy/entropy_avg</c>, <c>val/ratio</c>.
    /// </summary>
    public IReadOnlyList<IReadOnlyDictionary<string, double>> Stats => _stats;

    /// <summary>
    /// Runs the remaining rollouts and updates. <paramref name="prompts"/> gets the rollout index and the trainer's seeded
    /// <see cref="Random"/> and returns that rollout's prompts; its batch size must be a multiple of
    /// <c>NumMiniBatches × GradientAccumulationSteps</c>.
    /// </summary>
    public IReadOnlyList<IReadOnlyDictionary<string, double>> Train(Func<int, Random, PromptBatch> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        _schedule ??= new OnPolicySchedule<PpoRollout, PpoMinibatch>(
            (i, rng) => CollectRollout(i, prompts(i, rng)), r => r.DetachFromDisposeScopes(),
            r => (int)r.Rollout.BatchSize, (r, rows) => r.Slice(rows),
            Config.NumPpoEpochs, Config.NumMiniBatches, Trainer.Config.GradientAccumulationSteps)
        { OnRollout = (i, r) => OnRollout?.Invoke(i, r) };
        var schedule = _schedule;
        Trainer.Train((step, rng) => schedule.Next(step, rng));
        RebuildStats();
        return _stats;
    }

    /// <summary>Collects rollout <paramref name="index"/> on <paramref name="prompts"/> and computes its rewards, advantages and returns (no gradients).</summary>
    public PpoRollout CollectRollout(int index, PromptBatch prompts)
    {
        using var noGrad = torch.no_grad();
        var rollout = Rollouts.Collect(Model, Reference, prompts, Score, Config.Generation(index), Config.MissingEosPenalty);
        try
        {
            using var scope = torch.NewDisposeScope();
            double beta = KlController.Value;
            var (rewards, nonScore, kl) = PpoRewards.TokenRewards(rollout.LogProbs, rollout.RefLogProbs!, rollout.Scores, rollout.ResponseMask, beta, Config.KlEstimator);
            var (adv, returns) = PpoRewards.AdvantagesAndReturns(rewards, rollout.Values!, rollout.ResponseMask, Config.Gamma, Config.Lam, Config.WhitenRewards);
            double meanKl = kl.sum(1).mean().item<float>();
            double meanNonScore = nonScore.sum(1).mean().item<float>();
            double meanScore = rollout.Scores.mean().item<float>();
            var metrics = new Dictionary<string, double>
            {
                ["objective/kl"] = meanKl,
                ["objective/entropy"] = (-rollout.LogProbs).sum(1).mean().item<float>(),   // masked: log-probs are 0 after the end
                ["objective/non_score_reward"] = meanNonScore,
                ["objective/rlhf_reward"] = meanNonScore + meanScore,
                ["objective/scores"] = meanScore,
                ["objective/kl_coef"] = beta,
                ["val/num_eos_tokens"] = rollout.ContainsEos.to_type(ScalarType.Float32).sum().item<float>(),
            };
            KlController.Update(meanKl, (int)rollout.BatchSize);
            _rolloutMetrics.Add(metrics);
            return new PpoRollout
            {
                Rollout = rollout, Rewards = rewards.MoveToOuterDisposeScope(), Advantages = adv.MoveToOuterDisposeScope(),
                Returns = returns.MoveToOuterDisposeScope(), Metrics = metrics,
            };
        }
        catch
        {
            rollout.Dispose();
            throw;
        }
    }

    void RebuildStats()
    {
        _stats.Clear();
        int per = Config.NumPpoEpochs * Config.NumMiniBatches;
        var records = Trainer.Records;
        for (int i = 0; i < _rolloutMetrics.Count; i++)
        {
            var d = new Dictionary<string, double>(_rolloutMetrics[i]);
            var steps = records.Skip(i * per).Take(per).Where(r => r.Metrics != null).ToList();
            if (steps.Count == 0) continue;
            foreach (var key in steps[0].Metrics!.Keys.Where(k => !d.ContainsKey(k)))
                d[key] = steps.Average(r => r.Metrics![key]);
            d["loss"] = steps.Average(r => r.Loss);
            _stats.Add(d);
        }
    }

    /// <summary>Disposes the last rollout.</summary>
    public void Dispose() => _schedule?.Dispose();
}
