using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Microsoft.DotNet.Interactive;
using Microsoft.DotNet.Interactive.Commands;
using Microsoft.DotNet.Interactive.CSharp;
using Microsoft.DotNet.Interactive.Events;
using Microsoft.DotNet.Interactive.Formatting;
using Microsoft.DotNet.Interactive.PackageManagement;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>How a notebook run ended.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RunStatus>))]
public enum RunStatus
{
    /// <summary>Every code cell ran without error.</summary>
    Ok,
    /// <summary>A cell failed; execution stopped there.</summary>
    Error,
    /// <summary>The time limit stopped the notebook host.</summary>
    Timeout,
    /// <summary>The notebook host exited without a result.</summary>
    Crashed,
    /// <summary>The file is not a runnable C# notebook.</summary>
    Invalid,
}

/// <summary>Display names of <see cref="RunStatus"/> (lower case, as in reports and the summary table).</summary>
public static class RunStatusNames
{
    /// <summary>The lower-case name, e.g. <c>timeout</c>.</summary>
    public static string Name(this RunStatus s) => s.ToString().ToLowerInvariant();
}

/// <summary>The outcome of executing one notebook.</summary>
public sealed record NotebookResult
{
    public string Notebook { get; init; } = "";
    public RunStatus Status { get; set; } = RunStatus.Ok;
    public double Seconds { get; set; }
    public int CellsRun { get; set; }
    public int CodeCells { get; set; }
    /// <summary>1-based index among all cells of the cell that failed, if any.</summary>
    public int? ErrorCell { get; set; }
    public string? ErrorMessage { get; set; }
    /// <summary>1-based indexes of every cell that failed (more than one only when cells run on after an error).</summary>
    public List<int> ErrorCells { get; init; } = new();
    public string? ExecutedPath { get; set; }
    public string? ReportPath { get; set; }
    public List<double> CellSeconds { get; init; } = new();

    public bool Ok => Status == RunStatus.Ok;
}

/// <summary>
/// Executes a notebook's code cells in order in a real .NET Interactive C# kernel hosted in this
/// process, and writes the outputs back into the notebook in nbformat 4 form (streams, display
/// data with updates applied in place, execute results, errors). Execution stops at the first
/// failing cell, as Jupyter's nbconvert does.
/// </summary>
public sealed class NotebookExecutor
{
    /// <summary>Receives progress lines (live progress outputs and per-cell status) while running.</summary>
    public Action<string>? OnProgress { get; init; }

    /// <summary>Run every cell even after one fails (as nbgrader and otter-grader do when grading); the status is still Error.</summary>
    public bool KeepGoing { get; init; }

