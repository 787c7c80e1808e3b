using System.Globalization;
using System.Runtime.InteropServices;

namespace SafetyNotebooks.Runtime;

/// <summary>
/// Keeps the process's resident memory close to what it really uses. libtorch allocates tensor memory with the
/// C library's <c>malloc</c>. glibc serves blocks below a threshold from its heaps ("arenas") and, when they are
/// freed, keeps the pages for reuse instead of returning them to the system; its threshold for using a separate
/// <c>mmap</c> per block also rises (up to 32 MiB) each time such a block is freed, so after a few forward passes
/// almost every activation comes from the arenas. Alternating sizes fragment them, and the freed memory piles up:
/// measured here, 2,000 <c>RunWithCache</c> calls with every tensor disposed (47 live tensors throughout) grew the
/// RSS from 178 MB to 1.3 GB. It is not a leak — <c>malloc_trim(0)</c> hands it all back — but a notebook that
/// runs long looks as if it leaks and can run out of memory.
/// <para>
/// The fix is a trim policy: once a second a timer reads the RSS (<c>/proc/self/statm</c>, microseconds) and, when it
/// has grown past <see cref="GrowthFactor"/>× its level (the lowest RSS seen since the previous trim, which is at least
/// the memory in use) plus <see cref="GrowthSlackMb"/> MB,
/// calls <c>malloc_trim(0)</c>, which returns every free page of every arena to the system — at most once per
/// <see cref="MinTrimInterval"/>. Work whose memory really grows (a bigger model) is trimmed once and then sets the new
/// level. A trim's cost is mostly re-faulting the freed memory that the next step reuses (a few hundred MB for GPT-2-sized
/// activations; page faults cost about 15 µs each on this project's virtual machine, 1 µs or less on bare hardware),
/// so trims are kept rare: on steady work about one per <see cref="MinTrimInterval"/>. It applies on x86-64 Linux with glibc, starts when TorchSharp loads
/// (<see cref="TorchRuntime.EnsureLoaded"/>), and <c>SAFETY_NOTEBOOKS_MALLOC_TRIM=off</c> disables it. No NuGet
/// package does this, so it is written here.
/// </para>
/// </summary>
public static class MallocTrimPolicy
{
    /// <summary>Environment variable that, set to <c>off</c>, disables the trim policy.</summary>
    public const string OptOutVariable = "SAFETY_NOTEBOOKS_MALLOC_TRIM";

    /// <summary>RSS growth factor over its level (lowest RSS since the last trim) that triggers a trim.</summary>
    public const double GrowthFactor = 1.5;

    /// <summary>RSS growth (MB) allowed on top of <see cref="GrowthFactor"/> before a trim.</summary>
    public const double GrowthSlackMb = 32;

    /// <summary>How often the RSS is checked.</summary>
    public static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Least time between two trims by the timer. A trim also gives back memory the next step would reuse, which
    /// then costs page faults; this bounds that cost to one re-fault of the freed memory per interval.
    /// </summary>
    public static readonly TimeSpan MinTrimInterval = TimeSpan.FromSeconds(5);

    /// <summary>What the policy is doing in this process (for <c>doctor</c>).</summary>
    public static string Status { get; private set; } = "not started";

    /// <summary>Trims made so far by the policy.</summary>
    public static int Trims => _trims;

    /// <summary>Megabytes returned to the system by those trims (RSS before minus after).</summary>
    public static double ReleasedMb { get; private set; }

    static readonly object Gate = new();
    static Timer? _timer;
    static int _trims;
    static double _levelMb;
    static int _busy;
    static long _lastTrimTicks;

    delegate int MallocTrimFn(UIntPtr pad);
    static MallocTrimFn? _mallocTrim;

