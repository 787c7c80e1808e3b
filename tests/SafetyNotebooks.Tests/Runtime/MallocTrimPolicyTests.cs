using System.Runtime.InteropServices;
using SafetyNotebooks.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Runtime;

public class MallocTrimPolicyTests
{
    static bool LinuxX64 => RuntimeInformation.IsOSPlatform(OSPlatform.Linux) && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    [Fact]
    public void Starts_when_TorchSharp_loads_on_linux_x64()
    {
        TorchRuntime.EnsureLoaded();
        if (!LinuxX64) { Assert.False(MallocTrimPolicy.IsOn); return; }
        if (Environment.GetEnvironmentVariable(MallocTrimPolicy.OptOutVariable) == "off")
        {
            Assert.StartsWith("off", MallocTrimPolicy.Status);
            return;
        }
        Assert.True(MallocTrimPolicy.IsOn, MallocTrimPolicy.Status);
        Assert.StartsWith("on: malloc_trim", MallocTrimPolicy.Status);
    }

    [Theory]
    // level 200 MB: the trigger is 200 × 1.5 + 32 = 332 MB
    [InlineData(200, 331, false)]
    [InlineData(200, 333, true)]
    // level 1000 MB: 1,532 MB
    [InlineData(1000, 1500, false)]
    [InlineData(1000, 1600, true)]
    public void Trims_only_when_rss_outgrows_its_level(double levelMb, double rssMb, bool expected) =>
        Assert.Equal(expected, MallocTrimPolicy.ShouldTrim(rssMb, levelMb));

    [SkippableFact]
    public void Freed_tensor_memory_that_glibc_keeps_is_returned_to_the_system_by_a_trim()
    {
        Skip.If(!LinuxX64 || !MallocTrimPolicy.IsOn, $"the malloc trim policy is not on here ({MallocTrimPolicy.Status})");
        TorchRuntime.EnsureLoaded();
        int trims = MallocTrimPolicy.Trims;
        // Freeing a 16 MB block raises glibc's mmap threshold to 16 MB, so the 1 MB tensors below come from its heaps.
        using (var big = ones(4 << 20)) { }
        var tensors = new List<Tensor>();
        for (int i = 0; i < 240; i++) tensors.Add(ones(256 << 10)); // 240 × 1 MB, every page touched
        double peak = MallocTrimPolicy.ResidentMb()!.Value;
        for (int i = 0; i < tensors.Count; i += 2) tensors[i].Dispose(); // 120 MB of holes between live tensors
        double holes = MallocTrimPolicy.ResidentMb()!.Value;
        MallocTrimPolicy.Trim(); // what the policy's timer calls when RSS outgrows its level
        double after = MallocTrimPolicy.ResidentMb()!.Value;
        for (int i = 1; i < tensors.Count; i += 2) tensors[i].Dispose();
        // glibc keeps the 120 MB of holes resident after the tensors are freed; a trim gives most of them back.
        Assert.True(peak - after >= 80, $"RSS {peak:0} MB with all tensors, {holes:0} MB with half freed, {after:0} MB after the trim");
        Assert.True(MallocTrimPolicy.Trims > trims);
    }
}
