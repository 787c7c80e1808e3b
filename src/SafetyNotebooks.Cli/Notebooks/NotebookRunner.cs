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

    public async Task<List<NotebookResult>> RunAsync(IReadOnlyList<string> notebooks, RunOptions options)
    {
        Directory.CreateDirectory(options.OutputDirectory);
        var results = new List<NotebookResult>();
        foreach (var nb in notebooks)
        {
            var name = Path.GetFileNameWithoutExtension(nb);
            _out.WriteLine($"▶ {Path.GetFileName(nb)}{(options.Quick ? " (quick)" : "")}");
            NotebookResult r;
            try
            {
                NotebookDocument.Load(nb); // validate up front: clear one-line errors
                r = await RunChildAsync(nb, options);
            }
            catch (UserError e)
            {
                r = new NotebookResult { Notebook = Path.GetFileName(nb), Status = "invalid", ErrorMessage = e.Message };
            }
            if (options.Reports && r.ExecutedPath != null && File.Exists(r.ExecutedPath))
            {
                var report = Path.Combine(options.OutputDirectory, name + ".html");
                ReportWriter.WriteNotebookReport(NotebookDocument.Load(r.ExecutedPath), r, report);
                r.ReportPath = report;
            }
            _out.WriteLine($"  {(r.Ok ? "✓" : "✗")} {r.Status} in {r.Seconds:0.0} s{(r.ErrorMessage != null ? " — " + OneLine(r.ErrorMessage) : "")}");
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

    async Task<NotebookResult> RunChildAsync(string notebook, RunOptions options)
    {
        var full = Path.GetFullPath(notebook);
        var outDir = Path.GetFullPath(options.OutputDirectory);
        var executed = Path.Combine(outDir, Path.GetFileName(notebook));
        var resultFile = Path.Combine(outDir, Path.GetFileNameWithoutExtension(notebook) + ".result.json");
        File.Delete(resultFile);
        var psi = SelfInvocation("__exec", full, executed, resultFile);
        psi.WorkingDirectory = Path.GetDirectoryName(full)!;
        psi.Environment[SafetyNotebooks.Runtime.QuickMode.EnvironmentVariable] = options.Quick ? "1" : "0";
        psi.RedirectStandardError = true;
        psi.RedirectStandardOutput = true;
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi) ?? throw new UserError("could not start the notebook host process");
        var stderrTail = new Queue<string>();
        var errTask = Task.Run(async () =>
        {
            string? line;
            while ((line = await p.StandardError.ReadLineAsync()) != null)
            {
                if (line.StartsWith("progress: ", StringComparison.Ordinal)) { _out.WriteLine("    " + line[10..]); continue; }
                lock (stderrTail) { stderrTail.Enqueue(line); if (stderrTail.Count > 20) stderrTail.Dequeue(); }
            }
        });
        var outTask = p.StandardOutput.ReadToEndAsync();
        using var cts = new CancellationTokenSource(options.Timeout);
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            try { p.Kill(entireProcessTree: true); } catch { /* already gone */ }
            await p.WaitForExitAsync();
            return new NotebookResult
            {
                Notebook = Path.GetFileName(notebook), Status = "timeout", Seconds = clock.Elapsed.TotalSeconds,
                ErrorMessage = $"time limit of {options.Timeout.TotalMinutes:0.#} min reached; use --timeout MINUTES or --quick",
                ExecutedPath = File.Exists(executed) ? executed : null,
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
            Notebook = Path.GetFileName(notebook), Status = "crashed", Seconds = clock.Elapsed.TotalSeconds,
            ErrorMessage = $"the notebook host exited with code {p.ExitCode}{(tail.Length > 0 ? ": " + tail : "")}",
        };
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
            _out.WriteLine($"{Trim(r.Notebook, 44),-44} {r.Status,-8} {r.Seconds.ToString("0.0", CultureInfo.InvariantCulture) + " s",8}  {(r.ErrorCell?.ToString() ?? ""),-10} {(r.ErrorMessage == null ? "" : OneLine(r.ErrorMessage))}");
        _out.WriteLine(new string('-', 110));
        int ok = results.Count(r => r.Ok);
        _out.WriteLine($"{ok} of {results.Count} notebooks ran without errors{(options.Quick ? " (quick mode)" : "")}; total {results.Sum(r => r.Seconds):0.0} s");
        _out.WriteLine($"executed notebooks and HTML reports: {Path.GetFullPath(options.OutputDirectory)}{(options.Reports ? $" (open {Path.Combine(options.OutputDirectory, "index.html")})" : "")}");
    }

    static string Trim(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
}
