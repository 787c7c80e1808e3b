using SafetyNotebooks.Cli.Benchmarks;
using SafetyNotebooks.Runtime;
using Xunit;

namespace SafetyNotebooks.Cli.Tests.Benchmarks;

/// <summary>Only checks that the benchmark workloads run and report sane numbers (tiny repetition counts).</summary>
public class BenchmarkSmokeTests
{
    static BenchmarkSmokeTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Workloads_are_registered_and_small_ones_run()
    {
        Assert.Equal(new[] { "attn_only_train_step", "gpt2_small_forward", "gpt2_small_run_with_cache", "matmul_peak" },
            ModelBenchmarks.Workloads.Keys.OrderBy(k => k));
        var step = ModelBenchmarks.AttnOnlyTrainStep(warmup: 0, runs: 1);
        Assert.InRange(step, 1e-5, 30);
        Assert.InRange(ModelBenchmarks.MatmulPeak(n: 128, warmup: 0, runs: 3), 0.01, 1e5);
    }
}
