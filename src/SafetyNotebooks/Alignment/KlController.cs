using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>Which per-token estimator of KL(π ‖ π_ref) to use (Schulman, "Approximating KL Divergence"; TRL's <c>kl_estimator</c>).</summary>
public enum KlEstimator
{
    /// <summary><c>k1 = log π(x) − log π_ref(x)</c>: unbiased, high variance, can be negative per token (TRL's default <c>"k1"</c>).</summary>
    K1,
    /// <summary><c>k3 = (r − 1) − log r</c> with <c>r = π_ref(x)/π(x)</c>: unbiased, lower variance, never negative (TRL's <c>"k3"</c>, GRPO's KL).</summary>
    K3,
}

/// <summary>
/// Per-token KL estimators from samples of the policy: with <c>log r = log π_ref(x) − log π(x)</c>,
/// <c>k1 = −log r</c> and <c>k3 = (r − 1) − log r</c>. Both are unbiased estimates of KL(π ‖ π_ref) when x ~ π.
/// </summary>
public static class KlEstimators
{
    /// <summary>k1 = logp − refLogp, elementwise (any shape).</summary>
    public static Tensor K1(Tensor logProbs, Tensor refLogProbs)
    {
        CheckShapes(logProbs, refLogProbs);
        return logProbs - refLogProbs;
    }

    /// <summary>k3 = exp(refLogp − logp) − 1 − (refLogp − logp), elementwise (any shape); ≥ 0.</summary>
    public static Tensor K3(Tensor logProbs, Tensor refLogProbs)
    {
        CheckShapes(logProbs, refLogProbs);
        using var scope = torch.NewDisposeScope();
        var logr = refLogProbs - logProbs;
        return (logr.exp() - 1 - logr).MoveToOuterDisposeScope();
    }

    /// <summary>The chosen estimator, elementwise.</summary>
    public static Tensor Estimate(Tensor logProbs, Tensor refLogProbs, KlEstimator estimator) => estimator switch
    {
        KlEstimator.K1 => K1(logProbs, refLogProbs),
        KlEstimator.K3 => K3(logProbs, refLogProbs),
        _ => throw new ArgumentOutOfRangeException(nameof(estimator), estimator, "Use KlEstimator.K1 or KlEstimator.K3."),
    };

    static void CheckShapes(Tensor logProbs, Tensor refLogProbs)
    {
        ArgumentNullException.ThrowIfNull(logProbs);
        ArgumentNullException.ThrowIfNull(refLogProbs);
        if (!logProbs.shape.SequenceEqual(refLogProbs.shape))
            throw new ArgumentException($"KL estimate: the policy's log-probs are [{string.Join(", ", logProbs.shape)}] but the reference's are [{string.Join(", ", refLogProbs.shape)}]; score the same completion tokens with both models.", nameof(refLogProbs));
    }
}

/// <summary>The KL coefficient β of the per-token penalty −β·KL, and how it changes after each rollout (TRL's KL controllers).</summary>
public interface IKlController
{
    /// <summary>The current coefficient β.</summary>
    double Value { get; }

    /// <summary>Updates β from the KL measured on the last rollout (<paramref name="currentKl"/>, summed over tokens and
    /// averaged over sequences, TRL's <c>objective/kl</c>) and the number of sequences in it.</summary>
    void Update(double currentKl, int nSteps);
}

/// <summary>A constant β (TRL's <c>FixedKLController</c>; <c>kl_coef</c> of the PPO trainer).</summary>
public sealed class FixedKlController : IKlController
{
    /// <summary>Creates the controller with β = <paramref name="klCoef"/> (≥ 0).</summary>
    public FixedKlController(double klCoef)
    {
        if (!(klCoef >= 0)) throw new ArgumentOutOfRangeException(nameof(klCoef), klCoef, "The KL coefficient must be ≥ 0 (0 switches the penalty off).");
        Value = klCoef;
    }

    /// <inheritdoc/>
    public double Value { get; }

    /// <inheritdoc/>
    public void Update(double currentKl, int nSteps) { }
}

/// <summary>
/// Ziegler et al. (2019)'s adaptive KL coefficient, as TRL's <c>AdaptiveKLController</c>: after each rollout,
/// <c>e = clip(KL / target − 1, −0.2, 0.2)</c> and <c>β ← β · (1 + e · nSteps / horizon)</c>, so β grows when the
/// policy drifts further than <see cref="Target"/> from the reference and shrinks when it stays closer.
/// </summary>
public sealed class AdaptiveKlController : IKlController
{
    /// <summary>Creates the controller (TRL defaults: <c>init_kl_coef</c> 0.2, <c>target</c> 6, <c>horizon</c> 10000).</summary>
    public AdaptiveKlController(double initKlCoef = 0.2, double target = 6.0, double horizon = 10000.0)
    {
        if (!(initKlCoef >= 0)) throw new ArgumentOutOfRangeException(nameof(initKlCoef), initKlCoef, "The initial KL coefficient must be ≥ 0.");
        if (!(target > 0)) throw new ArgumentOutOfRangeException(nameof(target), target, "The KL target must be > 0 (nats per sequence, e.g. TRL's 6).");
        if (!(horizon > 0)) throw new ArgumentOutOfRangeException(nameof(horizon), horizon, "The horizon must be > 0 (sequences over which β adapts, e.g. TRL's 10000).");
        Value = initKlCoef;
        Target = target;
        Horizon = horizon;
    }

    /// <inheritdoc/>
    public double Value { get; private set; }
    /// <summary>The KL (per sequence) the controller steers towards.</summary>
    public double Target { get; }
    /// <summary>How many sequences a full proportional correction is spread over.</summary>
    public double Horizon { get; }

    /// <inheritdoc/>
    public void Update(double currentKl, int nSteps)
    {
        double error = Math.Clamp(currentKl / Target - 1, -0.2, 0.2);
        Value *= 1 + error * nSteps / Horizon;
    }
}
