using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Runtime;

public class MklVendorCheckTests
{
    [Fact]
    public void Matmul_on_the_fast_kernels_matches_a_naive_loop()
    {
        // Whatever kernels MKL picked (the AMD change selects AVX-512 ones here), results must match a plain
        // triple loop in double precision. Sizes are odd on purpose, to exercise kernel edge handling.
        TorchRuntime.EnsureLoaded();
        var rng = new Random(5);
        int m = 97, k = 131, n = 71;
        var a = new float[m * k]; var b = new float[k * n];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < b.Length; i++) b[i] = (float)(rng.NextDouble() * 2 - 1);
        using var c = tensor(a).reshape(m, k).matmul(tensor(b).reshape(k, n));
        var got = c.data<float>().ToArray();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int t = 0; t < k; t++) s += (double)a[i * k + t] * b[t * n + j];
                Assert.True(Math.Abs(got[i * n + j] - s) < 1e-4, $"c[{i},{j}] = {got[i * n + j]}, expected {s}");
            }
    }

    [SkippableFact]
    public void The_change_is_applied_exactly_on_amd_cpus_unless_opted_out()
    {
        TorchRuntime.EnsureLoaded();
        bool amd = File.ReadLines("/proc/cpuinfo").First(l => l.StartsWith("vendor_id")).Contains("AuthenticAMD");
        Assert.Equal(amd, MklVendorCheck.IsAmdCpu());
        Skip.If(TorchRuntime.NativeFolder == null, "TorchSharp was loaded by its own search: nothing preloaded to change");
        bool optedOut = string.Equals(Environment.GetEnvironmentVariable(MklVendorCheck.OptOutVariable), "keep", StringComparison.OrdinalIgnoreCase);
        Assert.Equal(amd && !optedOut, TorchRuntime.MklOnAmd.StartsWith("AMD:"));
    }
}
