using System.Diagnostics;
using System.Globalization;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>Options for <c>safety-notebooks run</c>.</summary>
public sealed record RunOptions
{
    /// <summary>Shrink training (sets SAFETY_NOTEBOOKS_QUICK=1 for the kernel).</summary>
    public bool Quick { get; init; }
    /// <summary>Where executed notebooks and HTML reports go (outside git: artifacts/ is ignored).</summary>
    public string OutputDirectory { get; init; } = Path.Combine("artifacts", "run");
    /// <summary>Time limit per notebook.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(20);
    /// <summary>Write HTML reports.</summary>
    public bool Reports { get; init; } = true;
    /// <summary>Run every cell even after one fails (grading); the notebook's status is still <see cref="RunStatus.Error"/>.</summary>
    public bool KeepGoing { get; init; }
    /// <summary>Have the checks append machine-readable results to <c>&lt;name&gt;.grade.jsonl</c> in the output folder (see <see cref="SafetyNotebooks.Teaching.GradeLog"/>).</summary>
    public bool GradeLogs { get; init; }
}

/// <summary>
/// Runs notebooks one after another, each in a fresh child process (so a time limit can stop it
/// and one notebook's state never leaks into the next), with the notebook's folder as the working
/// directory. The child executes the notebook in a .NET Interactive C# kernel and writes the
/// executed .ipynb; the parent then writes HTML reports and a summary table.
/// </summary>
public sealed class NotebookRunner
{
    readonly TextWriter _out;
    public NotebookRunner(TextWriter? output = null) => _out = output ?? Console.Out;

    /// <summary>The longest time limit accepted (one week), far inside what a timer can hold.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(7);

    /// <summary>The files a run of <paramref name="notebook"/> writes into <paramref name="outputDirectory"/>: executed copy, result file, report.</summary>
    public static (string Executed, string Result, string Report) OutputsFor(string notebook, string outputDirectory)
    {
        var outDir = Path.GetFullPath(outputDirectory);
        var stem = Path.GetFileNameWithoutExtension(notebook);
        return (Path.Combine(outDir, Path.GetFileName(notebook)), Path.Combine(outDir, stem + ".result.json"), Path.Combine(outDir, stem + ".html"));
    }

    /// <summary>The grade log a run with <see cref="RunOptions.GradeLogs"/> writes for <paramref name="notebook"/>.</summary>
    public static string GradeLogFor(string notebook, string outputDirectory) =>
        Path.Combine(Path.GetFullPath(outputDirectory), Path.GetFileNameWithoutExtension(notebook) + ".grade.jsonl");

    public async Task<List<NotebookResult>> RunAsync(IReadOnlyList<string> notebooks, RunOptions options)
    {
        if (!(options.Timeout > TimeSpan.Zero && options.Timeout <= MaxTimeout))
            throw new UserError($"the time limit must be more than 0 and at most {MaxTimeout.TotalMinutes:0} minutes (one week), not {options.Timeout}.");
        SafeFiles.RefuseOverwritingInputs(notebooks,
            notebooks.SelectMany(nb => { var (e, r, h) = OutputsFor(nb, options.OutputDirectory); return new[] { e, r, h }; })
                .Append(Path.Combine(Path.GetFullPath(options.OutputDirectory), "index.html")), "--out");
        SafeFiles.PrepareDirectory(options.OutputDirectory, "--out");
        using var guard = ChildProcessGuard.Install();
        var results = new List<NotebookResult>();
        foreach (var nb in notebooks)
        {
            var (executed, resultFile, report) = OutputsFor(nb, options.OutputDirectory);
            // This run's outputs only: what an earlier run left here must never be shown as this run's.
            foreach (var stale in new[] { executed, resultFile, report, GradeLogFor(nb, options.OutputDirectory) }) File.Delete(stale);
            _out.WriteLine($"▶ {Path.GetFileName(nb)}{(options.Quick ? " (quick)" : "")}");
            NotebookResult r;
            try
            {
                NotebookDocument.Load(nb); // validate up front: clear one-line errors
                r = await RunChildAsync(nb, options, guard);
            }
            catch (UserError e)
            {
                r = new NotebookResult { Notebook = Path.GetFileName(nb), Status = RunStatus.Invalid, ErrorMessage = e.Message };
            }
            if (options.Reports && r.Status != RunStatus.Invalid)
            {
                ReportWriter.WriteNotebookReport(r.ExecutedPath != null && File.Exists(r.ExecutedPath) ? NotebookDocument.Load(r.ExecutedPath) : null, r, report);
                r.ReportPath = report;
            }
            _out.WriteLine($"  {(r.Ok ? "✓" : "✗")} {r.Status.Name()} in {r.Seconds:0.0} s{(r.ErrorMessage != null ? " — " + OneLine(r.ErrorMessage) : "")}");
            results.Add(r);
        }
        if (options.Reports)
        {
            var index = Path.Combine(options.OutputDirectory, "index.html");
            ReportWriter.WriteIndex(results, index, options.Quick);
        }
        PrintTable(results, options);
        return results;
    }

