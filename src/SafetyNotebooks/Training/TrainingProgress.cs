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

/// <summary>
/// Default console progress: rewrites one line in place (<c>\r</c>, at most ~5 times a second) when stdout is a
/// terminal; otherwise (redirected output, notebooks, CI logs) prints a line only each time another ~10% is done,
/// so long runs stay short in logs. Each line shows the most recent eval metrics, if any.
/// </summary>
public sealed class ConsoleProgressReporter : IProgress<TrainingProgress>
{
    readonly TextWriter _out;
    readonly bool _interactive;
    int _lastDecile = -1;
    DateTime _lastWrite = DateTime.MinValue;
    int _lastWidth;
    IReadOnlyDictionary<string, double>? _lastEval;
    bool _freshEval;

    /// <summary>Creates a reporter writing to <paramref name="writer"/> (default <see cref="Console.Out"/>);
    /// <paramref name="interactive"/> defaults to "stdout is not redirected".</summary>
    public ConsoleProgressReporter(TextWriter? writer = null, bool? interactive = null)
    {
        _out = writer ?? Console.Out;
        _interactive = interactive ?? !Console.IsOutputRedirected;
    }

    /// <inheritdoc/>
    public void Report(TrainingProgress p)
    {
        _freshEval = p.EvalMetrics is not null;
        if (_freshEval) _lastEval = p.EvalMetrics;
        else if (_lastEval is not null) p = p with { EvalMetrics = _lastEval };
        bool last = p.Step >= p.MaxSteps;
        if (_interactive)
        {
            var now = DateTime.UtcNow;
            if (!last && !_freshEval && (now - _lastWrite).TotalSeconds < 0.2) return;
            _lastWrite = now;
            var line = p.ToString();
            _out.Write("\r" + line + new string(' ', Math.Max(0, _lastWidth - line.Length)));
            _lastWidth = line.Length;
            if (last) _out.WriteLine();
            _out.Flush();
        }
        else
        {
            int decile = (int)Math.Floor(10 * p.Fraction);
            if (decile == _lastDecile && !last) return;
            if (last && _lastDecile == 10) return;
            _lastDecile = decile;
            _out.WriteLine(p.ToString());
        }
    }
}
