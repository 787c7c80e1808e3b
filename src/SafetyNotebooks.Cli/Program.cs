using System.Text;
using SafetyNotebooks.Cli.Commands;
using SafetyNotebooks.Cli.Notebooks;

namespace SafetyNotebooks.Cli;

/// <summary>The <c>safety-notebooks</c> command line.</summary>
public static class Program
{
    const string Usage = """
safety-notebooks — run, export and check the SafetyNotebooks curriculum

usage:
  safety-notebooks run <notebook.ipynb | folder> [--quick] [--out DIR] [--timeout MINUTES] [--no-report]
      Execute notebooks headless in a .NET Interactive C# kernel; write executed notebooks and
      HTML reports to DIR (default artifacts/run); exit 1 if any cell errored.
  safety-notebooks export --learner [<notebook.ipynb | folder>] [--out DIR]
      Write learner editions (solutions replaced by stubs, outputs cleared) to DIR (default artifacts/learner).
  safety-notebooks export --charts <executed.ipynb> [--out DIR]
      Write each chart of an executed notebook as a standalone offline HTML page (default artifacts/charts).
  safety-notebooks doctor
      Report what this machine has and lacks (dotnet, tools, TorchSharp native load, Jupyter kernel).
  safety-notebooks bench [--json]
      Benchmarks (see README).
""";

    public static async Task<int> Main(string[] args)
    {
        Console.OutputEncoding = Encoding.UTF8;
        try
        {
            if (args.Length == 0 || args[0] is "-h" or "--help" or "help") { Console.WriteLine(Usage); return args.Length == 0 ? 2 : 0; }
            return args[0] switch
            {
                "run" => await RunCommand(args[1..]),
                "export" => ExportCommand(args[1..]),
                "doctor" => Doctor.Run(Console.Out),
                "bench" => await BenchCommand.Run(args[1..], Console.Out),
                "__exec" => await ExecCommand(args[1..]),
                "__verify-torch" => VerifyTorch(),
                _ => throw new UserError($"unknown command '{args[0]}'. Commands: run, export, doctor, bench (see --help)."),
            };
        }
        catch (UserError e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            return 2;
        }
    }

    /// <summary>Splits arguments into positional ones and --options (with values where given).</summary>
    public static (List<string> Positional, Dictionary<string, string?> Options) Parse(string[] args, params string[] valued)
    {
        var pos = new List<string>();
        var opts = new Dictionary<string, string?>();
        for (int i = 0; i < args.Length; i++)
        {
            var a = args[i];
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                if (valued.Contains(a))
                {
                    if (i + 1 >= args.Length) throw new UserError($"{a} needs a value.");
                    opts[a] = args[++i];
                }
                else opts[a] = null;
            }
            else pos.Add(a);
        }
        return (pos, opts);
    }

    static void Only(Dictionary<string, string?> opts, params string[] allowed)
    {
        var unknown = opts.Keys.Where(k => !allowed.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UserError($"unknown option {unknown[0]}; allowed here: {string.Join(", ", allowed)}.");
    }

    static async Task<int> RunCommand(string[] args)
    {
        var (pos, opts) = Parse(args, "--out", "--timeout");
        Only(opts, "--quick", "--out", "--timeout", "--no-report");
        if (pos.Count != 1) throw new UserError("run takes one notebook or folder, e.g. 'safety-notebooks run notebooks --quick'.");
        var notebooks = NotebookDocument.Discover(pos[0]);
        if (notebooks.Count == 1) NotebookDocument.Load(notebooks[0]); // a single bad file: one-line error
        double minutes = 20;
        if (opts.TryGetValue("--timeout", out var t) && (!double.TryParse(t, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out minutes) || minutes <= 0))
            throw new UserError($"--timeout takes minutes as a positive number, not '{t}'.");
        var options = new RunOptions
        {
            Quick = opts.ContainsKey("--quick") || SafetyNotebooks.Runtime.QuickMode.IsOn,
            OutputDirectory = opts.GetValueOrDefault("--out") ?? Path.Combine("artifacts", "run"),
            Timeout = TimeSpan.FromMinutes(minutes),
            Reports = !opts.ContainsKey("--no-report"),
        };
        var results = await new NotebookRunner().RunAsync(notebooks, options);
        return results.All(r => r.Ok) ? 0 : 1;
    }

    static int ExportCommand(string[] args)
    {
        var (pos, opts) = Parse(args, "--out");
        Only(opts, "--learner", "--charts", "--out");
        if (opts.ContainsKey("--charts"))
        {
            if (pos.Count != 1) throw new UserError("export --charts takes one executed notebook, e.g. 'export --charts artifacts/run/00-environment-and-tensors.ipynb'.");
            var chartDir = opts.GetValueOrDefault("--out") ?? Path.Combine("artifacts", "charts");
            var written = ChartExporter.Export(NotebookDocument.Load(pos[0]), chartDir);
            foreach (var w in written) Console.WriteLine(w);
            if (written.Count == 0) throw new UserError($"{pos[0]} has no chart outputs; run it first ('run {pos[0]}') and pass the executed copy from artifacts/run/.");
            return 0;
        }
        if (!opts.ContainsKey("--learner")) throw new UserError("export needs an edition: 'export --learner [notebooks] [--out DIR]' or 'export --charts <executed.ipynb>'.");
        var source = pos.Count > 0 ? pos[0] : "notebooks";
        var outDir = opts.GetValueOrDefault("--out") ?? Path.Combine("artifacts", "learner");
        Directory.CreateDirectory(outDir);
        foreach (var nb in NotebookDocument.Discover(source))
        {
            var (learner, hidden) = LearnerExporter.Export(NotebookDocument.Load(nb), outDir);
            var target = Path.Combine(outDir, Path.GetFileName(nb));
            File.WriteAllText(target, learner.ToJson());
            Console.WriteLine($"{Path.GetFileName(nb)}: {hidden} solution(s) replaced → {target}");
        }
        return 0;
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

    /// <summary>Child-process entry: execute one notebook, write the executed copy and a result file.</summary>
    static async Task<int> ExecCommand(string[] args)
    {
        if (args.Length != 3) throw new UserError("internal: __exec <notebook> <executed.ipynb> <result.json>");
        var doc = NotebookDocument.Load(args[0]);
        var progress = new StreamWriter(Console.OpenStandardError()) { AutoFlush = true };
        var executor = new NotebookExecutor { OnProgress = line => progress.WriteLine("progress: " + line) };
        var result = await executor.ExecuteAsync(doc);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(args[1]))!);
        File.WriteAllText(args[1], doc.ToJson());
        File.WriteAllText(args[2], NotebookExecutor.ToJson(result));
        return result.Ok ? 0 : 1;
    }
}