    async Task<NotebookResult> RunChildAsync(string notebook, RunOptions options, ChildProcessGuard guard)
    {
        var full = Path.GetFullPath(notebook);
        var (executed, resultFile, _) = OutputsFor(notebook, options.OutputDirectory);
        var psi = SelfInvocation(HostProtocol.ExecCommand, full, executed, resultFile, HostProtocol.ParentPipeOption);
        if (options.KeepGoing) psi.ArgumentList.Add(HostProtocol.KeepGoingOption);
        psi.WorkingDirectory = Path.GetDirectoryName(full)!;
        // Only a grading run writes a grade log; one set in the caller's environment must not leak into a plain run.
        if (options.GradeLogs) psi.Environment[SafetyNotebooks.Teaching.GradeLog.EnvironmentVariable] = GradeLogFor(notebook, options.OutputDirectory);
        else psi.Environment.Remove(SafetyNotebooks.Teaching.GradeLog.EnvironmentVariable);
        psi.Environment[SafetyNotebooks.Runtime.QuickMode.EnvironmentVariable] = options.Quick ? "1" : "0";
        psi.RedirectStandardError = true;
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardInput = true; // the host exits when this pipe closes, i.e. when this process dies in any way
        using var cts = new CancellationTokenSource(options.Timeout); // before the host starts: nothing to orphan if it throws
        var clock = Stopwatch.StartNew();
        using var p = guard.Start(psi);
        try
        {
            var stderrTail = new Queue<string>();
            var errTask = Task.Run(async () =>
            {
                string? line;
                while ((line = await p.StandardError.ReadLineAsync()) != null)
                {
                    if (line.StartsWith(HostProtocol.ProgressPrefix, StringComparison.Ordinal)) { _out.WriteLine("    " + line[HostProtocol.ProgressPrefix.Length..]); continue; }
                    lock (stderrTail) { stderrTail.Enqueue(line); if (stderrTail.Count > 20) stderrTail.Dequeue(); }
                }
            });
            var outTask = p.StandardOutput.ReadToEndAsync();
            try { await p.WaitForExitAsync(cts.Token); }
            catch (OperationCanceledException)
            {
                try { p.Kill(entireProcessTree: true); } catch { /* already gone */ }
                await p.WaitForExitAsync();
                bool produced = File.Exists(executed);
                return new NotebookResult
                {
                    Notebook = Path.GetFileName(notebook), Status = RunStatus.Timeout, Seconds = clock.Elapsed.TotalSeconds,
                    ErrorMessage = $"time limit of {options.Timeout.TotalMinutes:0.##} min reached{(produced ? "" : " before the notebook finished, so nothing was produced")}; use --timeout MINUTES or --quick",
                    ExecutedPath = produced ? executed : null,
                };
            }
            await errTask;
            await outTask;
            if (File.Exists(resultFile))
            {
                var r = NotebookExecutor.FromJson(File.ReadAllText(resultFile));
                r.ExecutedPath = File.Exists(executed) ? executed : null;
                return r;
            }
            string tail;
            lock (stderrTail) tail = string.Join(" | ", stderrTail.TakeLast(3));
            return new NotebookResult
            {
                Notebook = Path.GetFileName(notebook), Status = RunStatus.Crashed, Seconds = clock.Elapsed.TotalSeconds,
                ErrorMessage = $"the notebook host exited with code {p.ExitCode}{(tail.Length > 0 ? ": " + tail : "")}",
            };
        }
        finally
        {
            guard.Stop(p); // on every path out of here (exceptions included) the host and its children are gone
        }
    }

    /// <summary>A process start for this same program with the given arguments (works for the apphost and for 'dotnet x.dll').</summary>
    public static ProcessStartInfo SelfInvocation(params string[] args)
    {
        var processPath = Environment.ProcessPath ?? "dotnet";
        var dll = typeof(NotebookRunner).Assembly.Location;
        var psi = new ProcessStartInfo { UseShellExecute = false };
        bool viaDotnet = Path.GetFileNameWithoutExtension(processPath).Equals("dotnet", StringComparison.OrdinalIgnoreCase)
                         || !Path.GetFileNameWithoutExtension(processPath).Equals("safety-notebooks", StringComparison.OrdinalIgnoreCase);
        if (viaDotnet)
        {
            psi.FileName = DotnetHost();
            psi.ArgumentList.Add(dll);
        }
        else psi.FileName = processPath;
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }

    static string DotnetHost()
    {
        var root = Environment.GetEnvironmentVariable("DOTNET_ROOT");
        if (root != null && File.Exists(Path.Combine(root, "dotnet"))) return Path.Combine(root, "dotnet");
        var current = Environment.ProcessPath;
        if (current != null && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        return "dotnet";
    }

    static string OneLine(string s)
    {
        var line = s.Replace("\r", "").Split('\n').FirstOrDefault(l => l.Trim().Length > 0) ?? s;
        return line.Length > 160 ? line[..157] + "..." : line;
    }

    void PrintTable(List<NotebookResult> results, RunOptions options)
    {
        _out.WriteLine();
        _out.WriteLine($"{"notebook",-44} {"status",-8} {"time",8}  {"error cell",-10} message");
        _out.WriteLine(new string('-', 110));
        foreach (var r in results)
            _out.WriteLine($"{Trim(r.Notebook, 44),-44} {r.Status.Name(),-8} {r.Seconds.ToString("0.0", CultureInfo.InvariantCulture) + " s",8}  {(r.ErrorCell?.ToString() ?? ""),-10} {(r.ErrorMessage == null ? "" : OneLine(r.ErrorMessage))}");
        _out.WriteLine(new string('-', 110));
        int ok = results.Count(r => r.Ok);
        _out.WriteLine($"{ok} of {results.Count} notebooks ran without errors{(options.Quick ? " (quick mode)" : "")}; total {results.Sum(r => r.Seconds):0.0} s");
        _out.WriteLine($"executed notebooks and HTML reports: {Path.GetFullPath(options.OutputDirectory)}{(options.Reports ? $" (open {Path.Combine(options.OutputDirectory, "index.html")})" : "")}");
    }

    static string Trim(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
}
