using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Runtime;

public class ScalarLifetimeGuardTests
{
    [SkippableFact]
    public void Tensor_arithmetic_survives_garbage_collections_from_another_thread()
    {
        // Without the guard this loop fails within about 12,000 additions on this machine
        // ("Expected false to be true" from c10::Scalar), because TorchSharp's implicit alpha Scalar is
        // finalized while libtorch still reads it. 200,000 additions with GC pressure must all be right.
        TorchRuntime.EnsureLoaded();
        Skip.If(ScalarLifetimeGuard.Status != "active", $"the scalar guard is not active here ({ScalarLifetimeGuard.Status}): nothing installed to test");
        using var a = ones(4);
        using var b = full(4, 2.0f);
        var stop = false;
        var pressure = new Thread(() => { while (!Volatile.Read(ref stop)) GC.KeepAlive(new byte[100_000]); }) { IsBackground = true };
        pressure.Start();
        try
        {
            for (int i = 0; i < 200_000; i++)
            {
                using var c = a + b;          // implicit alpha Scalar
                using var d = c * 0.5;        // implicit Scalar operand
                if (i % 20_000 == 0) Assert.Equal(1.5f, d[0].item<float>());
            }
        }
        finally { Volatile.Write(ref stop, true); pressure.Join(); }
        Assert.True(GC.CollectionCount(0) > 10, "the test needs collections to happen during the loop");
    }
}
