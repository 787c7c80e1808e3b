using SafetyNotebooks.Runtime;

namespace SafetyNotebooks.Tests.Runtime;

public class ProgressTests
{
    [Fact]
    public void Redirected_console_gets_about_one_line_per_tenth_not_one_per_step()
    {
        var w = new StringWriter();
        using (var p = Progress.Start("train", 1000, new ConsoleProgressSink(w, inPlace: false)))
            for (int i = 1; i <= 1000; i++) p.Report(i, ("loss", 1.0 / i));
        var lines = w.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.InRange(lines.Length, 10, 13);   // deciles 0..10 (+ the final "done" line)
        Assert.Contains("1000/1000", lines[^1]);
        Assert.Contains("done", lines[^1]);
    }

    [Fact]
    public void Line_shows_percent_bar_steps_and_metrics()
    {
        var u = new ProgressUpdate("fit", 25, 100, TimeSpan.FromSeconds(10), new Dictionary<string, double> { ["loss"] = 0.5 }, false);
        var line = u.ToLine(barWidth: 8);
        Assert.StartsWith("fit  25% [##------] 25/100  loss=0.5  0:10 elapsed, 0:30 left", line);
        Assert.Equal(0.25, u.Fraction);
        Assert.Equal(TimeSpan.FromSeconds(30), u.Remaining);
    }

    [Fact]
    public void Quick_mode_follows_the_environment_variable()
    {
        var old = Environment.GetEnvironmentVariable(QuickMode.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(QuickMode.EnvironmentVariable, "1");
            Assert.True(QuickMode.IsOn);
            Assert.Equal(3, QuickMode.Pick(100, 3));
            Environment.SetEnvironmentVariable(QuickMode.EnvironmentVariable, "0");
            Assert.False(QuickMode.IsOn);
            Assert.Equal(100, QuickMode.Pick(100, 3));
        }
        finally { Environment.SetEnvironmentVariable(QuickMode.EnvironmentVariable, old); }
    }

    [Fact]
    public void Same_seed_same_numbers()
    {
        Seeds.Set(7);
        var a = TorchSharp.torch.randn(5).data<float>().ToArray();
        Seeds.Set(7);
        var b = TorchSharp.torch.randn(5).data<float>().ToArray();
        Assert.Equal(a, b);
    }
}
