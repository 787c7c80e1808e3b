using SafetyNotebooks.Models;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>Hyper-parameters of <see cref="KtoObjective"/> (TRL's <c>KTOConfig</c> names).</summary>
public sealed record KtoConfig
{
    /// <summary>β (TRL default 0.1).</summary>
    public double Beta { get; init; } = 0.1;
    /// <summary>Weight of desirable examples' losses (TRL's <c>desirable_weight</c>, default 1). TRL suggests keeping
    /// <c>desirable_weight · n_D / (undesirable_weight · n_U)</c> in [1, 4/3].</summary>
    public double DesirableWeight { get; init; } = 1.0;
    /// <summary>Weight of undesirable examples' losses (TRL's <c>undesirable_weight</c>, default 1).</summary>
    public double UndesirableWeight { get; init; } = 1.0;
}

/// <summary>
/// KTO for unpaired data (Ethayarajh et al. 2024) as TRL's <c>KTOTrainer</c> with <c>loss_type="kto"</c>: per-example
/// losses from <see cref="PreferenceLosses.Kto"/> with the KL reference point estimated on the batch's mismatched
/// (prompt, other completion) rows by the policy under <c>no_grad</c> and the frozen reference
/// (<see cref="PreferenceLosses.KtoKlEstimate"/>). Metrics in TRL's names: <c>kl</c>, <c>rewards/chosen</c>,
/// <c>rewards/rejected</c>, <c>rewards/margins</c>, <c>logps/chosen</c>, <c>logps/rejected</c> (chosen = desirable;
/// a side absent from the batch is not reported).
/// </summary>
public sealed class KtoObjective : ITrainingObjective<KtoBatch>
{
    /// <summary>Creates the objective; <paramref name="reference"/> may be null when batches carry precomputed reference log-probs.</summary>
    public KtoObjective(HookedTransformer policy, HookedTransformer? reference, KtoConfig? config = null)
    {
        Policy = policy ?? throw new ArgumentNullException(nameof(policy));
        if (ReferenceEquals(policy, reference))
            throw new ArgumentException("The reference model is the policy itself, so it would move with training; pass DpoObjective.FrozenCopy(policy) as the reference.", nameof(reference));
        Reference = reference;
        if (reference is not null)
        {
            reference.eval();
            foreach (var p in reference.parameters()) p.requires_grad = false;
        }
        Config = config ?? new KtoConfig();
        if (!(Config.Beta > 0)) throw new ArgumentOutOfRangeException(nameof(config), Config.Beta, $"KtoConfig.Beta is {Config.Beta}; it must be positive (TRL's default is 0.1).");
        if (!(Config.DesirableWeight >= 0) || !(Config.UndesirableWeight >= 0))
            throw new ArgumentOutOfRangeException(nameof(config), $"KtoConfig weights must be ≥ 0, got desirable {Config.DesirableWeight} and undesirable {Config.UndesirableWeight}.");
    }

    /// <summary>The policy being trained.</summary>
    public HookedTransformer Policy { get; }
    /// <summary>The frozen reference model, or null.</summary>
    public HookedTransformer? Reference { get; }
    /// <summary>The hyper-parameters.</summary>
    public KtoConfig Config { get; }

    nn.Module ITrainingObjective<KtoBatch>.Model => Policy;

    /// <summary>A copy of <paramref name="batch"/> carrying the reference's log-probs of its rows and KL rows (TRL's <c>precompute_ref_log_probs</c>).</summary>
    public KtoBatch WithReferenceLogProbs(KtoBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var reference = Reference ?? throw new InvalidOperationException("WithReferenceLogProbs needs a reference model; construct the KtoObjective with one (e.g. DpoObjective.FrozenCopy(policy)).");
        using var noGrad = torch.no_grad();
        reference.eval();
        var main = Sum(reference, batch.Examples);
        var kl = batch.Kl is null ? null : Sum(reference, batch.Kl);
        return batch with { RefLogProbs = main, RefKlLogProbs = kl };
    }

    static Tensor Sum(HookedTransformer model, CompletionBatch rows)
    {
        using var scope = torch.NewDisposeScope();
        var (sum, _, _) = DpoObjective.CompletionLogProbs(model, rows.Tokens, rows.AttentionMask, rows.CompletionMask);
        return sum.MoveToOuterDisposeScope();
    }

    Tensor ReferenceSum(CompletionBatch rows, Tensor? precomputed, string name)
    {
        if (precomputed is not null) return precomputed;
        var reference = Reference ?? throw new InvalidOperationException($"KTO needs the reference's log-probs, but the objective has no reference model and the batch has no {name}; pass a reference (DpoObjective.FrozenCopy(policy)) or precompute them with WithReferenceLogProbs.");
        using var noGrad = torch.no_grad();
        reference.eval();
        return Sum(reference, rows);
    }

    /// <inheritdoc/>
    public ObjectiveOutput Compute(KtoBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        long n = batch.Examples.Tokens.shape[0];
        if (batch.Desirable.dim() != 1 || batch.Desirable.shape[0] != n)
            throw new ArgumentException($"KtoBatch.Desirable must be [B] = [{n}] (one label per row), got [{string.Join(", ", batch.Desirable.shape)}]; build the batch with PreferenceData.CollateUnpaired.", nameof(batch));
        var (policySum, _, _) = DpoObjective.CompletionLogProbs(Policy, batch.Examples.Tokens, batch.Examples.AttentionMask, batch.Examples.CompletionMask);
        var refSum = ReferenceSum(batch.Examples, batch.RefLogProbs, "RefLogProbs");
        Tensor kl;
        if (batch.Kl is null) kl = torch.zeros(new long[0], device: policySum.device);
        else
        {
            Tensor policyKl;
            using (torch.no_grad()) policyKl = Sum(Policy, batch.Kl);
            kl = PreferenceLosses.KtoKlEstimate(policyKl, ReferenceSum(batch.Kl, batch.RefKlLogProbs, "RefKlLogProbs"));
        }
        var desirable = batch.Desirable.to_type(ScalarType.Bool).to(policySum.device);
        var losses = PreferenceLosses.Kto(policySum, refSum, desirable, kl, Config.Beta, Config.DesirableWeight, Config.UndesirableWeight);
        var loss = losses.mean();

        var metrics = new Dictionary<string, Tensor> { ["kl"] = kl.detach() };
        using (torch.no_grad())
        {
            var rewards = Config.Beta * (policySum - refSum).detach();
            var logps = policySum.detach();
            var d = desirable.to_type(ScalarType.Float32);
            var u = 1 - d;
            long nChosen = desirable.sum().item<long>();
            long nRejected = n - nChosen;
            if (nChosen > 0)
            {
                metrics["rewards/chosen"] = (rewards * d).sum() / nChosen;
                metrics["logps/chosen"] = (logps * d).sum() / nChosen;
            }
            if (nRejected > 0)
            {
                metrics["rewards/rejected"] = (rewards * u).sum() / nRejected;
                metrics["logps/rejected"] = (logps * u).sum() / nRejected;
            }
            if (nChosen > 0 && nRejected > 0) metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"];
        }
        return new ObjectiveOutput(loss, metrics, torch.tensor((float)n, device: loss.device));
    }
}
