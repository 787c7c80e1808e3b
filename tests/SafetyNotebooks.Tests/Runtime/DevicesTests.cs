using SafetyNotebooks.Data;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Runtime;

/// <summary>
/// One device setting: with <see cref="Devices.Default"/> switched to the meta device (shapes only, no data), everything
/// the library makes without an explicit device lands there. A factory that hard-codes the CPU shows up as a CPU tensor.
/// </summary>
public class DevicesTests
{
    public DevicesTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Models_and_data_follow_the_default_device()
    {
        Assert.Equal(DeviceType.CPU, Devices.Default.type);
        using (Devices.Using(new Device("meta")))
        {
            Assert.Equal(DeviceType.META, Devices.Default.type);
            var cfg = HookedTransformerConfig.AttnOnly2L(dVocab: 16, nCtx: 12) with { Seed = 1 };
            using var model = new HookedTransformer(cfg);
            Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
            Assert.All(model.buffers(), b => Assert.Equal(DeviceType.META, b.device_type));

            using var tokens = SyntheticTasks.RepeatedTokens(2, 5, 16, 16, seed: 3);
            Assert.Equal(DeviceType.META, tokens.device_type);
            var task = new SequenceTransformTask(SequenceTransform.Copy, 5, 3);
            using var batch = task.Generate(4, seed: 2);
            Assert.Equal(DeviceType.META, batch.Tokens.device_type);
            Assert.Equal(DeviceType.META, batch.TargetMask.device_type);
            using var window = TokenWindows.Sample(Enumerable.Range(0, 50).ToArray(), 2, 6, new Random(0));
            Assert.Equal(DeviceType.META, window.device_type);
        }
        Assert.Equal(DeviceType.CPU, Devices.Default.type);   // restored after the scope
    }

    [SkippableFact]
    public void Asking_for_cuda_without_a_cuda_build_is_a_clear_error()
    {
        Skip.If(torch.cuda.is_available(), "this machine has CUDA");
        var e = Assert.Throws<InvalidOperationException>(() => Devices.Use(new Device("cuda")));
        Assert.Contains("SafetyNotebooksTorchPackage", e.Message);
        Assert.Equal(DeviceType.CPU, Devices.Default.type);
    }
}
