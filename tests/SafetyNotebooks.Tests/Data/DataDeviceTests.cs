using SafetyNotebooks.Data;
using SafetyNotebooks.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Data;

/// <summary>
/// Every data source creates its tensors on the device it is given. The meta device (shapes without data) stands in
/// for a GPU: a path that hard-coded the CPU would hand back CPU tensors here.
/// </summary>
public class DataDeviceTests
{
    public DataDeviceTests() => TorchRuntime.EnsureLoaded();

    static readonly Device Meta = new("meta");

    [Theory, MemberData(nameof(SyntheticTasksTests.AllTasks), MemberType = typeof(SyntheticTasksTests))]
    public void Tasks_create_batches_on_the_given_device(ISyntheticTask task)
    {
        using var b = task.Generate(4, new Random(1), Meta);
        Assert.Equal(DeviceType.META, b.Tokens.device_type);
        Assert.Equal(DeviceType.META, b.TargetMask.device_type);
        if (b.Labels is not null) Assert.Equal(DeviceType.META, b.Labels.device_type);
        Assert.Equal(new long[] { 4, task.SequenceLength }, b.Tokens.shape);
        using var c = task.Generate(4, seed: 2, device: Meta);
        Assert.Equal(DeviceType.META, c.Tokens.device_type);
        using var cpu = task.Generate(4, seed: 2);
        Assert.Equal(DeviceType.CPU, cpu.Tokens.device_type);   // default stays the CPU
    }

    [Fact]
    public void Token_windows_repeated_tokens_and_splits_honour_the_device()
    {
        using var w = TokenWindows.Sample(Enumerable.Range(0, 50).ToArray(), 3, 5, new Random(0), Meta);
        Assert.Equal(DeviceType.META, w.device_type);
        using var r = SyntheticTasks.RepeatedTokens(2, 4, 10, 10, seed: 0, device: Meta);
        Assert.Equal(DeviceType.META, r.device_type);
        using var m = SyntheticTasks.RepeatedTokensTargetMask(2, 4, Meta);
        Assert.Equal(DeviceType.META, m.device_type);
        var (train, test) = new ModularAdditionTask(5).AllPairsSplit(0.6, seed: 0, device: Meta);
        Assert.Equal(DeviceType.META, train.Tokens.device_type);
        Assert.Equal(DeviceType.META, test.Labels!.device_type);
        train.Dispose(); test.Dispose();
    }
}
