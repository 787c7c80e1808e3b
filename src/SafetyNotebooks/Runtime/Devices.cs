using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Runtime;

/// <summary>
/// The one device setting. Every tensor the library makes without an explicit device (model weights and buffers,
/// data batches, the trainer's default, generation) goes on <see cref="Default"/>, which is TorchSharp's own default
/// device (<c>torch.set_default_device</c>), CPU unless changed. To run on a GPU, build with a CUDA package of
/// TorchSharp (<c>dotnet build -c Release -p:SafetyNotebooksTorchPackage=TorchSharp-cuda-linux</c>, see the README) and
/// call <c>Devices.Use(new Device("cuda"))</c> before building models; nothing in the library hard-codes the CPU.
/// </summary>
public static class Devices
{
    /// <summary>The device tensors go on when no device is given (TorchSharp's default device).</summary>
    public static Device Default
    {
        get
        {
            TorchRuntime.EnsureLoaded();
            return torch.get_default_device();
        }
    }

    /// <summary>Makes <paramref name="device"/> the default for everything created from now on.</summary>
    public static void Use(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        TorchRuntime.EnsureLoaded();
        if (device.type == DeviceType.CUDA && !torch.cuda.is_available())
            throw new InvalidOperationException(
                $"Device '{device}' was asked for, but this TorchSharp build has no CUDA (or no GPU is visible). Build with a CUDA " +
                "package (dotnet build -c Release -p:SafetyNotebooksTorchPackage=TorchSharp-cuda-linux) on a machine with an NVIDIA GPU, or stay on the CPU.");
        torch.set_default_device(device);
    }

    /// <summary>Makes <paramref name="device"/> the default until the returned scope is disposed (then the previous one again).</summary>
    public static IDisposable Using(Device device)
    {
        var previous = Default;
        Use(device);
        return new Restore(previous);
    }

    sealed class Restore(Device previous) : IDisposable
    {
        bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            torch.set_default_device(previous);
        }
    }
}