    /// <summary>
    /// Starts the policy (idempotent). Called by <see cref="TorchRuntime.EnsureLoaded"/>; returns <see cref="Status"/>.
    /// </summary>
    public static string Start()
    {
        lock (Gate)
        {
            if (_timer != null) return Status;
            if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || !RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
                return Status = "not applicable (x86-64 Linux only)";
            if (string.Equals(Environment.GetEnvironmentVariable(OptOutVariable), "off", StringComparison.OrdinalIgnoreCase))
                return Status = $"off ({OptOutVariable}=off): glibc keeps freed tensor memory";
            if (!TryBindMallocTrim()) return Status = "not applicable (the C library is not glibc)";
            if (ResidentMb() is not double rss) return Status = "not applicable (/proc/self/statm unreadable)";
            _levelMb = rss;
            _timer = new Timer(_ => Check(), null, CheckInterval, CheckInterval);
            return Status = $"on: malloc_trim when RSS exceeds {GrowthFactor.ToString(CultureInfo.InvariantCulture)}× its lowest level since the last trim + {GrowthSlackMb:0} MB (checked every {CheckInterval.TotalSeconds:0} s, at most one trim per {MinTrimInterval.TotalSeconds:0} s; {OptOutVariable}=off disables)";
        }
    }

    /// <summary>True while the timer runs.</summary>
    public static bool IsOn => _timer != null;

    /// <summary>One check of the policy (the timer calls it; exposed for tests). Returns true when it trimmed.</summary>
    public static bool Check()
    {
        if (_mallocTrim == null || Interlocked.Exchange(ref _busy, 1) == 1) return false;
        try
        {
            if (ResidentMb() is not double rss) return false;
            if (rss < _levelMb) _levelMb = rss; // memory really given back (a model disposed): follow it down
            if (!ShouldTrim(rss, _levelMb)) return false;
            if (Environment.TickCount64 - Volatile.Read(ref _lastTrimTicks) < (long)MinTrimInterval.TotalMilliseconds) return false;
            Trim();
            return true;
        }
        finally { Volatile.Write(ref _busy, 0); }
    }

    /// <summary>The policy's rule: trim when <paramref name="rssMb"/> exceeds <see cref="GrowthFactor"/> × <paramref name="levelMb"/> + <see cref="GrowthSlackMb"/>.</summary>
    public static bool ShouldTrim(double rssMb, double levelMb) => rssMb > levelMb * GrowthFactor + GrowthSlackMb;

    /// <summary>
    /// Returns the C allocator's free memory to the system now (glibc <c>malloc_trim(0)</c>) and makes the RSS after it
    /// the policy's new level. Returns the megabytes released, or 0 where not applicable.
    /// </summary>
    public static double Trim()
    {
        if (_mallocTrim == null && !TryBindMallocTrim()) return 0;
        double before = ResidentMb() ?? 0;
        _mallocTrim!(UIntPtr.Zero);
        double after = ResidentMb() ?? before;
        _levelMb = after;
        Volatile.Write(ref _lastTrimTicks, Environment.TickCount64);
        Interlocked.Increment(ref _trims);
        double released = Math.Max(0, before - after);
        ReleasedMb += released;
        return released;
    }

    /// <summary>The process's resident set size in MB, read from <c>/proc/self/statm</c> (null where unavailable).</summary>
    public static double? ResidentMb()
    {
        try
        {
            var fields = File.ReadAllText("/proc/self/statm").Split(' ');
            return long.Parse(fields[1], CultureInfo.InvariantCulture) * (double)Environment.SystemPageSize / 1048576.0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException) { return null; }
    }

    static bool TryBindMallocTrim()
    {
        if (_mallocTrim != null) return true;
        if (!NativeLibrary.TryLoad("libc.so.6", out var libc)) return false;
        if (!NativeLibrary.TryGetExport(libc, "gnu_get_libc_version", out _)) return false; // glibc only
        if (!NativeLibrary.TryGetExport(libc, "malloc_trim", out var fn)) return false;
        _mallocTrim = Marshal.GetDelegateForFunctionPointer<MallocTrimFn>(fn);
        return true;
    }
}
