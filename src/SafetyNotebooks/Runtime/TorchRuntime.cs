using System.Reflection;
using System.Runtime.InteropServices;
using SafetyNotebooks.Native;

namespace SafetyNotebooks.Runtime;

/// <summary>
/// Makes TorchSharp's native backend load reliably before the first tensor is made:
/// applies the Debian 12 / Ubuntu 22.04 libstdc++ fix where needed, and preloads the libtorch that
/// ships with TorchSharp by absolute path, so a different libtorch on the system library path
/// (e.g. Debian's python3-torch in /usr/lib) can never be picked up by name. On x86-64 Linux it also starts
/// <see cref="MallocTrimPolicy"/>'s trim policy, so freed tensor memory goes back to the system.
/// </summary>
public static class TorchRuntime
{
    static readonly object Gate = new();
    static bool _ready;

    /// <summary>Libraries preloaded in dependency order (by their file names in the libtorch package).</summary>
    static readonly string[] PreloadOrder = { "libc10.so", "libtorch_cpu.so", "libtorch.so", "libLibTorchSharp.so" };

    /// <summary>The folder the native libraries were preloaded from, once <see cref="EnsureLoaded"/> ran.</summary>
    public static string? NativeFolder { get; private set; }

    /// <summary>
    /// Idempotent. Call before any TorchSharp use (the notebook setup and the CLI do). Throws
    /// <see cref="TorchSharpLoadException"/> with the cause and the fix when the backend cannot load.
    /// </summary>
    public static void EnsureLoaded()
    {
        if (_ready) return;
        lock (Gate)
        {
            if (_ready) return;
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
                PrepareLinux();
            try
            {
                TorchSharp.torch.InitializeDeviceType(TorchSharp.DeviceType.CPU);
            }
            catch (Exception e)
            {
                throw new TorchSharpLoadException(
                    "TorchSharp's native backend failed to load: " + e.Message +
                    " Run 'dotnet run --project src/SafetyNotebooks.Cli -- doctor' to see the cause and the fix.", e);
            }
            MallocTrimPolicy.Start(); // x86-64 Linux with glibc only; a no-op elsewhere
            _ready = true;
        }
    }

    [DllImport("libc", EntryPoint = "setenv")]
    static extern int SetNativeEnv(string name, string value, int overwrite);

    /// <summary>
    /// The OpenMP wait policy libtorch's threads use, as set before libtorch loaded. Unless the user set
    /// OMP_WAIT_POLICY, it is PASSIVE: idle threads sleep instead of spinning. On a busy machine (a laptop
    /// with other work, CI running tests side by side) spinning threads fight the other processes for the
    /// cores and small models ran up to 60× slower; measured here with two CPU hogs, a small training step
    /// took 0.19 s spinning vs 0.094 s passive, and GPT-2-sized work is unaffected when the machine is idle.
    /// </summary>
    public static string OmpWaitPolicy { get; private set; } = "default";

    static void SetWaitPolicy()
    {
        var current = Environment.GetEnvironmentVariable("OMP_WAIT_POLICY");
        if (!string.IsNullOrEmpty(current)) { OmpWaitPolicy = current; return; }
        // .NET keeps its own copy of the environment on Unix; OpenMP reads the C library's, so set that one.
        try { if (SetNativeEnv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0) OmpWaitPolicy = "PASSIVE"; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { /* non-glibc: keep the default */ }
        Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", OmpWaitPolicy == "PASSIVE" ? "PASSIVE" : null);
    }

    static void PrepareLinux()
    {
        SetWaitPolicy();
        var folders = CandidateNativeFolders().Where(Directory.Exists).Distinct().ToList();
        string? libstd = TorchSharpNativeFix.FindSystemLibStdCxx();
        foreach (var f in folders)
        {
            var lib = Path.Combine(f, "libLibTorchSharp.so");
            if (!File.Exists(lib)) continue;
            var outcome = TorchSharpNativeFix.Apply(lib, libstd, out var msg);
            if (outcome == NativeFixOutcome.CannotApply)
                throw new TorchSharpLoadException("TorchSharp's native library will not load here. " + msg);
        }
        var folder = folders.FirstOrDefault(f => PreloadOrder.All(n => File.Exists(Path.Combine(f, n))));
        if (folder == null) return; // let TorchSharp's own loader try (and report) as usual
        foreach (var name in PreloadOrder)
        {
            var path = Path.Combine(folder, name);
            if (!NativeLibrary.TryLoad(path, out var handle))
            {
                try { handle = NativeLibrary.Load(path); }
                catch (Exception e)
                {
                    throw new TorchSharpLoadException($"Could not load {path}: {e.Message}. " +
                        "Run 'dotnet run --project src/SafetyNotebooks.Cli -- doctor' for the cause and the fix.", e);
                }
            }
            if (name == "libtorch_cpu.so") MklOnAmd = MklVendorCheck.Apply(handle);
            if (name == "libLibTorchSharp.so") ScalarLifetimeGuard.Install(handle);
        }
        NativeFolder = folder;
    }

    /// <summary>What <see cref="MklVendorCheck"/> did on this machine (see there).</summary>
    public static string MklOnAmd { get; private set; } = "not applicable";

    /// <summary>Folders that may hold the libtorch shipped with TorchSharp, best first.</summary>
    public static IEnumerable<string> CandidateNativeFolders()
    {
        var torchDir = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location) ?? "";
        var appDir = AppContext.BaseDirectory;
        foreach (var d in new[] { torchDir, appDir })
        {
            if (string.IsNullOrEmpty(d)) continue;
            yield return Path.Combine(d, "cpu");
            yield return Path.Combine(d, "runtimes", "linux-x64", "native");
            yield return d;
        }
        var nugetRoot = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var torchVersion = typeof(TorchSharp.torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion?.Split('+')[0];
        if (torchVersion != null)
        {
            yield return Path.Combine(nugetRoot, "torchsharp", torchVersion, "lib", "net8.0", "cpu");
            yield return Path.Combine(nugetRoot, "torchsharp", torchVersion, "runtimes", "linux-x64", "native");
        }
    }
}

/// <summary>TorchSharp's native backend could not be loaded; the message names the cause and the fix.</summary>
public sealed class TorchSharpLoadException(string message, Exception? inner = null) : Exception(message, inner);
