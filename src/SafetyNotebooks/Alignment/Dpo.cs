using SafetyNotebooks.Models;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>Hyper-parameters of <see cref="DpoObjective"/> (TRL's <c>DPOConfig</c> / <c>CPOConfig</c> names).</summary>
public sealed record DpoConfig
{
    /// <summary>β: the strength of the implicit KL penalty (TRL default 0.1; for IPO the paper's τ; for SimPO TRL's default is also 0.1, the paper uses 2–2.5).</summary>
    public double Beta { get; init; } = 0.1;
    /// <summary>Which loss (TRL's <c>loss_type</c>). Default <see cref="DpoLossType.Sigmoid"/> (DPO).</summary>
    public DpoLossType LossType { get; init; } = DpoLossType.Sigmoid;
    /// <summary>ε: cDPO smoothing for Sigmoid/SimPo/Cpo, the label-flip rate for Robust (must be &lt; 0.5). Default 0.</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>SimPO's target reward margin γ (TRL's <c>simpo_gamma</c>, default 0.5).</summary>
    public double SimpoGamma { get; init; } = 0.5;
    /// <summary>Weight of the NLL (behaviour cloning) term on the chosen completions for <see cref="DpoLossType.Cpo"/> and
    /// <see cref="DpoLossType.SimPo"/> (TRL's <c>cpo_alpha</c>, default 1.0; plain SimPO as in its paper is <c>CpoAlpha = 0</c>).</summary>
    public double CpoAlpha { get; init; } = 1.0;
}

/// <summary>
/// The DPO family as one <see cref="ITrainingObjective{TBatch}"/> over <see cref="PreferenceBatch"/>es, after TRL's
/// <c>DPOTrainer</c> (sigmoid/cDPO, robust, hinge, IPO) and <c>CPOTrainer</c> (reference-free CPO and SimPO). One
/// forward pass of the policy scores the chosen and rejected rows together; a frozen reference (eval mode, no
/// gradients) scores them under <c>no_grad</c>, or its log-probs come precomputed in the batch
/// (<see cref="WithReferenceLogProbs"/>, TRL's <c>precompute_ref_log_probs</c>).
/// Metrics, in TRL's names: <c>rewards/chosen</c>, <c>rewards/rejected</c>, <c>rewards/accuracies</c>,
/// <c>rewards/margins</c>, <c>logps/chosen</c>, <c>logps/rejected</c>, <c>logits/chosen</c>, <c>logits/rejected</c>
/// (and <c>nll_loss</c> for CPO/SimPO). With the policy equal to the reference, sigmoid DPO's loss is ln 2.
/// </summary>
public sealed class DpoObjective : ITrainingObjective<PreferenceBatch>
{
    /// <summary>Creates the objective. <paramref name="reference"/> may be null for the reference-free types, or when every
    /// batch carries precomputed reference log-probs; it must be a separate module (see <see cref="FrozenCopy"/>).</summary>
    public DpoObjective(HookedTransformer policy, HookedTransformer? reference = null, DpoConfig? config = null)
    {
        Policy = policy ?? throw new ArgumentNullException(nameof(policy));
        Config = config ?? new DpoConfig();
        if (ReferenceEquals(policy, reference))
            throw new ArgumentException("The reference model is the policy itself, so it would move with training; pass DpoObjective.FrozenCopy(policy) as the reference.", nameof(reference));
        Reference = reference;
        if (reference is not null) Freeze(reference);
        // Validate the hyper-parameters once, with the loss functions' own messages.
        using var z = torch.zeros(1);
        if (IsReferenceFree)
        {
            if (Config.LossType == DpoLossType.SimPo) PreferenceLosses.SimPo(z, z, Config.Beta, Config.SimpoGamma, Config.LabelSmoothing).Dispose();
            else PreferenceLosses.Cpo(z, z, Config.Beta, Config.LabelSmoothing).Dispose();
            if (!(Config.CpoAlpha >= 0)) throw new ArgumentOutOfRangeException(nameof(config), Config.CpoAlpha, $"DpoConfig.CpoAlpha is {Config.CpoAlpha}; set it to 0 (no NLL term) or more.");
        }
        else PreferenceLosses.Dpo(Config.LossType, z, z, z, z, Config.Beta, Config.LabelSmoothing, torch.ones(1), torch.ones(1)).Dispose();
    }

    /// <summary>The policy being trained.</summary>
    public HookedTransformer Policy { get; }
    /// <summary>The frozen reference model, or null.</summary>
    public HookedTransformer? Reference { get; }
    /// <summary>The hyper-parameters.</summary>
    public DpoConfig Config { get; }
    /// <summary>True for <see cref="DpoLossType.SimPo"/> and <see cref="DpoLossType.Cpo"/>, which use no reference model.</summary>
    public bool IsReferenceFree => Config.LossType is DpoLossType.SimPo or DpoLossType.Cpo;

    nn.Module ITrainingObjective<PreferenceBatch>.Model => Policy;

    /// <summary>A frozen copy of <paramref name="model"/> (same config and weights, eval mode, no gradients, same device): the usual DPO reference.</summary>
    public static HookedTransformer FrozenCopy(HookedTransformer model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var copy = new HookedTransformer(model.Cfg);
        var device = model.parameters().FirstOrDefault()?.device;
        if (device is not null) copy.to(device);
        using (torch.no_grad())
        {
            var source = model.state_dict();
            foreach (var (name, t) in copy.state_dict()) t.copy_(source[name]);
        }
        Freeze(copy);
        return copy;
    }

    static void Freeze(HookedTransformer m)
    {
        m.eval();
        foreach (var p in m.parameters()) p.requires_grad = false;
    }

    /// <summary>
    /// Summed log-probabilities of each row's completion tokens <c>[rows]</c> and their counts <c>[rows]</c> under
    /// <paramref name="model"/> (a padded forward pass; prompt and padding masked out), plus the logits.
    /// </summary>
    public static (Tensor Sum, Tensor Count, Tensor Logits) CompletionLogProbs(HookedTransformer model, Tensor tokens, Tensor attentionMask, Tensor completionMask)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var scope = torch.NewDisposeScope();
        var logits = model.forward(tokens, attentionMask);
        var mask = completionMask.ne(0).logical_and(LanguageModelLoss.TargetMaskFromAttentionMask(attentionMask));
        var sum = LanguageModelLoss.SequenceLogProbs(logits, tokens, mask);
        var count = mask.to_type(ScalarType.Float32).sum(1);
        return (sum.MoveToOuterDisposeScope(), count.MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Returns a copy of <paramref name="batch"/> carrying the reference model's summed completion log-probs
    /// (TRL's <c>precompute_ref_log_probs</c>): compute them once per dataset, then train without the reference
    /// forward pass. The input batch's tensors are shared, not copied.
    /// </summary>
    public PreferenceBatch WithReferenceLogProbs(PreferenceBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (Reference is null)
            throw new InvalidOperationException("WithReferenceLogProbs needs a reference model; construct the DpoObjective with one (e.g. DpoObjective.FrozenCopy(policy)).");
        var (chosen, rejected) = ReferenceLogProbs(batch);
        return batch with { RefChosenLogProbs = chosen, RefRejectedLogProbs = rejected };
    }

    (Tensor Chosen, Tensor Rejected) ReferenceLogProbs(PreferenceBatch batch)
    {
        if (batch.RefChosenLogProbs is not null && batch.RefRejectedLogProbs is not null)
            return (batch.RefChosenLogProbs, batch.RefRejectedLogProbs);
        if (Reference is null)
            throw new InvalidOperationException($"{Config.LossType} DPO needs reference log-probs, but the objective has no reference model and the batch has no RefChosenLogProbs/RefRejectedLogProbs; pass a reference (DpoObjective.FrozenCopy(policy)) or precompute them with WithReferenceLogProbs.");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        Reference.eval();
        var (sum, _, _) = CompletionLogProbs(Reference, batch.Tokens, batch.AttentionMask, batch.CompletionMask);
        long b = batch.Pairs;
        return (sum.narrow(0, 0, b).MoveToOuterDisposeScope(), sum.narrow(0, b, b).MoveToOuterDisposeScope());
    }

    /// <inheritdoc/>
    public ObjectiveOutput Compute(PreferenceBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        long rows = batch.Tokens.shape[0];
        if (batch.Tokens.dim() != 2 || rows % 2 != 0 || rows == 0)
            throw new ArgumentException($"A PreferenceBatch needs tokens [2B, pos] (B chosen rows, then B rejected rows), got [{string.Join(", ", batch.Tokens.shape)}]; build it with PreferenceData.Collate.", nameof(batch));
        long b = rows / 2;
        var (sum, count, logits) = CompletionLogProbs(Policy, batch.Tokens, batch.AttentionMask, batch.CompletionMask);
        var chosenSum = sum.narrow(0, 0, b);
        var rejectedSum = sum.narrow(0, b, b);
        var chosenCount = count.narrow(0, 0, b);
        var rejectedCount = count.narrow(0, b, b);
        double beta = Config.Beta;
        Tensor losses, chosenRewards, rejectedRewards, chosenLogps, rejectedLogps;
        Tensor? nll = null;
        if (IsReferenceFree)
        {
            bool average = Config.LossType == DpoLossType.SimPo;
            chosenLogps = average ? chosenSum / chosenCount.clamp_min(1) : chosenSum;
            rejectedLogps = average ? rejectedSum / rejectedCount.clamp_min(1) : rejectedSum;
            losses = average
                ? PreferenceLosses.SimPo(chosenLogps, rejectedLogps, beta, Config.SimpoGamma, Config.LabelSmoothing)
                : PreferenceLosses.Cpo(chosenLogps, rejectedLogps, beta, Config.LabelSmoothing);
            chosenRewards = beta * chosenLogps.detach();
            rejectedRewards = beta * rejectedLogps.detach();
            // TRL's nll_loss: cross-entropy over every chosen completion token of the batch.
            nll = -chosenSum.sum() / chosenCount.sum().clamp_min(1);
        }
        else
        {
            var (refChosen, refRejected) = ReferenceLogProbs(batch);
            losses = PreferenceLosses.Dpo(Config.LossType, chosenSum, rejectedSum, refChosen, refRejected, beta, Config.LabelSmoothing, chosenCount, rejectedCount);
            chosenRewards = beta * (chosenSum - refChosen).detach();
            rejectedRewards = beta * (rejectedSum - refRejected).detach();
            chosenLogps = chosenSum;
            rejectedLogps = rejectedSum;
        }
        var loss = losses.mean();
        if (nll is not null && Config.CpoAlpha > 0) loss = loss + Config.CpoAlpha * nll;

        var metrics = new Dictionary<string, Tensor>
        {
            ["rewards/chosen"] = chosenRewards.mean(),
            ["rewards/rejected"] = rejectedRewards.mean(),
            ["rewards/accuracies"] = chosenRewards.gt(rejectedRewards).to_type(ScalarType.Float32).mean(),
            ["rewards/margins"] = (chosenRewards - rejectedRewards).mean(),
            ["logps/chosen"] = chosenLogps.detach().mean(),
            ["logps/rejected"] = rejectedLogps.detach().mean(),
        };
        if (nll is not null) metrics["nll_loss"] = nll.detach();
        // TRL's logits/*: the vocabulary-mean logit at the positions predicting completion tokens, averaged over those tokens.
        using (torch.no_grad())
        {
            var meanLogit = logits.detach()[.., ..^1].mean(new long[] { -1 });                         // [2B, pos-1]
            var m = batch.CompletionMask.ne(0).logical_and(LanguageModelLoss.TargetMaskFromAttentionMask(batch.AttentionMask))[.., 1..].to_type(meanLogit.dtype);
            var perRow = (meanLogit * m).sum(1);
            var rowCount = m.sum(1);
            metrics["logits/chosen"] = perRow.narrow(0, 0, b).sum() / rowCount.narrow(0, 0, b).sum().clamp_min(1);
            metrics["logits/rejected"] = perRow.narrow(0, b, b).sum() / rowCount.narrow(0, b, b).sum().clamp_min(1);
        }
        return new ObjectiveOutput(loss, metrics, torch.tensor((float)b, device: loss.device));
    }
}
