using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using SafetyNotebooks.Cli.Notebooks;

namespace SafetyNotebooks.Cli.Tests.Notebooks;

/// <summary>Hostile use of the CLI (issue 14): outputs never replace inputs, bad input gets one line and exit 2, no process outlives a run.</summary>
public class HardeningTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("sn-hard-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    static readonly string Solution = TestNotebooks.Json("md:# Lesson", "int F() {\n// BEGIN SOLUTION\nreturn 1;\n// END SOLUTION\n}");

    [Fact]
    public async Task Export_learner_refuses_to_overwrite_the_solution_edition()
    {
        var learn = Directory.CreateDirectory(Path.Combine(_dir, "learn")).FullName;
        var nb = Path.Combine(learn, "x.ipynb");
        File.WriteAllText(nb, Solution);
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("export", "--learner", nb, "--out", learn), "would overwrite the input");
        Assert.Equal(Solution, File.ReadAllText(nb));
        // The folder form (export --learner --out notebooks) too, and through a symlinked --out.
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("export", "--learner", learn, "--out", learn + "/./"), "would overwrite the input");
        var link = Path.Combine(_dir, "link");
        File.CreateSymbolicLink(link, learn);
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("export", "--learner", learn, "--out", link), "would overwrite the input");
        Assert.Equal(Solution, File.ReadAllText(nb));
        Assert.Single(Directory.GetFiles(learn)); // no temp file or other output left behind
    }

    [Fact]
    public async Task Export_learner_writes_into_another_folder_with_no_temp_files_left()
    {
        var src = Directory.CreateDirectory(Path.Combine(_dir, "src")).FullName;
        File.WriteAllText(Path.Combine(src, "x.ipynb"), Solution);
        var outDir = Path.Combine(_dir, "out");
        var r = await CliProcess.RunAsync("export", "--learner", src, "--out", outDir);
        Assert.True(r.Exit == 0, r.Stderr);
        Assert.Equal(new[] { "x.ipynb" }, Directory.GetFiles(outDir).Select(Path.GetFileName));
        Assert.Contains("NotImplementedException", NotebookDocument.Source((JsonObject)NotebookDocument.Load(Path.Combine(outDir, "x.ipynb")).Cells[1]!));
    }

    [Fact]
    public async Task Run_refuses_to_write_executed_copies_over_its_sources()
    {
        var nb = Path.Combine(_dir, "x.ipynb");
        File.WriteAllText(nb, Solution);
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("run", _dir, "--out", _dir), "would overwrite the input");
        Assert.Equal(Solution, File.ReadAllText(nb));
        Assert.Equal(new[] { "x.ipynb" }, Directory.GetFiles(_dir).Select(Path.GetFileName)); // nothing written
    }

    [Fact]
    public void Atomic_write_replaces_the_file_and_leaves_no_temp_file()
    {
        var path = Path.Combine(_dir, "a.txt");
        File.WriteAllText(path, "old");
        SafeFiles.WriteAllTextAtomic(path, "new");
        Assert.Equal("new", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(_dir));
        // A failed write (the target is a folder) leaves what was there and no temp file.
        var folder = Directory.CreateDirectory(Path.Combine(_dir, "f")).FullName;
        Assert.ThrowsAny<IOException>(() => SafeFiles.WriteAllTextAtomic(folder, "x"));
        Assert.True(Directory.Exists(folder));
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Theory]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    [InlineData("-Infinity")]
    [InlineData("1e300")]
    [InlineData("100000")]
    [InlineData("0")]
    [InlineData("-3")]
    [InlineData("ten")]
    public async Task Bad_timeouts_get_one_line_and_exit2(string value)
    {
        var nb = Path.Combine(_dir, "x.ipynb");
        File.WriteAllText(nb, Solution);
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("run", nb, "--timeout", value, "--out", Path.Combine(_dir, "o")), "--timeout takes minutes");
        Assert.False(Directory.Exists(Path.Combine(_dir, "o"))); // refused before anything started
    }

    [Fact]
    public async Task Runner_refuses_a_time_limit_a_timer_cannot_hold()
    {
        var nb = Path.Combine(_dir, "x.ipynb");
        File.WriteAllText(nb, Solution);
        var e = await Assert.ThrowsAsync<UserError>(() => new NotebookRunner(TextWriter.Null).RunAsync(new[] { nb },
            new RunOptions { OutputDirectory = Path.Combine(_dir, "o"), Timeout = TimeSpan.FromMinutes(100000) }));
        Assert.Contains("at most", e.Message);
    }

    [Fact]
    public async Task Out_naming_a_file_or_an_unwritable_path_gets_one_line_and_exit2()
    {
        var nb = Path.Combine(_dir, "x.ipynb");
        File.WriteAllText(nb, Solution);
        var file = Path.Combine(_dir, "file.txt");
        File.WriteAllText(file, "keep");
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("run", nb, "--out", file), "is an existing file");
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("export", "--learner", nb, "--out", file), "is an existing file");
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("run", nb, "--out", Path.Combine(file, "sub")), "not a writable folder");
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("export", "--learner", nb, "--out", "/proc/sn-no-such-dir"), "not a writable folder");
        Assert.Equal("keep", File.ReadAllText(file));
    }

    [Theory]
    [InlineData("""{"cells":[],"metadata":{"kernelspec":{"name":5}},"nbformat":4,"nbformat_minor":5}""", "metadata.kernelspec.name is a number")]
    [InlineData("""{"cells":[],"metadata":{"kernelspec":{"name":".net-csharp","language":[1]}},"nbformat":4,"nbformat_minor":5}""", "metadata.kernelspec.language")]
    [InlineData("""{"cells":[{"cell_type":"code","source":7,"metadata":{},"outputs":[]}],"metadata":{"kernelspec":{"name":".net-csharp"}},"nbformat":4,"nbformat_minor":5}""", "cell 1 has a \"source\" that is a number")]
    [InlineData("""{"cells":[{"cell_type":"code","source":["a",2],"metadata":{},"outputs":[]}],"metadata":{"kernelspec":{"name":".net-csharp"}},"nbformat":4,"nbformat_minor":5}""", "cell 1 has a \"source\"")]
    [InlineData("""{"cells":[{"cell_type":"code","source":"a","metadata":{"tags":[3]},"outputs":[]}],"metadata":{"kernelspec":{"name":".net-csharp"}},"nbformat":4,"nbformat_minor":5}""", "metadata.tags")]
    [InlineData("""{"cells":[],"metadata":{"kernelspec":{"name":".net-csharp"}},"nbformat":4.5,"nbformat_minor":5}""", "nbformat 4.5 is not supported")]
    public async Task Wrong_json_types_in_a_notebook_get_one_line_and_exit2(string json, string expected)
    {
        var nb = Path.Combine(_dir, "bad.ipynb");
        File.WriteAllText(nb, json);
        var line = CliProcess.AssertOneLineError(await CliProcess.RunAsync("run", nb, "--out", Path.Combine(_dir, "o")), expected);
        Assert.Contains("bad.ipynb", line);
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("export", "--learner", nb, "--out", Path.Combine(_dir, "l")), expected);
    }

    [Fact]
    public async Task A_timed_out_runs_report_shows_only_this_run()
    {
        var nb = TestNotebooks.Write(_dir, "slow.ipynb", "System.Threading.Thread.Sleep(120_000);");
        var outDir = Directory.CreateDirectory(Path.Combine(_dir, "o")).FullName;
        // What an earlier run left: an executed copy, a result file and a report with that run's output.
        var stale = NotebookDocument.Parse(TestNotebooks.Json("Console.WriteLine(\"STALE-OUTPUT\");"), "slow.ipynb");
        ((JsonObject)stale.Cells[0]!)["outputs"] = new JsonArray(new JsonObject { ["output_type"] = "stream", ["name"] = "stdout", ["text"] = "STALE-OUTPUT\n" });
        File.WriteAllText(Path.Combine(outDir, "slow.ipynb"), stale.ToJson());
        File.WriteAllText(Path.Combine(outDir, "slow.result.json"), NotebookExecutor.ToJson(new NotebookResult { Notebook = "slow.ipynb", ErrorMessage = "STALE-OUTPUT" }));
        File.WriteAllText(Path.Combine(outDir, "slow.html"), "<p>STALE-OUTPUT</p>");
        var results = await new NotebookRunner(TextWriter.Null).RunAsync(new[] { nb }, new RunOptions { OutputDirectory = outDir, Timeout = TimeSpan.FromSeconds(6) });
        var r = Assert.Single(results);
        Assert.Equal(RunStatus.Timeout, r.Status);
        Assert.Null(r.ExecutedPath);
        Assert.False(File.Exists(Path.Combine(outDir, "slow.ipynb")));
        Assert.False(File.Exists(Path.Combine(outDir, "slow.result.json")));
        var report = File.ReadAllText(Path.Combine(outDir, "slow.html"));
        Assert.DoesNotContain("STALE-OUTPUT", report);
        Assert.Contains("produced no executed notebook", report);
        Assert.Contains("timeout", report);
    }

    [Theory]
    [InlineData("TERM")]
    [InlineData("KILL")]
    public async Task The_notebook_host_dies_with_the_runner(string signal)
    {
        var started = Path.Combine(_dir, "started");
        var nb = TestNotebooks.Write(_dir, "loop.ipynb", $"System.IO.File.WriteAllText(@\"{started}\", \"1\"); long n = 0; while (true) {{ n++; }}");
        var psi = NotebookRunner.SelfInvocation("run", nb, "--out", Path.Combine(_dir, "o"), "--timeout", "5");
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        using var runner = Process.Start(psi)!;
        _ = runner.StandardOutput.ReadToEndAsync();
        _ = runner.StandardError.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        while (!File.Exists(started) && !runner.HasExited && clock.Elapsed < TimeSpan.FromSeconds(120)) await Task.Delay(200);
        Assert.True(File.Exists(started), "the looping cell never started");
        var hosts = Descendants(runner.Id);
        Assert.NotEmpty(hosts);
        using (var kill = Process.Start("kill", new[] { "-" + signal, runner.Id.ToString() })) await kill.WaitForExitAsync();
        await runner.WaitForExitAsync();
        clock.Restart();
        while (hosts.Any(Alive) && clock.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(200);
        Assert.False(hosts.Any(Alive), $"host process(es) {string.Join(", ", hosts.Where(Alive))} outlived the runner (SIG{signal})");
    }

    static List<int> Descendants(int pid)
    {
        var children = new Dictionary<int, List<int>>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var p)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var ppid = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
                (children.TryGetValue(ppid, out var l) ? l : children[ppid] = new()).Add(p);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        var all = new List<int>();
        var queue = new Queue<int>(new[] { pid });
        while (queue.Count > 0)
            foreach (var c in children.GetValueOrDefault(queue.Dequeue()) ?? new()) { all.Add(c); queue.Enqueue(c); }
        return all;
    }

    static bool Alive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] != 'Z'; // a zombie has exited
        }
        catch (IOException) { return false; }
    }

    [Fact]
    public void Every_declared_option_appears_in_its_commands_help()
    {
        var root = Program.BuildCommandLine();
        foreach (var command in root.Subcommands.Where(c => !c.Hidden))
        {
            var help = new StringWriter();
            Assert.Equal(0, root.Parse(new[] { command.Name, "--help" }).Invoke(new InvocationConfiguration { Output = help }));
            foreach (var option in command.Options.Where(o => !o.Hidden))
                Assert.Contains(option.Name, help.ToString());
        }
        // bench's options, which the hand-written help did not list.
        var bench = root.Subcommands.Single(c => c.Name == "bench").Options.Select(o => o.Name).ToHashSet();
        Assert.Superset(new HashSet<string> { "--json", "--baseline", "--quick", "--only", "--torch-dir", "--python", "--threads" }, bench);
        var run = root.Subcommands.Single(c => c.Name == "run").Options.Select(o => o.Name).ToHashSet();
        Assert.Superset(new HashSet<string> { "--quick", "--out", "--timeout", "--no-report" }, run);
    }

    [Theory]
    [InlineData(new[] { "bench", "--threads", "0" }, "--threads takes a positive whole number")]
    [InlineData(new[] { "bench", "--frobnicate" }, "--frobnicate")]
    [InlineData(new[] { "export" }, "export needs exactly one edition")]
    [InlineData(new[] { "export", "--learner", "--charts" }, "export needs exactly one edition")]
    [InlineData(new[] { "launch" }, "launch")]
    public async Task Bad_arguments_get_one_line_and_exit2(string[] args, string expected) =>
        CliProcess.AssertOneLineError(await CliProcess.RunAsync(args), expected);

    [Fact]
    public async Task Hidden_commands_still_work()
    {
        var r = await CliProcess.RunAsync("__verify-torch");
        Assert.True(r.Exit == 0, r.Stderr);
        Assert.Contains("loads: ok", r.Stdout);
    }
}
