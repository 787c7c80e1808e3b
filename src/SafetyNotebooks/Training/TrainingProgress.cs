using System.Globalization;

namespace SafetyNotebooks.Training;

/// <summary>State after one optimizer update, passed to <see cref="Trainer.Progress"/> listeners.</summary>
/// <param name="Step">Updates completed so far (1-based, HF's <c>global_step</c>).</param>
/// <param name="MaxSteps">Total updates planned.</param>
/// <param name="Loss">Training loss of this update's batch.</param>
/// <param name="LearningRate">Rate used for this update.</param>
/// <param name="GradNorm">Global gradient L2 norm before clipping.</param>
/// <param name="Elapsed">Wall time since training started.</param>
/// <param name="EvalMetrics">Eval metrics (keys like <c>eval/loss</c>) if an evaluation ran at this step, else null.</param>
public sealed record TrainingProgress(int Step, int MaxSteps, double Loss, double LearningRate, double GradNorm,
    TimeSpan Elapsed, IReadOnlyDictionary<string, double>? EvalMetrics)
{
    /// <summary>Fraction done, in [0, 1].</summary>
    public double Fraction => MaxSteps <= 0 ? 1 : (double)Step / MaxSteps;

    /// <summary>One-line summary, e.g. <c>step 100/1000 (10%) loss 2.3012 lr 1.00e-003 grad_norm 0.812 | eval/loss 2.29 | 3.1s</c>.</summary>
    public override string ToString()
    {
        var ci = CultureInfo.InvariantCulture;
        var s = string.Format(ci, "step {0}/{1} ({2:0}%) loss {3:0.0000} lr {4:0.00e+00} grad_norm {5:0.000}",
            Step, MaxSteps, 100 * Fraction, Loss, LearningRate, GradNorm);
        if (EvalMetrics is { Count: > 0 })
            s += " | " + string.Join(" ", EvalMetrics.Select(kv => string.Format(ci, "{0} {1:0.0000}", kv.Key, kv.Value)));
        return s + string.Format(ci, " | {0:0.0}s", Elapsed.TotalSeconds);
    }
}
