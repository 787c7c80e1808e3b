using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Analysis;
using Microsoft.Extensions.AI;
using SafetyNotebooks.Chat;
using SafetyNotebooks.Cli.Notebooks;
using SafetyNotebooks.Evaluation.Harness;
using SafetyNotebooks.Evaluation.RedTeaming;
using SafetyNotebooks.Models;
using SafetyNotebooks.Plotting;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Statistics;
using SafetyNotebooks.Tokenization;

namespace SafetyNotebooks.Cli.Commands;

/// <summary>
/// <c>safety-notebooks eval --tasks a,b --model PATH|URL</c>: runs harness tasks (a name in <c>data/eval/</c> or a path; JSONL
/// of multiple-choice items with <c>options</c>, or generation items with <c>scoring</c>) against a local checkpoint (both kinds)
/// or an OpenAI-compatible server (generation only), with progress; results are appended to JSONL (a rerun skips finished
/// items) and summarized in an HTML report with intervals.
/// </summary>
public static class EvalCommand
{
    /// <summary>Runs the evaluation; returns 0, or throws <see cref="UserError"/> for bad input.</summary>
    public static async Task<int> RunAsync(string tasks, string model, string? modelName, string outPath, string dataDir, TextWriter console, CancellationToken ct)
    {
        var names = tasks.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (names.Length == 0) throw new UserError("--tasks is empty; name at least one task (e.g. safety-mc,safety-gen).");
        var files = names.Select(n => File.Exists(n) ? n : Path.Combine(dataDir, n + ".jsonl")).ToArray();
        for (int i = 0; i < files.Length; i++)
            if (!File.Exists(files[i]))
                throw new UserError($"Task '{names[i]}' is neither a file nor {files[i]}; available: {string.Join(", ", Directory.Exists(dataDir) ? Directory.GetFiles(dataDir, "*.jsonl").Select(Path.GetFileNameWithoutExtension) : [])}.");

        HookedTransformer? local = null; ITokenizer? tokenizer = null; IChatClient chat;
        if (Uri.TryCreate(model, UriKind.Absolute, out var uri) && (uri.Scheme == "http" || uri.Scheme == "https"))
            chat = OpenAICompatible.Create(uri, modelName ?? "default");
        else if (Directory.Exists(model))
        {
            TorchRuntime.EnsureLoaded();
            local = HookedTransformer.FromPretrained(model);
            if (local.Cfg.DVocab != 50257) throw new UserError($"{model}: vocabulary {local.Cfg.DVocab}; local evaluation reads GPT-2-vocabulary checkpoints (50,257 tokens) for now.");
            tokenizer = new Gpt2Tokenizer();
            chat = new HookedTransformerChatClient(local, tokenizer, new LocalChatOptions { Generation = GenerationOptions.Greedy(48) });
        }
        else throw new UserError($"--model '{model}' is neither a checkpoint directory nor an http(s) URL of an OpenAI-compatible server.");

        var done = new Dictionary<string, JsonObject>(StringComparer.Ordinal);
        if (File.Exists(outPath))
            foreach (var (line, n) in File.ReadLines(outPath).Select((l, i) => (l, i + 1)))
            {
                if (string.IsNullOrWhiteSpace(line)) continue;
                try { var o = JsonNode.Parse(line)!.AsObject(); if (o["error"] is null) done[$"{o["task"]}|{o["id"]}"] = o; }
                catch (Exception e) when (e is JsonException or InvalidOperationException) { throw new UserError($"{outPath}:{n}: not a result line ({e.Message}); move the file aside to start over."); }
            }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        var all = new List<JsonObject>(done.Values);
        var summaries = new List<DataFrame>();
        await using (var writer = new StreamWriter(outPath, append: true, new UTF8Encoding(false)))
        {
            for (int t = 0; t < files.Length; t++)
            {
                string task = names[t].EndsWith(".jsonl") ? Path.GetFileNameWithoutExtension(names[t]) : names[t];
                bool isChoice = File.ReadLines(files[t]).FirstOrDefault(l => l.Trim().Length > 0)?.Contains("\"options\"") == true;
                var fresh = new List<JsonObject>();
                if (isChoice)
                {
                    if (local is null) { console.WriteLine($"{task}: multiple-choice needs log-likelihoods from a local checkpoint; skipped for a server model."); continue; }
                    List<ChoiceItem> items;
                    try { items = ChoiceItem.Load(files[t]).ToList(); } catch (FormatException e) { throw new UserError(e.Message); }
                    var todo = items.Where(i => !done.ContainsKey($"{task}|{i.Id}")).ToList();
                    using var progress = Progress.Start($"eval {task}", todo.Count);
                    int k = 0;
                    foreach (var item in todo)
                    {
                        ChoiceRecord r;
                        try { r = MultipleChoice.Run(local, tokenizer!, [item])[0]; }
                        catch (ArgumentException e) { throw new UserError($"{task} item {item.Id}: {e.Message.Split(" (Parameter")[0]}"); }
                        var o = new JsonObject { ["task"] = task, ["id"] = r.Id, ["kind"] = "mc", ["dimension"] = r.Dimension, ["category"] = r.Category,
                            ["answer"] = r.Answer, ["predicted"] = r.Predicted, ["correct"] = r.Correct, ["correct_norm"] = r.CorrectNorm };
                        fresh.Add(o); writer.WriteLine(o.ToJsonString()); await writer.FlushAsync(ct); progress.Report(++k);
                    }
                }
                else
                {
                    List<GenerationItem> items;
                    try { items = GenerationItem.Load(files[t]).ToList(); } catch (FormatException e) { throw new UserError(e.Message); }
                    var todo = items.Where(i => !done.ContainsKey($"{task}|{i.Id}")).ToList();
                    using var progress = Progress.Start($"eval {task}", todo.Count);
                    int k = 0;
                    foreach (var r in await GenerationTasks.RunAsync(chat, todo, cancellationToken: ct))
                    {
                        var o = new JsonObject { ["task"] = task, ["id"] = r.Id, ["kind"] = "gen", ["dimension"] = r.Dimension, ["category"] = r.Category,
                            ["scoring"] = r.Scoring, ["reply"] = r.Reply, ["pass"] = r.Pass, ["error"] = r.Error };
                        fresh.Add(o); writer.WriteLine(o.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
                        await writer.FlushAsync(ct); progress.Report(++k);
                    }
                }
                all.AddRange(fresh);
            }
        }
        chat.Dispose();
        local?.Dispose();

        // One row per task × dimension × metric, with Wilson intervals; failed calls excluded.
        var rows = all.Where(o => o["error"] is null).GroupBy(o => ((string)o["task"]!, (string)o["dimension"]!, (string)o["kind"]! == "mc" ? "acc" : "pass_rate"))
            .OrderBy(g => g.Key.Item1, StringComparer.Ordinal).ThenBy(g => g.Key.Item2, StringComparer.Ordinal)
            .Select(g => (Label: $"{g.Key.Item1} | {g.Key.Item2} | {g.Key.Item3}", Hits: g.Count(o => (bool)(o["correct"] ?? o["pass"])!), N: g.Count())).ToList();
        var table = Rates.Table(rows.Select(r => (r.Label, r.Hits, r.N)));
        var ci = CultureInfo.InvariantCulture;
        console.WriteLine();
        foreach (var r in rows)
        {
            var w = Rates.Wilson(r.Hits, r.N);
            console.WriteLine(string.Format(ci, "{0,-48} {1,6:0.000}  [{2:0.000}, {3:0.000}]  n = {4}", r.Label, w.Estimate, w.Lower, w.Upper, r.N));
        }
        var report = Path.ChangeExtension(outPath, ".html");
        var chart = rows.Count == 0 ? null : StatisticsPlots.Intervals("Scores with 95% Wilson intervals", "score", rows.Select(r => r.Label).ToArray(), rows.Select(r => Rates.Wilson(r.Hits, r.N)).ToArray());
        var html = new StringBuilder("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Evaluation</title>\n<style>body{font-family:sans-serif;max-width:1000px;margin:auto}td,th{border:1px solid #ccc;padding:4px 8px}table{border-collapse:collapse}</style>\n")
            .Append(OfflineHtml.PlotlyScriptTag()).Append("</head><body>\n<h1>Evaluation: ").Append(WebUtility.HtmlEncode(model)).Append("</h1>\n<table><tr><th>task | dimension | metric</th><th>score</th><th>95% interval</th><th>n</th></tr>\n");
        foreach (var r in rows)
        {
            var w = Rates.Wilson(r.Hits, r.N);
            html.Append(CultureInfo.InvariantCulture, $"<tr><td>{WebUtility.HtmlEncode(r.Label)}</td><td>{w.Estimate:0.000}</td><td>[{w.Lower:0.000}, {w.Upper:0.000}]</td><td>{r.N}</td></tr>\n");
        }
        html.Append("</table>\n");
        if (chart is not null) html.Append(OfflineHtml.ChartDiv(chart, false, 400));
        html.Append("</body></html>\n");
        await File.WriteAllTextAsync(report, html.ToString(), ct);
        console.WriteLine($"{all.Count} results ({done.Count} resumed) → {outPath}; report: {report}");
        return 0;
    }
}
