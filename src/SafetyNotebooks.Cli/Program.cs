using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text;
using SafetyNotebooks.Cli.Commands;
using SafetyNotebooks.Cli.Notebooks;

namespace SafetyNotebooks.Cli;

/// <summary>
/// The <c>safety-notebooks</c> command line, declared once with System.CommandLine: the declaration gives the help,
/// the validation and shell completion. Exit codes: 0 ok, 1 a notebook or cell failed, 2 bad input (one <c>error:</c> line).
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        Console.OutputEncoding = Encoding.UTF8;
        try
        {
            var parse = BuildCommandLine().Parse(args);
            if (parse.Errors.Count > 0)
            {
                var command = parse.CommandResult.Command;
                var helpFor = command is RootCommand ? "safety-notebooks --help" : $"safety-notebooks {command.Name} --help";
                // An unknown word explains more than the "required command" error it causes.
                var first = parse.Errors.FirstOrDefault(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal)) ?? parse.Errors[0];
                Console.Error.WriteLine($"error: {first.Message} (see '{helpFor}')");
                return 2;
            }
            // Our own handlers: one-line errors (no stack traces) and our own signal handling (ChildProcessGuard).
            return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        catch (UserError e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            return 2;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine("error: " + OneLine(e.Message) + " Check the paths given and that you can write there.");
            return 2;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: unexpected {e.GetType().Name}: {OneLine(e.Message)} (please report this with the command you ran)");
            return 1;
        }
    }

    static string OneLine(string s) => s.Replace("\r", "").Split('\n')[0].Trim();

    /// <summary>Every command, argument and option of the CLI.</summary>
    public static RootCommand BuildCommandLine()
    {
        var root = new RootCommand("safety-notebooks: run, export and check the SafetyNotebooks curriculum");
        root.Subcommands.Add(RunCommand());
        root.Subcommands.Add(ExportCommand());
        root.Subcommands.Add(GradeCommand());
        root.Subcommands.Add(RenderCommand());
        var doctor = new Command("doctor", "Report what this machine has and lacks (dotnet, tools, TorchSharp native load, Jupyter kernel), each with its fix.");
        doctor.SetAction(_ => Doctor.Run(Console.Out));
        root.Subcommands.Add(doctor);
        root.Subcommands.Add(BenchCommandLine());
        root.Subcommands.Add(ScanCommandLine());
        root.Subcommands.Add(GuardCommandLine());
        root.Subcommands.Add(ServeCommandLine());
        root.Subcommands.Add(EvalCommandLine());
        root.Subcommands.Add(GovernCommandLine());
        root.Subcommands.Add(ExecCommand());
        var verify = new Command("__verify-torch", "Build-time check that TorchSharp's native backend loads (see the .csproj).") { Hidden = true };
        verify.SetAction(_ => VerifyTorch());
        root.Subcommands.Add(verify);
        var ids = new Command("__add-cell-ids", "Give every cell of the given notebooks a stable nbformat 4.5 id, keeping everything else.") { Hidden = true };
        var idFiles = new Argument<string[]>("notebooks") { Arity = ArgumentArity.OneOrMore };
        ids.Arguments.Add(idFiles);
        ids.SetAction(p => AddCellIds(p.GetValue(idFiles)!));
        root.Subcommands.Add(ids);
        return root;
    }

    static Option<string> OutOption(string defaultDir, string what) => new("--out")
    {
        Description = $"Folder for {what} (created if missing; default {defaultDir}). It must not hold the input notebooks.",
        HelpName = "DIR",
        DefaultValueFactory = _ => defaultDir,
    };

    static Command RunCommand()
    {
        var path = new Argument<string>("notebook-or-folder") { Description = "A .ipynb notebook, or a folder: every notebook in it, in name order." };
        var quick = new Option<bool>("--quick") { Description = "Shrink training (sets SAFETY_NOTEBOOKS_QUICK=1 for the kernel)." };
        var outDir = OutOption(Path.Combine("artifacts", "run"), "executed notebooks and HTML reports");
        var timeout = TimeoutOption();
        var noReport = new Option<bool>("--no-report") { Description = "Do not write HTML reports." };
        var run = new Command("run", "Execute notebooks headless in a .NET Interactive C# kernel; write executed notebooks and HTML reports; exit 1 if any cell errored.")
            { path, quick, outDir, timeout, noReport };
        run.SetAction(async (p, _) =>
        {
            var notebooks = NotebookDocument.Discover(p.GetValue(path)!);
            if (notebooks.Count == 1) NotebookDocument.Load(notebooks[0]); // a single bad file: one-line error
            var options = new RunOptions
            {
                Quick = p.GetValue(quick) || SafetyNotebooks.Runtime.QuickMode.IsOn,
                OutputDirectory = p.GetValue(outDir)!,
                Timeout = TimeSpan.FromMinutes(p.GetValue(timeout)),
                Reports = !p.GetValue(noReport),
            };
            var results = await new NotebookRunner().RunAsync(notebooks, options);
            return results.All(r => r.Ok) ? 0 : 1;
        });
        return run;
    }

    static Option<double> TimeoutOption() => new("--timeout")
    {
        Description = $"Time limit per notebook in minutes, more than 0 and at most {NotebookRunner.MaxTimeout.TotalMinutes:0} (one week).",
        HelpName = "MINUTES",
        DefaultValueFactory = _ => 20,
        CustomParser = ParseMinutes,
    };

    static Command GradeCommand()
    {
        var folder = new Argument<string>("folder") { Description = "The learners' notebooks: folder/<learner>.ipynb (one assignment) or folder/<learner>/<lesson>.ipynb." };
        var quick = new Option<bool>("--quick") { Description = "Shrink training (sets SAFETY_NOTEBOOKS_QUICK=1 for the kernel)." };
        var timeout = TimeoutOption();
        var outDir = OutOption(Path.Combine("artifacts", "grade"), "grades.csv, results.csv, grades.html and each learner's executed notebooks");
        var grade = new Command("grade", "Run every learner's notebook headless (own process, time limit, all cells even after errors) and write a learner × exercise table (CSV and HTML).")
            { folder, quick, timeout, outDir };
        grade.SetAction(async (p, _) =>
        {
            await Grader.GradeAsync(p.GetValue(folder)!, new GradeOptions
            {
                Quick = p.GetValue(quick) || SafetyNotebooks.Runtime.QuickMode.IsOn,
                Timeout = TimeSpan.FromMinutes(p.GetValue(timeout)),
                OutputDirectory = p.GetValue(outDir)!,
            }, Console.Out);
            return 0;
        });
        return grade;
    }

    static Command RenderCommand()
    {
        var from = new Option<string>("--from") { Description = "Executed notebooks: a folder (default artifacts/run, what 'run' writes) or one .ipynb.", HelpName = "DIR", DefaultValueFactory = _ => Path.Combine("artifacts", "run") };
        var outDir = OutOption(Path.Combine("artifacts", "site"), "the rendered pages, index.html and the one shared plotly.min.js");
        var render = new Command("render", "Turn executed notebooks into browsable offline HTML pages with an index; plotly.js is shared once per folder.") { from, outDir };
        render.SetAction(p =>
        {
            var written = SiteRenderer.Render(p.GetValue(from)!, p.GetValue(outDir)!);
            Console.WriteLine($"{written.Count - 1} lesson page(s), index and {SiteRenderer.PlotlyFile} in {Path.GetFullPath(p.GetValue(outDir)!)} (open index.html)");
            return 0;
        });
        return render;
    }

    static double ParseMinutes(ArgumentResult r)
    {
        var text = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var minutes) && double.IsFinite(minutes)
            && minutes > 0 && minutes <= NotebookRunner.MaxTimeout.TotalMinutes)
            return minutes;
        r.AddError($"--timeout takes minutes as a number more than 0 and at most {NotebookRunner.MaxTimeout.TotalMinutes:0} (one week), not '{text}'; e.g. --timeout 30");
        return 0;
    }

    static Command ExportCommand()
    {
        var source = new Argument<string?>("notebook-or-folder")
        {
            Description = "For --learner: a notebook or folder (default notebooks). For --charts: one executed notebook.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var learner = new Option<bool>("--learner") { Description = "Write learner editions: solutions replaced by stubs, outputs cleared (default --out learner: a folder beside notebooks/, so the library path works from either)." };
        var charts = new Option<bool>("--charts") { Description = "Write each chart of an executed notebook as a standalone offline HTML page (default --out artifacts/charts)." };
        var outDir = new Option<string?>("--out") { Description = "Output folder (created if missing). It must not hold the input notebooks.", HelpName = "DIR" };
        var export = new Command("export", "Write learner editions or standalone chart pages.") { source, learner, charts, outDir };
        export.Validators.Add(c =>
        {
            bool l = c.GetValue(learner), ch = c.GetValue(charts);
            if (l == ch) c.AddError("export needs exactly one edition: 'export --learner [notebooks] [--out DIR]' or 'export --charts <executed.ipynb> [--out DIR]'.");
            else if (ch && c.GetValue(source) == null) c.AddError("export --charts takes one executed notebook, e.g. 'export --charts artifacts/run/00-environment-and-tensors.ipynb'.");
        });
        export.SetAction(p => p.GetValue(charts)
            ? ExportCharts(p.GetValue(source)!, p.GetValue(outDir) ?? Path.Combine("artifacts", "charts"))
            : ExportLearner(p.GetValue(source) ?? "notebooks", p.GetValue(outDir) ?? "learner"));
        return export;
    }

    static int ExportCharts(string executedPath, string outDir)
    {
        var doc = NotebookDocument.Load(executedPath);
        SafeFiles.PrepareDirectory(outDir, "--out");
        var written = ChartExporter.Export(doc, outDir);
        foreach (var w in written) Console.WriteLine(w);
        if (written.Count == 0) throw new UserError($"{executedPath} has no chart outputs; run it first ('run {executedPath}') and pass the executed copy from artifacts/run/.");
        return 0;
    }

    static int ExportLearner(string source, string outDir)
    {
        var notebooks = NotebookDocument.Discover(source);
        var targets = notebooks.Select(nb => Path.Combine(outDir, Path.GetFileName(nb))).ToList();
        SafeFiles.RefuseOverwritingInputs(notebooks, targets, "--out");
        SafeFiles.PrepareDirectory(outDir, "--out");
        var editions = notebooks.Select(nb => LearnerExporter.Export(NotebookDocument.Load(nb), outDir)).ToList(); // all valid before any is written
        for (int i = 0; i < notebooks.Count; i++)
        {
            SafeFiles.WriteAllTextAtomic(targets[i], editions[i].Learner.ToJson());
            Console.WriteLine($"{Path.GetFileName(notebooks[i])}: {editions[i].Hidden} solution(s) replaced → {targets[i]}");
        }
        return 0;
    }

    static Command BenchCommandLine()
    {
        var json = new Option<bool>("--json") { Description = "Print one JSON object per workload instead of the table." };
        var baseline = new Option<bool>("--baseline") { Description = "Also run the same workloads in PyTorch (benchmarks/pytorch_baseline.py) and print ratios." };
        var quick = new Option<bool>("--quick") { Description = "Fewer runs and a shorter memory check." };
        var only = new Option<string?>("--only")
        {
            Description = "Comma-separated workloads to run: " + string.Join(", ", BenchCommand.Workloads) + ".",
            HelpName = "a,b",
        };
        var torchDir = new Option<string?>("--torch-dir") { Description = "Folder of the privately unpacked PyTorch (default artifacts/pytorch-baseline; see benchmarks/setup-pytorch-baseline.sh).", HelpName = "DIR" };
        var python = new Option<string?>("--python") { Description = "Python interpreter for the baseline (default /usr/bin/python3).", HelpName = "EXE" };
        var threads = new Option<int>("--threads") { Description = "Torch threads on both sides (default 2).", HelpName = "N", DefaultValueFactory = _ => 2 };
        threads.Validators.Add(r => { if (r.GetValueOrDefault<int>() <= 0) r.AddError("--threads takes a positive whole number, e.g. --threads 2"); });
        var bench = new Command("bench", "Benchmarks: model workloads (median s/step), 2048² matmul peak, long-run memory check (see README).")
            { json, baseline, quick, only, torchDir, python, threads };
        bench.SetAction((p, _) => BenchCommand.Run(new BenchOptions
        {
            Json = p.GetValue(json),
            Baseline = p.GetValue(baseline),
            Quick = p.GetValue(quick) || SafetyNotebooks.Runtime.QuickMode.IsOn,
            Only = p.GetValue(only)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(),
            TorchDir = p.GetValue(torchDir),
            Python = p.GetValue(python),
            Threads = p.GetValue(threads),
        }, Console.Out));
        return bench;
    }

    static Command EvalCommandLine()
    {
        var tasks = new Option<string>("--tasks") { Description = "Comma-separated tasks: names in data/eval (safety-mc, safety-gen, bbq-mini), file paths (format detected), or format:path with format trustllm, decodingtrust, harmbench, bbq, safetybench or gen.", HelpName = "a,b", Required = true };
        var model = new Option<string>("--model") { Description = "A checkpoint directory (Hugging Face layout) or an OpenAI-compatible base URL.", HelpName = "PATH|URL", Required = true };
        var modelName = new Option<string?>("--model-name") { Description = "Model name sent to a server (default 'default').", HelpName = "NAME" };
        var outFile = new Option<string>("--out") { Description = "Results JSONL (appended; a rerun resumes); the HTML report goes beside it.", HelpName = "FILE", DefaultValueFactory = _ => "artifacts/eval/results.jsonl" };
        var data = new Option<string>("--data") { Description = "Folder of named tasks (default data/eval).", HelpName = "DIR", DefaultValueFactory = _ => Path.Combine("data", "eval") };
        var eval = new Command("eval", "Run harness tasks (multiple choice by log-likelihood, generation with scoring rules, BBQ) against a model; resumable JSONL and an HTML report per task and TrustLLM dimension.") { tasks, model, modelName, outFile, data };
        eval.SetAction((p, ct) => EvalCommand.RunAsync(p.GetValue(tasks)!, p.GetValue(model)!, p.GetValue(modelName), p.GetValue(outFile)!, p.GetValue(data)!, Console.Out, ct));
        return eval;
    }

    static Command ServeCommandLine()
    {
        var config = new Option<string>("--config") { Description = "YAML rails config (see docs/guardrails.md).", HelpName = "FILE", Required = true };
        var upstream = new Option<string>("--upstream") { Description = "Upstream OpenAI-compatible base URL (e.g. http://localhost:11434/v1), or secret-keeper-bot (offline).", HelpName = "URL", Required = true };
        var model = new Option<string>("--model") { Description = "Upstream model when a request names none.", HelpName = "NAME", DefaultValueFactory = _ => "default" };
        var host = new Option<string>("--host") { Description = "Address to listen on (default 127.0.0.1).", HelpName = "ADDR", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port (default 8000).", HelpName = "N", DefaultValueFactory = _ => 8000 };
        var log = new Option<string?>("--log") { Description = "Append every rail decision to this JSONL file (default: stderr).", HelpName = "FILE" };
        var serve = new Command("serve", "Serve an OpenAI-compatible chat endpoint with the rails in front of an upstream model.") { config, upstream, model, host, port, log };
        serve.SetAction((p, ct) => ServeCommand.RunAsync(new ServeOptions
        {
            Config = p.GetValue(config)!, Upstream = p.GetValue(upstream)!, Model = p.GetValue(model)!, Host = p.GetValue(host)!,
            Port = p.GetValue(port), DecisionLog = p.GetValue(log),
        }, Console.Out, ct));
        return serve;
    }

    static Command GuardCommandLine()
    {
        var config = new Option<string>("--config") { Description = "YAML rails config (see docs/guardrails.md).", HelpName = "FILE", Required = true };
        var input = new Option<string>("--input") { Description = "JSONL of {\"id\", \"text\"} lines to screen.", HelpName = "FILE", Required = true };
        var outFile = new Option<string>("--out") { Description = "Where to write one {\"id\", \"action\", \"rail\", \"reason\", \"text\"} decision per line.", HelpName = "FILE", Required = true };
        var output = new Option<bool>("--output") { Description = "Screen with the output rails (model replies) instead of the input rails." };
        var guard = new Command("guard", "Screen a JSONL file of texts with guardrails; write one decision per line.") { config, input, outFile, output };
        guard.SetAction(p => GuardCommand.Run(p.GetValue(config)!, p.GetValue(input)!, p.GetValue(outFile)!, p.GetValue(output), Console.Out));
        return guard;
    }

    static Command GovernCommandLine()
    {
        var system = new Option<string>("--system") { Description = "System description (YAML or JSON: name, owner, intended use, users, data, questionnaire answers; see docs/governance.md).", HelpName = "FILE", Required = true };
        var results = new Option<string[]>("--results") { Description = "Result files or folders (JSONL of eval, scan, guard or metrics; folders searched recursively).", HelpName = "PATH", Required = true, AllowMultipleArgumentsPerToken = true };
        var outDir = new Option<string>("--out") { Description = "Folder for the documents (.md and offline .html).", HelpName = "DIR", DefaultValueFactory = _ => Path.Combine("artifacts", "governance") };
        var govern = new Command("govern", "Governance documents from evaluation results: model card, EU AI Act questionnaire, ISO/IEC 42001 checklist, risk register, impact assessment.") { system, results, outDir };
        govern.SetAction(p => GovernCommand.Run(p.GetValue(system)!, p.GetValue(results)!, p.GetValue(outDir)!, Console.Out));
        return govern;
    }

    static Command ScanCommandLine()
    {
        var config = new Option<string>("--config") { Description = "YAML scan config (targets, prompts, converters, judges, limits, output; see docs/red-teaming.md).", HelpName = "FILE", Required = true };
        var report = new Option<string?>("--report") { Description = "HTML report path (default: the results file with .html; a .md beside it).", HelpName = "FILE" };
        var scan = new Command("scan", "Red-teaming scan: targets × attack prompts × converters, judged; resumable JSONL results, ASR with intervals, a report.") { config, report };
        scan.SetAction((p, ct) => ScanCommand.RunAsync(p.GetValue(config)!, p.GetValue(report), Console.Out, ct));
        return scan;
    }

    /// <summary>Child-process entry (<see cref="HostProtocol.ExecCommand"/>): execute one notebook, write the executed copy and a result file.</summary>
    static Command ExecCommand()
    {
        var notebook = new Argument<string>("notebook");
        var executed = new Argument<string>("executed");
        var result = new Argument<string>("result");
        var parentPipe = new Option<bool>(HostProtocol.ParentPipeOption) { Description = "Exit when stdin (a pipe from the runner) closes." };
        var keepGoing = new Option<bool>(HostProtocol.KeepGoingOption) { Description = "Run every cell even after one fails." };
        var exec = new Command(HostProtocol.ExecCommand, "Internal: execute one notebook in this process (the runner starts it).") { notebook, executed, result, parentPipe, keepGoing };
        exec.Hidden = true;
        exec.SetAction(async (p, _) =>
        {
            if (p.GetValue(parentPipe)) HostProtocol.ExitWhenParentPipeCloses();
            var doc = NotebookDocument.Load(p.GetValue(notebook)!);
            var progress = new StreamWriter(Console.OpenStandardError()) { AutoFlush = true };
            var executor = new NotebookExecutor { OnProgress = line => progress.WriteLine(HostProtocol.ProgressPrefix + line), KeepGoing = p.GetValue(keepGoing) };
            var r = await executor.ExecuteAsync(doc);
            SafeFiles.WriteAllTextAtomic(p.GetValue(executed)!, doc.ToJson());
            SafeFiles.WriteAllTextAtomic(p.GetValue(result)!, NotebookExecutor.ToJson(r));
            return r.Ok ? 0 : 1;
        });
        return exec;
    }

    /// <summary>Build-time check that TorchSharp's native backend loads and computes (see the .csproj).</summary>
    static int VerifyTorch()
    {
        try
        {
            SafetyNotebooks.Runtime.TorchRuntime.EnsureLoaded();
            using var a = TorchSharp.torch.ones(8, 8);
            using var b = a.matmul(a);
            if (Math.Abs(b[0, 0].item<float>() - 8f) > 1e-4) throw new InvalidOperationException("8×8 matmul of ones gave a wrong value");
            Console.WriteLine("TorchSharp native backend loads: ok");
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("error: TorchSharp's native backend does not load on this machine: " + e.Message +
                " Run 'dotnet run --project src/SafetyNotebooks.Cli -c Release -p:SafetyNotebooksSkipVerify=true -- doctor' to see why.");
            return 1;
        }
    }

    /// <summary>Adds stable cell ids to notebooks in place (atomically); cell contents are not changed.</summary>
    static int AddCellIds(string[] files)
    {
        foreach (var f in files)
        {
            var doc = NotebookDocument.Parse(File.ReadAllText(f), f); // Parse adds the ids
            SafeFiles.WriteAllTextAtomic(f, doc.ToJson());
            Console.WriteLine($"{f}: cell ids present");
        }
        return 0;
    }
}