    public async Task<NotebookResult> ExecuteAsync(NotebookDocument doc)
    {
        var result = new NotebookResult { Notebook = doc.Name };
        var total = Stopwatch.StartNew();
        // The same C# kernel set-up as dotnet-interactive's Jupyter host: #r "nuget:...", display(), #!who.
        var csharp = new CSharpKernel().UseNugetDirective((k, refs) =>
        {
            k.AddAssemblyReferences(refs.SelectMany(r => r.AssemblyPaths));
            return Task.CompletedTask;
        }, false).UseKernelHelpers().UseValueSharing().UseWho().UseImportMagicCommand();
        using var kernel = new CompositeKernel { csharp };
        kernel.DefaultKernelName = csharp.Name;

        int executionCount = 0;
        long lastEcho = 0;
        result.CodeCells = doc.Cells.OfType<JsonObject>().Count(c => c["cell_type"]?.GetValue<string>() == "code");
        for (int i = 0; i < doc.Cells.Count; i++)
        {
            var cell = (JsonObject)doc.Cells[i]!;
            if (cell["cell_type"]?.GetValue<string>() != "code") continue;
            var source = NotebookDocument.Source(cell);
            var outputs = new JsonArray();
            cell["outputs"] = outputs;
            if (string.IsNullOrWhiteSpace(source)) { cell["execution_count"] = null; continue; }
            executionCount++;
            cell["execution_count"] = executionCount;

            var displays = new Dictionary<string, JsonObject>();
            var cellClock = Stopwatch.StartNew();
            using var sub = kernel.KernelEvents.Subscribe(e =>
            {
                if (e is DisplayedValueUpdated or DisplayedValueProduced && e is DisplayEvent d)
                {
                    var text = d.FormattedValues.FirstOrDefault(v => v.MimeType == "text/html")?.Value;
                    if (text != null && text.Contains($"class=\"{SafetyNotebooks.Runtime.NotebookContract.ProgressCssClass}\""))
                    {
                        var line = ExtractTitle(text);
                        long now = Environment.TickCount64;
                        bool done = line != null && line.EndsWith("done", StringComparison.Ordinal);
                        if (line != null && (done || now - lastEcho >= 2000)) { lastEcho = now; OnProgress?.Invoke(line); }
                    }
                }
            });
            var submission = await kernel.SendAsync(new SubmitCode(source, csharp.Name));
            cellClock.Stop();
            result.CellSeconds.Add(cellClock.Elapsed.TotalSeconds);
            result.CellsRun++;

            string? failure = null;
            var unclaimedDisplays = new List<JsonObject>();
            foreach (var e in submission.Events)
            {
                switch (e)
                {
                    case StandardOutputValueProduced so: AppendStream(outputs, "stdout", Text(so)); break;
                    case StandardErrorValueProduced se: AppendStream(outputs, "stderr", Text(se)); break;
                    case DisplayedValueUpdated du:
                        // In this .NET Interactive release an update carries the DisplayedValue's id, which
                        // differs from the id on the event that first showed it; link an unknown update id
                        // to the latest display not yet claimed by another update.
                        if (du.ValueId != null && !displays.ContainsKey(du.ValueId))
                        {
                            var unclaimed = unclaimedDisplays.LastOrDefault();
                            if (unclaimed != null) { unclaimedDisplays.Remove(unclaimed); displays[du.ValueId] = unclaimed; }
                        }
                        if (du.ValueId != null && displays.TryGetValue(du.ValueId, out var existing))
                            existing["data"] = Data(du.FormattedValues, du.Value);
                        else outputs.Add(Display(du, displays));
                        break;
                    case ReturnValueProduced rv:
                        outputs.Add(new JsonObject
                        {
                            ["output_type"] = "execute_result",
                            ["execution_count"] = executionCount,
                            ["data"] = Data(rv.FormattedValues, rv.Value),
                            ["metadata"] = new JsonObject(),
                        });
                        break;
                    case DisplayedValueProduced dv:
                        var shown = Display(dv, displays);
                        outputs.Add(shown);
                        unclaimedDisplays.Add(shown);
                        break;
                    case CommandFailed cf:
                        failure = cf.Message ?? cf.Exception?.Message ?? "the cell failed";
                        var ename = cf.Exception?.GetType().Name ?? "Error";
                        outputs.Add(new JsonObject
                        {
                            ["output_type"] = "error",
                            ["ename"] = ename,
                            ["evalue"] = failure,
                            ["traceback"] = new JsonArray(failure.Split('\n').Select(l => (JsonNode?)JsonValue.Create(l)).ToArray()),
                        });
                        break;
                }
            }
            if (failure != null)
            {
                result.ErrorCells.Add(i + 1);
                if (result.Status != RunStatus.Error)
                {
                    result.Status = RunStatus.Error;
                    result.ErrorCell = i + 1;
                    result.ErrorMessage = failure;
                }
                if (!KeepGoing) break;
            }
        }
        result.Seconds = total.Elapsed.TotalSeconds;
        doc.Root["metadata"] ??= new JsonObject();
        doc.Root["metadata"]!["safety_notebooks"] = new JsonObject
        {
            ["executed_by"] = "safety-notebooks run",
            ["quick_mode"] = SafetyNotebooks.Runtime.QuickMode.IsOn,
            ["seconds"] = Math.Round(result.Seconds, 2),
            ["status"] = result.Status.Name(),
        };
        return result;
    }

    static string Text(DisplayEvent e) => e.FormattedValues.FirstOrDefault()?.Value ?? e.Value?.ToString() ?? "";

    static void AppendStream(JsonArray outputs, string name, string text)
    {
        if (outputs.Count > 0 && outputs[^1] is JsonObject last && last["output_type"]?.GetValue<string>() == "stream" && last["name"]?.GetValue<string>() == name)
        {
            var prev = string.Concat(((JsonArray)last["text"]!).Select(t => t!.GetValue<string>()));
            last["text"] = NotebookDocument.ToLines(prev + text);
            return;
        }
        outputs.Add(new JsonObject { ["output_type"] = "stream", ["name"] = name, ["text"] = NotebookDocument.ToLines(text) });
    }

    static JsonObject Display(DisplayEvent d, Dictionary<string, JsonObject> displays)
    {
        var o = new JsonObject { ["output_type"] = "display_data", ["data"] = Data(d.FormattedValues, d.Value), ["metadata"] = new JsonObject() };
        if (d.ValueId != null) displays[d.ValueId] = o;
        return o;
    }

    /// <summary>nbformat's mime bundle; text/plain is always included (as Jupyter front ends and nbconvert expect).</summary>
    static JsonObject Data(IEnumerable<FormattedValue> values, object? value)
    {
        var data = new JsonObject();
        foreach (var v in values)
        {
            if (data.ContainsKey(v.MimeType)) continue;
            data[v.MimeType] = v.MimeType == "application/json" ? (JsonNode?)JsonNode.Parse(v.Value) : NotebookDocument.ToLines(v.Value);
        }
        if (!data.ContainsKey("text/plain") && value != null && value is not Microsoft.AspNetCore.Html.IHtmlContent)
        {
            try { data["text/plain"] = NotebookDocument.ToLines(value.ToDisplayString("text/plain")); }
            catch (Exception) { /* a formatter failure must not lose the other outputs */ }
        }
        return data;
    }

    static string? ExtractTitle(string html)
    {
        int i = html.IndexOf("title=\"", StringComparison.Ordinal);
        if (i < 0) return null;
        int j = html.IndexOf('"', i + 7);
        return j < 0 ? null : System.Net.WebUtility.HtmlDecode(html.Substring(i + 7, j - i - 7));
    }

    /// <summary>The result as JSON (the child process hands it to the parent this way).</summary>
    public static string ToJson(NotebookResult r) => JsonSerializer.Serialize(r);
    public static NotebookResult FromJson(string json) => JsonSerializer.Deserialize<NotebookResult>(json)!;
}
