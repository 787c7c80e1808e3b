using System.Diagnostics;
using System.Text.Json.Nodes;
using SafetyNotebooks.Cli.Notebooks;

namespace SafetyNotebooks.Cli.Tests.Notebooks;

/// <summary>Executes small notebooks for real: in-process (executor) and through child processes (runner, CLI).</summary>
public class ExecutionTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("sn-exec-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    static string Joined(JsonNode? n) => n is JsonArray a ? string.Concat(a.Select(x => x!.GetValue<string>())) : n?.GetValue<string>() ?? "";

    [Fact]
    public async Task Executor_writes_streams_results_and_stops_at_the_first_error()
    {
        var doc = NotebookDocument.Parse(TestNotebooks.Json(
            "md:# title",
            "Console.WriteLine(\"hello\"); Console.WriteLine(\"again\");",
            "6 * 7",
            "throw new InvalidOperationException(\"boom\");",
            "Console.WriteLine(\"never\");"), "t.ipynb");
        var result = await new NotebookExecutor().ExecuteAsync(doc);
        Assert.Equal(RunStatus.Error, result.Status);
        Assert.Equal(4, result.ErrorCell);                  // 1-based among all cells, markdown included
        Assert.Contains("boom", result.ErrorMessage);
        Assert.Equal(3, result.CellsRun);
        var cells = doc.Cells.OfType<JsonObject>().ToList();
        var stream = Assert.Single((JsonArray)cells[1]["outputs"]!)!;
        Assert.Equal("stdout", stream["name"]!.GetValue<string>());
        Assert.Equal("hello\nagain\n", Joined(stream["text"]));   // consecutive writes merged into one stream output
        var result42 = Assert.Single((JsonArray)cells[2]["outputs"]!)!;
        Assert.Equal("execute_result", result42["output_type"]!.GetValue<string>());
        Assert.Equal("42", Joined(result42["data"]!["text/plain"]));
        Assert.Equal(2, cells[2]["execution_count"]!.GetValue<int>());
        var error = Assert.Single((JsonArray)cells[3]["outputs"]!)!;
        Assert.Equal("error", error["output_type"]!.GetValue<string>());
        Assert.Empty((JsonArray)cells[4]["outputs"]!);               // not executed
    }

    [Fact]
    public async Task Display_updates_replace_the_earlier_output_in_place()
    {
        var doc = NotebookDocument.Parse(TestNotebooks.Json(
            "var d = display(\"step 1\"); d.Update(\"step 2\"); d.Update(\"step 3\");"), "u.ipynb");
        var result = await new NotebookExecutor().ExecuteAsync(doc);
        Assert.True(result.Ok, result.ErrorMessage);
        var outputs = (JsonArray)((JsonObject)doc.Cells[0]!)["outputs"]!;
        var only = outputs.Count == 1 ? outputs[0]! : throw new Xunit.Sdk.XunitException(outputs.ToJsonString());
        Assert.Equal("step 3", Joined(only["data"]!["text/plain"]));
    }

    [Fact]
    public async Task Runner_executes_in_a_child_process_and_writes_notebook_and_reports()
    {
        var nb = TestNotebooks.Write(_dir, "ok.ipynb", "md:# Hello *report*", "Console.WriteLine(System.Environment.GetEnvironmentVariable(\"SAFETY_NOTEBOOKS_QUICK\"));", "System.IO.Directory.GetCurrentDirectory()");
        var outDir = Path.Combine(_dir, "out");
        var log = new StringWriter();
        var results = await new NotebookRunner(log).RunAsync(new[] { nb }, new RunOptions { Quick = true, OutputDirectory = outDir, Timeout = TimeSpan.FromMinutes(3) });
        var r = Assert.Single(results);
        Assert.True(r.Ok, r.ErrorMessage + "\n" + log);
        var executed = NotebookDocument.Load(Path.Combine(outDir, "ok.ipynb"));
        Assert.Equal("1\n", Joined(((JsonObject)executed.Cells[1]!)["outputs"]![0]!["text"]));            // quick mode reached the kernel
        Assert.Contains(Path.GetFileName(_dir), Joined(((JsonObject)executed.Cells[2]!)["outputs"]![0]!["data"]!["text/plain"])); // cwd = notebook folder
        var html = File.ReadAllText(Path.Combine(outDir, "ok.html"));
        Assert.Contains(">Hello <em>report</em></h1>", html);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(html, SafetyNotebooks.Plotting.OfflineHtml.BundleMarker));
        Assert.Contains("ok.html", File.ReadAllText(Path.Combine(outDir, "index.html")));
        Assert.Contains("1 of 1 notebooks ran without errors", log.ToString());
    }

    [Fact]
    public async Task Runner_stops_a_notebook_at_its_time_limit()
    {
        var nb = TestNotebooks.Write(_dir, "slow.ipynb", "System.Threading.Thread.Sleep(120_000);");
        var clock = Stopwatch.StartNew();
        var results = await new NotebookRunner(TextWriter.Null).RunAsync(new[] { nb }, new RunOptions { OutputDirectory = Path.Combine(_dir, "o"), Timeout = TimeSpan.FromSeconds(8) });
        Assert.Equal(RunStatus.Timeout, results[0].Status);
        Assert.Contains("time limit", results[0].ErrorMessage);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60));
    }

    [Theory]
    [InlineData("missing.ipynb", "no such file")]
    [InlineData("notes.txt", "expected a .ipynb file")]
    [InlineData("broken.ipynb", "is not valid JSON")]
    [InlineData("python.ipynb", "'python3' kernel")]
    public async Task Cli_gives_one_line_errors_and_exit_code2_for_bad_input(string file, string expected)
    {
        File.WriteAllText(Path.Combine(_dir, "notes.txt"), "text");
        File.WriteAllText(Path.Combine(_dir, "broken.ipynb"), "{ \"cells\": [ ");
        File.WriteAllText(Path.Combine(_dir, "python.ipynb"), """{"cells":[],"metadata":{"kernelspec":{"name":"python3"}},"nbformat":4,"nbformat_minor":5}""");
        var psi = NotebookRunner.SelfInvocation("run", Path.Combine(_dir, file));
        psi.RedirectStandardError = true;
        psi.RedirectStandardOutput = true;
        using var p = Process.Start(psi)!;
        var stderr = await p.StandardError.ReadToEndAsync();
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.Equal(2, p.ExitCode);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var line = Assert.Single(lines);
        Assert.StartsWith("error: ", line);
        Assert.Contains(expected, line);
    }
}
