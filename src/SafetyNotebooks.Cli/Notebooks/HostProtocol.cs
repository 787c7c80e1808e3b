using System.Diagnostics;
using System.Runtime.InteropServices;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>The contract between the runner and the notebook host process it starts (both are this program).</summary>
public static class HostProtocol
{
    /// <summary>The hidden command that executes one notebook: <c>__exec &lt;notebook&gt; &lt;executed.ipynb&gt; &lt;result.json&gt; [--parent-pipe]</c>.</summary>
    public const string ExecCommand = "__exec";

    /// <summary>Tells the host that its stdin is a pipe from the runner: when it closes (the runner exited or was killed), the host kills itself.</summary>
    public const string ParentPipeOption = "--parent-pipe";

    /// <summary>Tells the host to run every cell even after one fails (grading).</summary>
    public const string KeepGoingOption = "--keep-going";

    /// <summary>Prefix of the host's stderr lines that the runner echoes as live progress.</summary>
    public const string ProgressPrefix = "progress: ";

    /// <summary>
    /// In the host: watch stdin on a background thread and kill this process when it reaches end of file. A pipe closes
    /// however its writer ends (exit, crash, SIGKILL), so the host never outlives the runner.
    /// </summary>
    public static void ExitWhenParentPipeCloses()
    {
        var stdin = Console.OpenStandardInput();
        var watchdog = new Thread(() =>
        {
            var buffer = new byte[256];
            try { while (stdin.Read(buffer, 0, buffer.Length) > 0) { } }
            catch { /* a broken pipe means the same */ }
            Process.GetCurrentProcess().Kill(); // SIGKILL: a busy cell cannot delay it
        }) { IsBackground = true, Name = "parent-pipe watchdog" };
        watchdog.Start();
    }
}

/// <summary>
/// Tracks the notebook hosts this runner started and kills them (with their children) when the runner is asked to stop
/// (SIGTERM, SIGINT, SIGHUP, SIGQUIT) or exits; the host's own parent-pipe watchdog covers the runner being killed outright.
/// </summary>
public sealed class ChildProcessGuard : IDisposable
{
    readonly List<Process> _running = new();
    readonly List<PosixSignalRegistration> _signals = new();
    readonly EventHandler _onExit;

    ChildProcessGuard()
    {
        _onExit = (_, _) => KillAll();
        AppDomain.CurrentDomain.ProcessExit += _onExit;
        foreach (var s in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGHUP, PosixSignal.SIGQUIT })
        {
            try { _signals.Add(PosixSignalRegistration.Create(s, _ => KillAll())); } // default handling (termination) follows
            catch (PlatformNotSupportedException) { /* e.g. SIGHUP on Windows */ }
        }
    }

    /// <summary>Starts guarding (dispose to stop).</summary>
    public static ChildProcessGuard Install() => new();

    /// <summary>Starts a guarded process.</summary>
    public Process Start(ProcessStartInfo psi)
    {
        lock (_running)
        {
            var p = Process.Start(psi) ?? throw new UserError("could not start the notebook host process");
            _running.Add(p);
            return p;
        }
    }

    /// <summary>Kills a guarded process tree if it is still running and stops tracking it.</summary>
    public void Stop(Process p)
    {
        lock (_running) _running.Remove(p);
        Kill(p);
    }

    void KillAll()
    {
        Process[] all;
        lock (_running) all = _running.ToArray();
        foreach (var p in all) Kill(p);
    }

    static void Kill(Process p)
    {
        try { if (!p.HasExited) { p.Kill(entireProcessTree: true); p.WaitForExit(5000); } }
        catch { /* already gone */ }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        KillAll();
        foreach (var s in _signals) s.Dispose();
        AppDomain.CurrentDomain.ProcessExit -= _onExit;
    }
}
