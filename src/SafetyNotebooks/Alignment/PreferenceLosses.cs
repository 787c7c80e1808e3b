using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>Which member of the DPO family <see cref="DpoObjective"/> optimizes (TRL's <c>loss_type</c>).</summary>
public enum DpoLossType
{
    /// <summary>DPO (Rafailov et al. 2023), TRL's <c>"sigmoid"</c>: <c>−log σ(β·Δ)</c>. With label smoothing ε it is
    /// conservative DPO (cDPO, Mitchell 2023): <c>−(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)</c>, which is how TRL's
    /// <c>"sigmoid"</c> read <c>label_smoothing</c> until its 2026 DPO refactor (now ε is used only by <c>"robust"</c>).</summary>
    Sigmoid,
    /// <summary>Robust DPO (Chowdhury et al. 2024), TRL's <c>"robust"</c>: the unbiased loss under label flips with
    /// probability ε ∈ [0, 0.5): <c>(−(1−ε)·log σ(βΔ) + ε·log σ(−βΔ)) / (1 − 2ε)</c>.</summary>
    Robust,
    /// <summary>SLiC's hinge, TRL's <c>"hinge"</c>: <c>max(0, 1 − βΔ)</c>.</summary>
    Hinge,
    /// <summary>IPO (Azar et al. 2023), TRL's <c>"ipo"</c>: <c>(Δ̄ − 1/(2β))²</c> with each log-ratio divided by its
    /// completion length (TRL normalizes by length, as confirmed with the IPO authors; β is the paper's τ).</summary>
    Ipo,
    /// <summary>SimPO (Meng et al. 2024), reference-free (TRL's CPO trainer, <c>loss_type="simpo"</c>): with the
    /// length-averaged log-probs, <c>−log σ(β·(avg_c − avg_r) − γ)</c> (cDPO-style smoothing with ε), plus
    /// <see cref="DpoConfig.CpoAlpha"/> × NLL of the chosen completions.</summary>
    SimPo,
    /// <summary>CPO (Xu et al. 2024), reference-free (TRL's CPO trainer, <c>loss_type="sigmoid"</c>): <c>−log σ(β·(logp_c − logp_r))</c>
    /// on summed log-probs plus <see cref="DpoConfig.CpoAlpha"/> × NLL of the chosen completions.</summary>
    Cpo,
}

/// <summary>
/// The preference losses as pure functions of sequence log-probabilities (<c>[B]</c> tensors), following TRL's
/// <c>DPOTrainer</c>, <c>CPOTrainer</c>, <c>KTOTrainer</c> and <c>RewardTrainer</c>. Each returns the per-example
/// loss <c>[B]</c> (the objectives take the mean) unless stated otherwise. The objectives call these; tests check them
/// against hand-worked numbers.
/// </summary>
public static class PreferenceLosses
{
    /// <summary>
    /// A DPO-family loss from policy and reference log-probs of the chosen and rejected completions. Δ = (logπ_c − logπ_ref,c) −
    /// (logπ_r − logπ_ref,r). <paramref name="chosenLengths"/>/<paramref name="rejectedLengths"/> (completion token counts)
    /// are needed by <see cref="DpoLossType.Ipo"/> only. For the reference-free types use <see cref="SimPo"/> / <see cref="Cpo"/>.
    /// </summary>
    public static Tensor Dpo(DpoLossType lossType, Tensor policyChosen, Tensor policyRejected, Tensor referenceChosen, Tensor referenceRejected,
        double beta, double labelSmoothing = 0, Tensor? chosenLengths = null, Tensor? rejectedLengths = null)
    {
        CheckBeta(beta);
        CheckSmoothing(lossType, labelSmoothing);
        using var scope = torch.NewDisposeScope();
        var chosenRatio = policyChosen - referenceChosen;
        var rejectedRatio = policyRejected - referenceRejected;
        var delta = chosenRatio - rejectedRatio;
        Tensor loss = lossType switch
        {
            DpoLossType.Sigmoid => Smoothed(beta * delta, labelSmoothing),
            DpoLossType.Robust => (-(1 - labelSmoothing) * nn.functional.logsigmoid(beta * delta)
                                   + labelSmoothing * nn.functional.logsigmoid(-beta * delta)) / (1 - 2 * labelSmoothing),
            DpoLossType.Hinge => nn.functional.relu(1 - beta * delta),
            DpoLossType.Ipo => Ipo(chosenRatio, rejectedRatio, beta, chosenLengths, rejectedLengths),
            _ => throw new ArgumentException($"{lossType} is reference-free; call PreferenceLosses.SimPo or PreferenceLosses.Cpo (or DpoObjective, which picks the right one).", nameof(lossType)),
        };
        return loss.MoveToOuterDisposeScope();
    }

    static Tensor Ipo(Tensor chosenRatio, Tensor rejectedRatio, double beta, Tensor? chosenLengths, Tensor? rejectedLengths)
    {
        if (chosenLengths is null || rejectedLengths is null)
            throw new ArgumentException("IPO divides each log-ratio by its completion length; pass chosenLengths and rejectedLengths (completion token counts).");
        var d = chosenRatio / chosenLengths.to_type(chosenRatio.dtype).clamp_min(1) - rejectedRatio / rejectedLengths.to_type(rejectedRatio.dtype).clamp_min(1);
        return (d - 1 / (2 * beta)).pow(2);
    }

    /// <summary>cDPO-style smoothed logistic loss of the logits z: <c>−(1−ε)·log σ(z) − ε·log σ(−z)</c>.</summary>
    static Tensor Smoothed(Tensor z, double eps) =>
        eps == 0 ? -nn.functional.logsigmoid(z) : -(1 - eps) * nn.functional.logsigmoid(z) - eps * nn.functional.logsigmoid(-z);

    /// <summary>
    /// SimPO: <c>−(1−ε)·log σ(β·(avg_c − avg_r) − γ) − ε·log σ(−(β·(avg_c − avg_r) − γ))</c> from length-averaged
    /// policy log-probs (TRL computes <c>logits − γ/β</c>, then multiplies by β). No reference model.
    /// </summary>
    public static Tensor SimPo(Tensor averageChosen, Tensor averageRejected, double beta, double gamma, double labelSmoothing = 0)
    {
        CheckBeta(beta);
        CheckSmoothing(DpoLossType.SimPo, labelSmoothing);
        using var scope = torch.NewDisposeScope();
        return Smoothed(beta * (averageChosen - averageRejected - gamma / beta), labelSmoothing).MoveToOuterDisposeScope();
    }

    /// <summary>CPO's preference term: <c>−(1−ε)·log σ(β·(logp_c − logp_r)) − ε·log σ(−β·(logp_c − logp_r))</c> on summed policy log-probs (add the NLL term yourself).</summary>
    public static Tensor Cpo(Tensor chosen, Tensor rejected, double beta, double labelSmoothing = 0)
    {
        CheckBeta(beta);
        CheckSmoothing(DpoLossType.Cpo, labelSmoothing);
        using var scope = torch.NewDisposeScope();
        return Smoothed(beta * (chosen - rejected), labelSmoothing).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// KTO (Ethayarajh et al. 2024, TRL's <c>loss_type="kto"</c>): for a desirable example
    /// <c>w_D·(1 − σ(β·(logratio − KL)))</c>, for an undesirable one <c>w_U·(1 − σ(β·(KL − logratio)))</c>, where
    /// logratio = logπ − logπ_ref and KL is the batch's (detached) estimate from <see cref="KtoKlEstimate"/>.
    /// Returns the weighted per-example losses <c>[B]</c>; TRL's loss is their mean.
    /// </summary>
    public static Tensor Kto(Tensor policyLogProbs, Tensor referenceLogProbs, Tensor desirable, Tensor kl, double beta,
        double desirableWeight = 1, double undesirableWeight = 1)
    {
        CheckBeta(beta);
        using var scope = torch.NewDisposeScope();
        var ratio = policyLogProbs - referenceLogProbs;
        var d = desirable.to_type(ScalarType.Bool);
        var k = kl.detach();
        var chosenLoss = desirableWeight * (1 - torch.sigmoid(beta * (ratio - k)));
        var rejectedLoss = undesirableWeight * (1 - torch.sigmoid(beta * (k - ratio)));
        return torch.where(d, chosenLoss, rejectedLoss).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// KTO's KL estimate: the mean over the batch of logπ(y'|x) − logπ_ref(y'|x) on the mismatched KL rows, detached and
    /// clamped at 0 (TRL: <c>(KL_logps − ref_KL_logps).mean().detach().clamp(min=0)</c>).
    /// </summary>
    public static Tensor KtoKlEstimate(Tensor policyKlLogProbs, Tensor referenceKlLogProbs)
    {
        using var scope = torch.NewDisposeScope();
        return (policyKlLogProbs - referenceKlLogProbs).mean().detach().clamp_min(0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The reward model's Bradley–Terry loss (TRL's <c>RewardTrainer</c>), a scalar:
    /// <c>mean(−log σ(r_c − r_r − margin))</c>, plus <c>c · mean((r_c + r_r)²)</c> when a
    /// <paramref name="centerRewardsCoefficient"/> c is given (Eisenstein et al. 2023, Eq. 2; TRL recommends 0.01).
    /// </summary>
    public static Tensor BradleyTerry(Tensor chosenRewards, Tensor rejectedRewards, Tensor? margin = null, double? centerRewardsCoefficient = null)
    {
        using var scope = torch.NewDisposeScope();
        var diff = chosenRewards - rejectedRewards;
        if (margin is not null) diff = diff - margin.to_type(diff.dtype);
        var loss = -nn.functional.logsigmoid(diff).mean();
        if (centerRewardsCoefficient is double c) loss = loss + c * (chosenRewards + rejectedRewards).pow(2).mean();
        return loss.MoveToOuterDisposeScope();
    }

    static void CheckBeta(double beta)
    {
        if (!(beta > 0) || double.IsInfinity(beta))
            throw new ArgumentOutOfRangeException(nameof(beta), beta, $"beta is {beta}; it must be a positive number (TRL's default is 0.1).");
    }

    static void CheckSmoothing(DpoLossType type, double eps)
    {
        double max = type == DpoLossType.Robust ? 0.5 : 1.0;
        if (!(eps >= 0 && eps < max))
            throw new ArgumentOutOfRangeException(nameof(eps), eps, $"label smoothing is {eps}; for {type} it must lie in [0, {max}) (TRL recommends 0.1 for robust DPO).");
        if (eps != 0 && type is DpoLossType.Hinge or DpoLossType.Ipo)
            throw new ArgumentException($"label smoothing {eps} has no effect on the {type} loss; set it to 0, or use Sigmoid (cDPO) or Robust.");
    }
}
