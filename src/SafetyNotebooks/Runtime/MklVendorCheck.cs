using System.Runtime.InteropServices;

namespace SafetyNotebooks.Runtime;

/// <summary>
/// libtorch's CPU build links Intel oneMKL, which picks its fast (AVX-512 / AVX2) matrix kernels only when
/// its internal <c>mkl_serv_intel_cpu_true()</c> says the CPU is Intel; on AMD CPUs with the same instruction
/// sets it falls back to slow generic kernels. Measured on this project's AMD EPYC (AVX-512) machines:
/// a 512×768 · 768×50257 fp32 matmul runs at about 170 GFLOP/s by default and 355 GFLOP/s with the check
/// answering "yes" (GPT-2 small's forward pass is matmul-bound, so it nearly halves).
/// <para>
/// After libtorch_cpu is loaded and before any tensor work, this replaces that function's first bytes
/// <em>in this process's memory</em> with <c>mov eax, 1; ret</c>. No file is changed. MKL still selects
/// kernels from the CPU's feature bits, so it never uses instructions the CPU lacks. It applies only on
/// x86-64 Linux, only on CPUs whose vendor is AuthenticAMD, and only when the function's bytes look as
/// expected; set <c>SAFETY_NOTEBOOKS_MKL_VENDOR_CHECK=keep</c> to leave MKL untouched.
/// </para>
/// No NuGet package does this (it is specific to libtorch's bundled MKL), so it is written here.
/// </summary>
public static class MklVendorCheck
{
    /// <summary>Environment variable that, set to <c>keep</c>, disables the change.</summary>
    public const string OptOutVariable = "SAFETY_NOTEBOOKS_MKL_VENDOR_CHECK";

    static readonly byte[] ReturnOne = { 0xB8, 0x01, 0x00, 0x00, 0x00, 0xC3 }; // mov eax, 1; ret

    [DllImport("libc", SetLastError = true)]
    static extern int mprotect(IntPtr addr, UIntPtr len, int prot);

    [DllImport("libc")]
    static extern long sysconf(int name);

    const int ProtRead = 1, ProtWrite = 2, ProtExec = 4, ScPageSize = 30;

    /// <summary>True when /proc/cpuinfo names an AMD CPU.</summary>
    public static bool IsAmdCpu()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("vendor_id", StringComparison.Ordinal)) return line.Contains("AuthenticAMD", StringComparison.Ordinal);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return false;
    }

    /// <summary>Applies the change to the loaded libtorch_cpu (see the class summary); returns what happened.</summary>
    public static string Apply(IntPtr libtorchCpu)
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || !RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
            return "not applicable (x86-64 Linux only)";
        if (string.Equals(Environment.GetEnvironmentVariable(OptOutVariable), "keep", StringComparison.OrdinalIgnoreCase))
            return $"left as shipped ({OptOutVariable}=keep)";
        if (!IsAmdCpu()) return "not needed (not an AMD CPU)";
        if (!NativeLibrary.TryGetExport(libtorchCpu, "mkl_serv_intel_cpu_true", out var fn))
            return "not found (this libtorch has no MKL vendor check)";
        var current = new byte[ReturnOne.Length];
        Marshal.Copy(fn, current, 0, current.Length);
        if (current.SequenceEqual(ReturnOne)) return "AMD: MKL fast kernels enabled";
        // The shipped function starts by reading MKL's cached answer; refuse anything unexpected (e.g. a hook).
        if (current[0] == 0xE9 || current[0] == 0xCC) return "left as shipped (unexpected code at mkl_serv_intel_cpu_true)";
        try
        {
            long page = sysconf(ScPageSize);
            if (page <= 0) page = 4096;
            long start = fn.ToInt64() & ~(page - 1);
            var len = new UIntPtr((ulong)(fn.ToInt64() + ReturnOne.Length - start + page - 1) / (ulong)page * (ulong)page);
            if (mprotect(new IntPtr(start), len, ProtRead | ProtWrite | ProtExec) != 0)
                return $"left as shipped (memory protection refused: errno {Marshal.GetLastPInvokeError()})";
            Marshal.Copy(ReturnOne, 0, fn, ReturnOne.Length);
            mprotect(new IntPtr(start), len, ProtRead | ProtExec);
            return "AMD: MKL fast kernels enabled";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "left as shipped (" + e.Message + ")";
        }
    }
}
