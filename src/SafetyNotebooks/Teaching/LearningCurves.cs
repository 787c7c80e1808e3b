namespace SafetyNotebooks.Teaching;

/// <summary>
/// What <see cref="LearningCurves.FindPhaseChange"/> found on a loss curve. Indices refer to the evaluations passed in.
/// </summary>
/// <param name="WindowFrom">First evaluation of the steepest window.</param>
/// <param name="WindowTo">Last evaluation of the steepest window.</param>
/// <param name="WindowDrop">Loss fall inside the window, <c>loss[WindowFrom] − loss[WindowTo]</c>.</param>
/// <param name="TotalDrop">Loss fall over the whole curve, <c>loss[0] − loss[^1]</c>.</param>
/// <param name="PlateauLevel">The loss at the window's start, <c>loss[WindowFrom]</c>: the level the plateau must hold.</param>
/// <param name="PlateauEvals">
/// How many consecutive evaluations up to and including <paramref name="WindowFrom"/> stay within the tolerance of
/// <paramref name="PlateauLevel"/> (1 when the steepest window starts at the first evaluation).
/// </param>
/// <param name="IsPhaseChange">Whether both criteria hold: a plateau of at least the required length, then a steep window.</param>
public sealed record PhaseChangeReport(int WindowFrom, int WindowTo, double WindowDrop, double TotalDrop, double PlateauLevel, int PlateauEvals, bool IsPhaseChange)
{
    /// <summary>The share of the whole fall that happens inside the steepest window (0 when the curve does not fall).</summary>
    public double DropFraction => TotalDrop > 0 ? WindowDrop / TotalDrop : 0;
}

/// <summary>Criteria on training curves that notebooks check (pure functions of the recorded numbers).</summary>
public static class LearningCurves
{
    /// <summary>
    /// Tells a phase change (a plateau, then a sudden drop) from smooth learning, however fast. Two criteria:
    /// <list type="number">
    /// <item>steep window: within some window of at most <paramref name="windowFraction"/> of the run (in steps), the loss falls
    /// by more than <paramref name="minDropFraction"/> of its whole fall (first evaluation to last);</item>
    /// <item>plateau first: the steepest such window starts after at least <paramref name="minPlateauEvals"/> consecutive
    /// evaluations (the window's first included) whose loss stays within <paramref name="plateauTolerance"/> of the loss at the
    /// window's start.</item>
    /// </list>
    /// A fast exponential decay passes the first criterion (its steepest window is its start) but not the second: nothing
    /// comes before it. Of several equally steep windows, the earliest is taken.
    /// </summary>
    /// <param name="steps">Training step of each evaluation, strictly increasing.</param>
    /// <param name="losses">Loss at each evaluation (finite).</param>
    /// <param name="minPlateauEvals">Required length of the plateau, in evaluations (≥ 1).</param>
    /// <param name="plateauTolerance">How far (absolute, in loss units) a plateau evaluation may be from the plateau level (≥ 0).</param>
    /// <param name="windowFraction">Window width as a fraction of the run's steps, in (0, 1].</param>
    /// <param name="minDropFraction">Share of the whole fall the window must hold, in (0, 1].</param>
    public static PhaseChangeReport FindPhaseChange(IReadOnlyList<double> steps, IReadOnlyList<double> losses, int minPlateauEvals,
        double plateauTolerance, double windowFraction = 0.1, double minDropFraction = 0.5)
    {
        ArgumentNullException.ThrowIfNull(steps);
        ArgumentNullException.ThrowIfNull(losses);
        int n = losses.Count;
        if (steps.Count != n || n < 2)
            throw new ArgumentException($"FindPhaseChange needs one step per loss and at least two evaluations; got {steps.Count} steps and {n} losses (pass the eval steps and eval losses of the same records).");
        for (int i = 0; i < n; i++)
        {
            if (!double.IsFinite(losses[i]) || !double.IsFinite(steps[i]))
                throw new ArgumentException($"FindPhaseChange: evaluation {i} has step {steps[i]}, loss {losses[i]}; every step and loss must be finite (drop diverged evaluations first).");
            if (i > 0 && steps[i] <= steps[i - 1])
                throw new ArgumentException($"FindPhaseChange: steps must increase, but evaluation {i} (step {steps[i]}) does not come after evaluation {i - 1} (step {steps[i - 1]}); sort the evaluations by step.");
        }
        if (minPlateauEvals < 1 || !(plateauTolerance >= 0) || !(windowFraction > 0 && windowFraction <= 1) || !(minDropFraction > 0 && minDropFraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(minPlateauEvals), $"FindPhaseChange: use minPlateauEvals ≥ 1 (got {minPlateauEvals}), plateauTolerance ≥ 0 (got {plateauTolerance}), " +
                $"windowFraction in (0, 1] (got {windowFraction}) and minDropFraction in (0, 1] (got {minDropFraction}).");

        double window = windowFraction * (steps[n - 1] - steps[0]);
        int from = 0, to = 0;
        double best = double.NegativeInfinity;
        for (int i = 0; i < n; i++)
            for (int j = i; j < n && steps[j] - steps[i] <= window; j++)
                if (losses[i] - losses[j] > best) { best = losses[i] - losses[j]; from = i; to = j; }
        double level = losses[from];
        int plateau = 0;
        for (int k = from; k >= 0 && Math.Abs(losses[k] - level) <= plateauTolerance; k--) plateau++;
        double total = losses[0] - losses[n - 1];
        bool steep = total > 0 && best / total > minDropFraction;
        return new PhaseChangeReport(from, to, best, total, level, plateau, steep && plateau >= minPlateauEvals);
    }
}
