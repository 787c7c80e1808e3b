using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment.Rl;

/// <summary>The clipped surrogate loss and its diagnostics (CleanRL's names).</summary>
/// <param name="Loss">Scalar policy loss to minimise.</param>
/// <param name="ApproxKl">The k3 estimator of KL(old ‖ new): mean of <c>(r − 1) − log r</c> (CleanRL's <c>approx_kl</c>), detached.</param>
/// <param name="OldApproxKl">The naive estimator mean of <c>−log r</c> (CleanRL's <c>old_approx_kl</c>), detached.</param>
/// <param name="ClipFraction">Fraction of samples with |r − 1| &gt; ε (CleanRL's <c>clipfrac</c>), detached.</param>
public sealed record ClippedSurrogate(Tensor Loss, Tensor ApproxKl, Tensor OldApproxKl, Tensor ClipFraction);

/// <summary>
/// The policy-gradient losses of this lesson, as plain tensor functions (autograd gives the gradients):
/// REINFORCE with a baseline, PPO's clipped surrogate and (optionally clipped) value loss, and the categorical entropy.
/// </summary>
public static class PolicyGradient
{
    /// <summary>
    /// REINFORCE (Williams 1992) with a baseline: <c>L = −mean(log π(aₜ|sₜ) · (Gₜ − bₜ))</c>, whose gradient is the
    /// score-function estimate <c>−mean(∇log π(aₜ|sₜ) · (Gₜ − bₜ))</c> of −∇J. The weights <c>Gₜ − bₜ</c> are detached:
    /// the baseline must not receive policy gradient (train it with its own loss). <paramref name="baselines"/> null = 0.
    /// </summary>
    public static Tensor ReinforceLoss(Tensor logProbs, Tensor returns, Tensor? baselines = null)
    {
        ArgumentNullException.ThrowIfNull(logProbs);
        ArgumentNullException.ThrowIfNull(returns);
        SameShape(logProbs, returns, "logProbs", "returns", "ReinforceLoss");
        if (baselines is not null) SameShape(logProbs, baselines, "logProbs", "baselines", "ReinforceLoss");
        using var scope = torch.NewDisposeScope();
        var weights = (baselines is null ? returns : returns - baselines).detach();
        return (-(logProbs * weights).mean()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PPO's clipped surrogate (Schulman et al. 2017, eq. 7, as a loss): with <c>r = exp(log π_new − log π_old)</c>,
    /// <c>L = mean(max(−A·r, −A·clip(r, 1 − ε, 1 + ε)))</c>. Advantages are used as given (normalize them first if wanted).
    /// </summary>
    public static ClippedSurrogate ClippedSurrogateLoss(Tensor newLogProbs, Tensor oldLogProbs, Tensor advantages, double clipCoef)
    {
        ArgumentNullException.ThrowIfNull(newLogProbs);
        ArgumentNullException.ThrowIfNull(oldLogProbs);
        ArgumentNullException.ThrowIfNull(advantages);
        SameShape(newLogProbs, oldLogProbs, "newLogProbs", "oldLogProbs", "ClippedSurrogateLoss");
        SameShape(newLogProbs, advantages, "newLogProbs", "advantages", "ClippedSurrogateLoss");
        if (!(clipCoef > 0)) throw new ArgumentOutOfRangeException(nameof(clipCoef), $"ClippedSurrogateLoss: clipCoef is {clipCoef}; use a positive ε such as 0.2.");
        // The one clipped PPO loss (Alignment.PpoLosses, shared with PPO-RLHF), read with CleanRL's diagnostics.
        var o = PpoLosses.PolicyLoss(newLogProbs, oldLogProbs, advantages, null, clipCoef);
        o.ClipFrac.Dispose(); o.ApproxKl.Dispose(); o.RatioMean.Dispose();
        return new ClippedSurrogate(o.Loss, o.K3Kl, o.OldApproxKl, o.RatioOutsideClip);
    }

    /// <summary>
    /// The critic's loss: <c>½·mean((V − R)²)</c>, or with <paramref name="clipCoef"/> (CleanRL's <c>clip_vloss</c>)
    /// <c>½·mean(max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²))</c>, which stops one update from moving a value
    /// far from the one the rollout saw.
    /// </summary>
    public static Tensor ValueLoss(Tensor newValues, Tensor returns, Tensor? oldValues = null, double? clipCoef = null)
    {
        ArgumentNullException.ThrowIfNull(newValues);
        ArgumentNullException.ThrowIfNull(returns);
        SameShape(newValues, returns, "newValues", "returns", "ValueLoss");
        using var scope = torch.NewDisposeScope();
        var target = returns.detach();
        var unclipped = (newValues - target).square();
        if (clipCoef is null) return (0.5 * unclipped.mean()).MoveToOuterDisposeScope();
        if (oldValues is null) throw new ArgumentException("ValueLoss: value clipping needs the rollout's values; pass oldValues, or clipCoef null for the plain loss.", nameof(oldValues));
        SameShape(newValues, oldValues, "newValues", "oldValues", "ValueLoss");
        var (loss, clipFraction) = PpoLosses.ValueLoss(newValues, oldValues, returns, null, clipCoef.Value);   // the one clipped value loss
        clipFraction.Dispose();
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>Entropy of the categorical distributions given by <paramref name="logits"/> <c>[batch, actions]</c>: <c>−Σ p·log p</c>, shape <c>[batch]</c>.</summary>
    public static Tensor Entropy(Tensor logits)
    {
        using var scope = torch.NewDisposeScope();
        var logp = logits.log_softmax(-1);
        return (-(logp.exp() * logp).sum(-1)).MoveToOuterDisposeScope();
    }

    /// <summary>log π(a|s) of the taken <paramref name="actions"/> (int64 <c>[batch]</c>) under <paramref name="logits"/> <c>[batch, actions]</c>.</summary>
    public static Tensor LogProbs(Tensor logits, Tensor actions)
    {
        using var scope = torch.NewDisposeScope();
        return logits.log_softmax(-1).gather(1, actions.to_type(ScalarType.Int64).unsqueeze(1)).squeeze(1).MoveToOuterDisposeScope();
    }

    static void SameShape(Tensor a, Tensor b, string nameA, string nameB, string where)
    {
        if (!a.shape.SequenceEqual(b.shape))
            throw new ArgumentException($"{where}: {nameA} [{string.Join(", ", a.shape)}] and {nameB} [{string.Join(", ", b.shape)}] must have the same shape (one entry per sample); flatten both the same way.");
    }
}
