using SafetyNotebooks.Teaching;

namespace SafetyNotebooks.Tests.Teaching;

/// <summary><see cref="LearningCurves.FindPhaseChange"/> on hand-made curves with hand-worked windows and plateaus.</summary>
public class LearningCurvesTests
{
    static readonly double[] Steps = Enumerable.Range(0, 101).Select(t => (double)t).ToArray();

    [Fact]
    public void A_plateau_then_a_drop_is_a_phase_change()
    {
        // Loss 4 until step 50, a straight fall to 0.2 over steps 50…58, then 0.2. Window = 10 % of 100 steps = 10 steps.
        var loss = Steps.Select(t => t <= 50 ? 4.0 : t >= 58 ? 0.2 : 4.0 - 3.8 * (t - 50) / 8).ToArray();
        var r = LearningCurves.FindPhaseChange(Steps, loss, minPlateauEvals: 10, plateauTolerance: 0.1);
        // The earliest 10-step window holding the whole fall of 3.8 is steps 48…58; steps 0…48 (49 evaluations) sit at 4.
        Assert.Equal(48, r.WindowFrom);
        Assert.Equal(58, r.WindowTo);
        Assert.Equal(3.8, r.WindowDrop, 12);
        Assert.Equal(1.0, r.DropFraction, 12);
        Assert.Equal(4.0, r.PlateauLevel);
        Assert.Equal(49, r.PlateauEvals);
        Assert.True(r.IsPhaseChange);
    }

    [Fact]
    public void A_fast_smooth_exponential_decay_is_not_a_phase_change_although_its_first_window_holds_most_of_the_fall()
    {
        // 0.2 + 3.8·exp(−t/5): the steepest window is steps 0…10, holding 1 − e^−2 ≈ 86 % of the fall (the old criterion passed).
        var loss = Steps.Select(t => 0.2 + 3.8 * Math.Exp(-t / 5)).ToArray();
        var r = LearningCurves.FindPhaseChange(Steps, loss, minPlateauEvals: 10, plateauTolerance: 0.1);
        Assert.Equal(0, r.WindowFrom);
        Assert.Equal(10, r.WindowTo);
        Assert.Equal((1 - Math.Exp(-2)) / (1 - Math.Exp(-20)), r.DropFraction, 9);
        Assert.True(r.DropFraction > 0.5);
        Assert.Equal(1, r.PlateauEvals);                 // nothing before the window
        Assert.False(r.IsPhaseChange);
    }

    [Fact]
    public void A_plateau_shorter_than_required_or_a_slow_fall_is_not_a_phase_change()
    {
        // Loss 4 until step 8, then the same sharp fall over steps 8…16: the earliest full window is steps 6…16, and only
        // steps 0…6 (7 evaluations) come before it, fewer than the 10 required.
        var brief = Steps.Select(t => t <= 8 ? 4.0 : t >= 16 ? 0.2 : 4.0 - 3.8 * (t - 8) / 8).ToArray();
        var r = LearningCurves.FindPhaseChange(Steps, brief, minPlateauEvals: 10, plateauTolerance: 0.1);
        Assert.Equal(6, r.WindowFrom);
        Assert.Equal(7, r.PlateauEvals);
        Assert.Equal(1.0, r.DropFraction, 12);
        Assert.False(r.IsPhaseChange);
        // A straight line from 4 to 0.2 over all 100 steps: every 10-step window holds 10 % of the fall.
        var line = Steps.Select(t => 4.0 - 0.038 * t).ToArray();
        var s = LearningCurves.FindPhaseChange(Steps, line, minPlateauEvals: 1, plateauTolerance: 0.1);
        Assert.Equal(0.1, s.DropFraction, 9);
        Assert.False(s.IsPhaseChange);
    }

    [Fact]
    public void Mismatched_unsorted_or_non_finite_curves_fail_with_the_fix_in_the_message()
    {
        var e1 = Assert.Throws<ArgumentException>(() => LearningCurves.FindPhaseChange([0, 1, 2], [1.0, 0.5], 1, 0.1));
        Assert.Contains("one step per loss", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => LearningCurves.FindPhaseChange([0, 2, 1], [1.0, 0.5, 0.2], 1, 0.1));
        Assert.Contains("sort the evaluations by step", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => LearningCurves.FindPhaseChange([0, 1, 2], [1.0, double.NaN, 0.2], 1, 0.1));
        Assert.Contains("must be finite", e3.Message);
    }
}
