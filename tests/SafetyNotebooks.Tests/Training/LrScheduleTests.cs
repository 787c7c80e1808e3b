using SafetyNotebooks.Training;
using Xunit;

namespace SafetyNotebooks.Tests.Training;

public class LrScheduleTests
{
    // peak 1e-3, warmup 10, total 110 → 100 decay steps.
    [Theory]
    [InlineData(0, 1e-4)]                       // 1e-3 · 1/10
    [InlineData(4, 5e-4)]                       // 1e-3 · 5/10
    [InlineData(9, 1e-3)]                       // last warmup step reaches the peak
    [InlineData(10, 1e-3)]                      // progress 0 → cos 0 = 1
    [InlineData(35, 8.5355339059327376e-4)]     // progress 0.25 → ½(1 + √2/2) = 0.853553…
    [InlineData(60, 5e-4)]                      // progress 0.5 → ½
    [InlineData(85, 1.4644660940672624e-4)]     // progress 0.75 → ½(1 − √2/2)
    [InlineData(110, 0.0)]                      // progress 1
    [InlineData(500, 0.0)]                      // clamped
    public void Warmup_cosine_matches_formula(int step, double expected) =>
        Assert.Equal(expected, LrSchedule.WarmupCosine(step, 1e-3, 10, 110), 12);

    [Fact]
    public void Warmup_cosine_with_floor()
    {
        // min 1e-4: at progress ½ → 1e-4 + 0.9e-3 · ½ = 5.5e-4
        Assert.Equal(5.5e-4, LrSchedule.WarmupCosine(60, 1e-3, 10, 110, minLr: 1e-4), 12);
        Assert.Equal(1e-4, LrSchedule.WarmupCosine(110, 1e-3, 10, 110, minLr: 1e-4), 12);
    }

    [Fact]
    public void No_warmup_linear_and_constant()
    {
        Assert.Equal(1e-3, LrSchedule.WarmupCosine(0, 1e-3, 0, 100), 12);
        Assert.Equal(0.75e-3, LrSchedule.WarmupLinear(25, 1e-3, 0, 100), 12);   // 1 − 25/100
        Assert.Equal(4e-4, LrSchedule.Compute(LrSchedulerType.Constant, 1, 1e-3, 5, 100), 12);  // warmup: 1e-3 · (1+1)/5
        Assert.Equal(1e-3, LrSchedule.Compute(LrSchedulerType.Constant, 70, 1e-3, 5, 100), 12);
    }

    [Fact]
    public void For_uses_config()
    {
        var c = new TrainerConfig { LearningRate = 2e-3, WarmupSteps = 0, MaxSteps = 100, MinLearningRateRatio = 0.1 };
        // progress 0.5: 2e-4 + (2e-3 − 2e-4) · ½ = 1.1e-3
        Assert.Equal(1.1e-3, LrSchedule.For(c, 50), 12);
    }
}
