using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SafetyNotebooks.Runtime;

/// <summary>
/// Works around a use-after-free in TorchSharp 0.107: operators such as <c>a + b</c> create a
/// <see cref="TorchSharp.Scalar"/> implicitly (<c>add(b, alpha: 1)</c>), pass its native handle to libtorch,
/// and keep no reference to it while the native call runs. If another thread triggers a garbage collection
/// at that moment, the Scalar's finalizer frees the native scalar while libtorch is still reading it, and
/// the operation fails at random with "Expected false to be true" (c10 Scalar::toFloat) or worse. Measured
/// here: a loop of <c>a + b</c> with a second thread allocating fails within about 12,000 additions, inside
/// or outside a dispose scope (the CI run of lesson 31 hit it once).
/// <para>
/// The fix defers the native free: <c>THSTorch_dispose_scalar</c> in libLibTorchSharp is redirected (in this
/// process's memory only) to a handler that queues the pointer and frees queued scalars once they are two
/// seconds old — long after any native call that could still be reading them has returned. Numeric scalars
/// are plain 32-byte allocations released with <c>free</c>, exactly what the original function does for
/// them; symbolic ones (never created by TorchSharp) are left alone. Applies on x86-64 Linux when the
/// function's code is the known 0.107 build; <c>SAFETY_NOTEBOOKS_SCALAR_GUARD=off</c> disables it.
/// No NuGet package fixes this (the upstream fix is an open TorchSharp pull request), so it is written here.
/// </para>
/// </summary>
public static unsafe class ScalarLifetimeGuard
{
    /// <summary>Environment variable that, set to <c>off</c>, disables the guard.</summary>
    public const string OptOutVariable = "SAFETY_NOTEBOOKS_SCALAR_GUARD";

    /// <summary>How long a disposed scalar waits before its memory is freed.</summary>
    public static readonly TimeSpan Delay = TimeSpan.FromSeconds(2);

    /// <summary>What the guard did at load.</summary>
    public static string Status { get; private set; } = "not applied";

    /// <summary>Scalars queued and not yet freed.</summary>
    public static int Pending => _queue.Count;

    static readonly ConcurrentQueue<(IntPtr Ptr, long Ticks)> _queue = new();
    static readonly object _drainLock = new();
    static readonly long _delayTicks = (long)(Delay.TotalSeconds * Stopwatch.Frequency);

    // The first bytes of THSTorch_dispose_scalar in TorchSharp 0.107.0's libLibTorchSharp.so (x86-64):
    // test rdi,rdi; je +0x2d; mov eax,[rdi]; add eax,-5; cmp eax,2; ja +0x19
    static readonly byte[] KnownPrologue = { 0x48, 0x85, 0xFF, 0x74, 0x2D, 0x8B, 0x07, 0x83, 0xC0, 0xFB, 0x83, 0xF8, 0x02, 0x77, 0x19 };

    [DllImport("libc", SetLastError = true)] static extern int mprotect(IntPtr addr, UIntPtr len, int prot);
    [DllImport("libc")] static extern long sysconf(int name);
    [DllImport("libc")] static extern void free(IntPtr ptr);

    /// <summary>Installs the guard on the loaded libLibTorchSharp (idempotent); returns what happened.</summary>
    public static string Install(IntPtr libTorchSharp)
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || !RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
            return Status = "not applicable (x86-64 Linux only)";
        if (string.Equals(Environment.GetEnvironmentVariable(OptOutVariable), "off", StringComparison.OrdinalIgnoreCase))
            return Status = $"off ({OptOutVariable}=off)";
        if (!NativeLibrary.TryGetExport(libTorchSharp, "THSTorch_dispose_scalar", out var fn))
            return Status = "not applied (THSTorch_dispose_scalar not found)";
        var head = new byte[KnownPrologue.Length];
        Marshal.Copy(fn, head, 0, head.Length);
        delegate* unmanaged<IntPtr, void> handler = &DeferredDispose;
        var jump = new byte[12];
        jump[0] = 0x48; jump[1] = 0xB8;                          // movabs rax, handler
        BitConverter.GetBytes((long)(IntPtr)handler).CopyTo(jump, 2);
        jump[10] = 0xFF; jump[11] = 0xE0;                        // jmp rax
        if (head.AsSpan(0, 12).SequenceEqual(jump)) return Status = "active";
        if (!head.AsSpan().SequenceEqual(KnownPrologue))
            return Status = "not applied (unknown libLibTorchSharp build; the race may remain)";
        long page = sysconf(30);
        if (page <= 0) page = 4096;
        long start = fn.ToInt64() & ~(page - 1);
        var len = new UIntPtr((ulong)((fn.ToInt64() + jump.Length - start + page - 1) / page * page));
        if (mprotect(new IntPtr(start), len, 7) != 0)
            return Status = $"not applied (memory protection refused: errno {Marshal.GetLastPInvokeError()})";
        Marshal.Copy(jump, 0, fn, jump.Length);
        mprotect(new IntPtr(start), len, 5);
        return Status = "active";
    }

    [UnmanagedCallersOnly]
    static void DeferredDispose(IntPtr scalar)
    {
        if (scalar == IntPtr.Zero) return;
        int tag = *(int*)scalar;
        if (tag >= 5 && tag <= 7) return;                         // symbolic scalar: owns a reference; leak rather than guess
        long now = Stopwatch.GetTimestamp();
        _queue.Enqueue((scalar, now));
        if (!Monitor.TryEnter(_drainLock)) return;
        try
        {
            while (_queue.TryPeek(out var item) && now - item.Ticks >= _delayTicks && _queue.TryDequeue(out item))
                free(item.Ptr);
        }
        finally { Monitor.Exit(_drainLock); }
    }
}
