using System.Globalization;
using SafetyNotebooks.Cli.Notebooks;
using SafetyNotebooks.Evaluation.RedTeaming;
using SafetyNotebooks.Plotting;

namespace SafetyNotebooks.Cli.Commands;

/// <summary><c>safety-notebooks scan --config scan.yaml</c>: runs a red-teaming scan with progress and writes the results and a report.</summary>
public static class ScanCommand
{
    /// <summary>Runs the scan the config describes; returns the exit code (0 done, 2 bad config).</summary>
    public static async Task<int> RunAsync(string configPath, string? reportPath, TextWriter output, CancellationToken cancellationToken)
    {
        ScanConfig cfg;
        IReadOnlyList<AttackPrompt> prompts;
        try
        {
            cfg = ScanConfig.Load(configPath);
            prompts = AttackPrompt.LoadJsonl(cfg.Resolve(cfg.Prompts));
        }
        catch (Exception e) when (e is FileNotFoundException or InvalidDataException or FormatException or ArgumentException)
        {
            throw new UserError(e.Message);
        }
        var targets = cfg.BuildTargets();
        var options = cfg.BuildOptions();
        output.WriteLine($"scan: {targets.Count} target(s) × {prompts.Count} prompts × {options.Converters.Count} converter(s) × {options.Repeats} repeat(s); results → {options.ResultsPath}");
        ScanResult result;
        try
        {
            result = await Scanner.RunAsync(targets, prompts, options, cancellationToken);
        }
        catch (FormatException e) { throw new UserError(e.Message); }
        finally { foreach (var t in targets) t.Client.Dispose(); }

        var ci = CultureInfo.InvariantCulture;
        output.WriteLine();
        output.WriteLine($"{"converter",-16} {"ASR",7}  {"95% interval",-17} attempts");
        var table = result.AttackSuccessRates("converter");
        for (int i = 0; i < table.Rows.Count; i++)
            output.WriteLine(string.Format(ci, "{0,-16} {1,7:0.000}  [{2:0.000}, {3:0.000}]   {4}", table["group"][i], table["rate"][i], table["lower"][i], table["upper"][i], table["trials"][i]));
        output.WriteLine($"{result.Records.Count} attempts ({result.Skipped} resumed from the results file), {result.Errors} failed calls");

        var report = reportPath ?? Path.ChangeExtension(options.ResultsPath!, ".html");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(report))!);
        await File.WriteAllTextAsync(report, ScanReport.Html(result), cancellationToken);
        await File.WriteAllTextAsync(Path.ChangeExtension(report, ".md"), ScanReport.Markdown(result), cancellationToken);
        output.WriteLine($"report: {report} (and {Path.ChangeExtension(report, ".md")})");
        return 0;
    }
}
