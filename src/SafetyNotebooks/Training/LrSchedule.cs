namespace SafetyNotebooks.Training;

/// <summary>Shape of the learning-rate curve after warmup (HF's <c>lr_scheduler_type</c>).</summary>
public enum LrSchedulerType
{
    /// <summary>Half-cosine from the peak down to the minimum (HF <c>cosine</c>, nanoGPT).</summary>
    Cosine,
    /// <summary>Straight line from the peak down to the minimum (HF <c>linear</c>).</summary>
    Linear,
    /// <summary>Stays at the peak (HF <c>constant_with_warmup</c>).</summary>
    Constant,
}

/// <summary>
/// Pure learning-rate schedules. <c>step</c> is the 0-based index of the optimizer update the rate is used for.
/// <list type="bullet">
/// <item>Warmup (<c>step &lt; warmupSteps</c>): <c>peak · (step + 1) / warmupSteps</c>, so the first update
/// already moves and the last warmup update uses the peak (HF's version starts at exactly 0 instead).</item>
/// <item>Afterwards, with <c>progress = (step − warmupSteps) / max(1, totalSteps − warmupSteps)</c> clamped to [0, 1]:
/// cosine <c>min + (peak − min) · ½ · (1 + cos(π · progress))</c>; linear <c>min + (peak − min) · (1 − progress)</c>.</item>
/// </list>
/// </summary>
public static class LrSchedule
{
    /// <summary>Linear warmup then cosine decay to <paramref name="minLr"/>.</summary>
    public static double WarmupCosine(int step, double peakLr, int warmupSteps, int totalSteps, double minLr = 0) =>
        Compute(LrSchedulerType.Cosine, step, peakLr, warmupSteps, totalSteps, minLr);

    /// <summary>Linear warmup then linear decay to <paramref name="minLr"/>.</summary>
    public static double WarmupLinear(int step, double peakLr, int warmupSteps, int totalSteps, double minLr = 0) =>
        Compute(LrSchedulerType.Linear, step, peakLr, warmupSteps, totalSteps, minLr);

    /// <summary>The rate for <paramref name="step"/> under any <see cref="LrSchedulerType"/>.</summary>
    public static double Compute(LrSchedulerType type, int step, double peakLr, int warmupSteps, int totalSteps, double minLr = 0)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step));
        if (warmupSteps > 0 && step < warmupSteps) return peakLr * (step + 1) / warmupSteps;
        double progress = Math.Clamp((double)(step - Math.Max(0, warmupSteps)) / Math.Max(1, totalSteps - Math.Max(0, warmupSteps)), 0, 1);
        return type switch
        {
            LrSchedulerType.Cosine => minLr + (peakLr - minLr) * 0.5 * (1 + Math.Cos(Math.PI * progress)),
            LrSchedulerType.Linear => minLr + (peakLr - minLr) * (1 - progress),
            _ => peakLr,
        };
    }

    /// <summary>The rate <paramref name="config"/> prescribes for update <paramref name="step"/>.</summary>
    public static double For(TrainerConfig config, int step) => Compute(config.LrSchedulerType, step, config.LearningRate,
        config.WarmupSteps, config.MaxSteps, config.LearningRate * config.MinLearningRateRatio);
}
