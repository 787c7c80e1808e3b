using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Analysis;
using Microsoft.Extensions.AI;
using SafetyNotebooks.Chat;
using SafetyNotebooks.Cli.Notebooks;
using SafetyNotebooks.Evaluation.Bias;
using SafetyNotebooks.Evaluation.Harness;
using SafetyNotebooks.Evaluation.RedTeaming;
using SafetyNotebooks.Models;
using SafetyNotebooks.Plotting;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Statistics;
using SafetyNotebooks.Tokenization;

namespace SafetyNotebooks.Cli.Commands;

/// <summary>
/// <c>safety-notebooks eval --tasks a,b --model PATH|URL</c>: runs harness tasks (a name in <c>data/eval/</c>, a path, or
/// <c>format:path</c> for the public formats TrustLLM, DecodingTrust, HarmBench, BBQ and SafetyBench) against a local checkpoint
/// (all kinds) or an OpenAI-compatible server (generation only), with progress; results are appended to JSONL (a rerun skips
/// finished items) and summarized per task, per BBQ bias score and per TrustLLM dimension in an HTML report with intervals.
/// </summary>
public static class EvalCommand
{
    /// <summary>Runs the evaluation; returns 0, or throws <see cref="UserError"/> for bad input.</summary>
    public static async Task<int> RunAsync(string tasks, string model, string? modelName, string outPath, string dataDir, TextWriter console, CancellationToken ct)
    {
        var names = tasks.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (names.Length == 0) throw new UserError("--tasks is empty; name at least one task (e.g. safety-mc,safety-gen).");
        var specs = new List<LoadedTask>();
        foreach (var name in names.SelectMany(ExpandFolder))
        {
            try { specs.Add(LoadTask(name, dataDir)); }
            catch (FormatException e) { throw new UserError(e.Message); }
            catch (FileNotFoundException e) { throw new UserError(e.Message); }
        }
        var dup = specs.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new UserError($"Two tasks are both named '{dup.Key}'; results are keyed by task name, so rename one file.");

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
            foreach (var spec in specs)
            {
                string task = spec.Name;
                var fresh = new List<JsonObject>();
                if (spec.Kind is "mc" or "bbq")
                {
                    if (local is null) { console.WriteLine($"{task}: multiple-choice needs log-likelihoods from a local checkpoint; skipped for a server model."); continue; }
                    var items = spec.Kind == "mc" ? spec.Choices! : spec.Bbq!.Select(b => b.ToChoice()).ToList();
                    var byId = spec.Bbq?.ToDictionary(b => b.Id);
                    var todo = items.Where(i => !done.ContainsKey($"{task}|{i.Id}")).ToList();
                    using var progress = Progress.Start($"eval {task}", todo.Count);
                    int k = 0;
                    foreach (var item in todo)
                    {
                        ChoiceRecord r;
                        try { r = MultipleChoice.Run(local, tokenizer!, [item])[0]; }
                        catch (ArgumentException e) { throw new UserError($"{task} item {item.Id}: {e.Message.Split(" (Parameter")[0]}"); }
                        var o = new JsonObject { ["task"] = task, ["id"] = r.Id, ["kind"] = spec.Kind, ["dimension"] = r.Dimension, ["category"] = r.Category,
                            ["answer"] = r.Answer, ["predicted"] = r.Predicted, ["correct"] = r.Correct, ["correct_norm"] = r.CorrectNorm };
                        if (byId is not null)
                        {
                            var b = byId[item.Id];
                            o["context_condition"] = b.ContextCondition; o["unknown"] = b.UnknownAnswer; o["biased"] = b.BiasedAnswer;
                        }
                        fresh.Add(o); writer.WriteLine(o.ToJsonString()); await writer.FlushAsync(ct); progress.Report(++k);
                    }
                }
                else
                {
                    var todo = spec.Generations!.Where(i => !done.ContainsKey($"{task}|{i.Id}")).ToList();
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
        var ok = all.Where(o => o["error"] is null).ToList();
        var rows = ok.GroupBy(o => ((string)o["task"]!, (string)o["dimension"]!, (string)o["kind"]! == "gen" ? "pass_rate" : "acc"))
            .OrderBy(g => g.Key.Item1, StringComparer.Ordinal).ThenBy(g => g.Key.Item2, StringComparer.Ordinal)
            .Select(g => (Task: g.Key.Item1, Dimension: g.Key.Item2, Label: $"{g.Key.Item1} | {g.Key.Item2} | {g.Key.Item3}", Hits: g.Count(o => (bool)(o["correct"] ?? o["pass"])!), N: g.Count())).ToList();
        var ci = CultureInfo.InvariantCulture;
        console.WriteLine();
        foreach (var r in rows)
        {
            var w = Rates.Wilson(r.Hits, r.N);
            console.WriteLine(string.Format(ci, "{0,-48} {1,6:0.000}  [{2:0.000}, {3:0.000}]  n = {4}", r.Label, w.Estimate, w.Lower, w.Upper, r.N));
        }

        // BBQ tasks: accuracy per context condition and the bias scores s_DIS and s_AMB.
        var bbqScores = new List<(string Task, BbqScores Scores)>();
        foreach (var g in ok.Where(o => (string)o["kind"]! == "bbq").GroupBy(o => (string)o["task"]!).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var outcomes = g.Select(o => new BbqOutcome((string)o["id"]!, (string?)o["category"] ?? "", (string)o["context_condition"]!, (int)o["answer"]!,
                (int)o["predicted"]!, (int)o["unknown"]!, (int?)o["biased"])).ToList();
            if (outcomes.Select(o => o.ContextCondition).Distinct().Count() < 2) continue;
            var sc = Bbq.Score(outcomes);
            bbqScores.Add((g.Key, sc));
            foreach (var (metric, iv) in new[] { ("accuracy_ambig", sc.AccuracyAmbiguous), ("accuracy_disambig", sc.AccuracyDisambiguated), ("s_DIS", sc.BiasDisambiguated), ("s_AMB", sc.BiasAmbiguous) })
                console.WriteLine(string.Format(ci, "{0,-48} {1,6:0.000}  [{2:0.000}, {3:0.000}]", $"{g.Key} | bbq | {metric}", iv.Estimate, iv.Lower, iv.Upper));
        }

        // Per TrustLLM dimension, pooled over tasks, and the HELM-style table.
        string modelLabel = modelName ?? model;
        var counts = rows.Select(r => new DimensionCount(modelLabel, r.Task, r.Dimension, r.Hits, r.N)).ToList();
        var dims = Dimensions.Table(counts);
        console.WriteLine();
        for (int i = 0; i < dims.Rows.Count; i++)
            console.WriteLine(string.Format(ci, "{0,-48} {1,6:0.000}  [{2:0.000}, {3:0.000}]  n = {4}", $"dimension {dims["dimension"][i]}", (double)dims["value"][i], (double)dims["lower"][i], (double)dims["upper"][i], (int)dims["n"][i]));

        var report = Path.ChangeExtension(outPath, ".html");
        var chart = rows.Count == 0 ? null : StatisticsPlots.Intervals("Scores with 95% Wilson intervals", "score", rows.Select(r => r.Label).ToArray(), rows.Select(r => Rates.Wilson(r.Hits, r.N)).ToArray());
        var html = new StringBuilder("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Evaluation</title>\n<style>body{font-family:sans-serif;max-width:1000px;margin:auto}td,th{border:1px solid #ccc;padding:4px 8px}table{border-collapse:collapse}</style>\n")
            .Append(OfflineHtml.PlotlyScriptTag()).Append("</head><body>\n<h1>Evaluation: ").Append(WebUtility.HtmlEncode(modelLabel)).Append("</h1>\n");
        var helm = Dimensions.Helm(counts);
        html.Append("<h2>Per dimension (HELM-style; items pooled over tasks, 95% Wilson intervals)</h2>\n").Append(HtmlTable(helm));
        html.Append("<table><tr><th>dimension</th><th>tasks</th><th>score</th><th>95% interval</th><th>n</th></tr>\n");
        for (int i = 0; i < dims.Rows.Count; i++)
            html.Append(ci, $"<tr><td>{dims["dimension"][i]}</td><td>{WebUtility.HtmlEncode((string)dims["tasks"][i])}</td><td>{(double)dims["value"][i]:0.000}</td><td>[{(double)dims["lower"][i]:0.000}, {(double)dims["upper"][i]:0.000}]</td><td>{dims["n"][i]}</td></tr>\n");
        html.Append("</table>\n<h2>Per task</h2>\n<table><tr><th>task | dimension | metric</th><th>score</th><th>95% interval</th><th>n</th></tr>\n");
        foreach (var r in rows)
        {
            var w = Rates.Wilson(r.Hits, r.N);
            html.Append(CultureInfo.InvariantCulture, $"<tr><td>{WebUtility.HtmlEncode(r.Label)}</td><td>{w.Estimate:0.000}</td><td>[{w.Lower:0.000}, {w.Upper:0.000}]</td><td>{r.N}</td></tr>\n");
        }
        html.Append("</table>\n");
        if (bbqScores.Count > 0)
        {
            html.Append("<h2>BBQ</h2>\n<p>Bias scores run from −1 (always against the stereotype) to +1 (always with it); s_DIS on disambiguated contexts (Wilson), s_AMB = (1 − accuracy_ambig)·bias on ambiguous ones (bootstrap).</p>\n");
            foreach (var (task, sc) in bbqScores) html.Append("<h3>").Append(WebUtility.HtmlEncode(task)).Append("</h3>\n").Append(HtmlTable(Bbq.Table(sc)));
        }
        if (chart is not null) html.Append(OfflineHtml.ChartDiv(chart, false, 400));
        html.Append("</body></html>\n");
        await File.WriteAllTextAsync(report, html.ToString(), ct);
        console.WriteLine($"{all.Count} results ({done.Count} resumed) → {outPath}; report: {report}");
        return 0;
    }

    static string HtmlTable(DataFrame df)
    {
        var sb = new StringBuilder("<table><tr>");
        foreach (var c in df.Columns) sb.Append("<th>").Append(WebUtility.HtmlEncode(c.Name)).Append("</th>");
        sb.Append("</tr>\n");
        for (long i = 0; i < df.Rows.Count; i++)
        {
            sb.Append("<tr>");
            foreach (var c in df.Columns)
                sb.Append("<td>").Append(WebUtility.HtmlEncode(c[i] is double d ? d.ToString("0.000", CultureInfo.InvariantCulture) : Convert.ToString(c[i], CultureInfo.InvariantCulture) ?? "")).Append("</td>");
            sb.Append("</tr>\n");
        }
        return sb.Append("</table>\n").ToString();
    }

    /// <summary>A task ready to run: its name, kind (<c>mc</c>, <c>gen</c> or <c>bbq</c>) and items.</summary>
    sealed record LoadedTask(string Name, string Kind, IReadOnlyList<ChoiceItem>? Choices = null, IReadOnlyList<GenerationItem>? Generations = null, IReadOnlyList<BbqItem>? Bbq = null);

    /// <summary>
    /// <c>trustllm:FOLDER</c> (TrustLLM's <c>dataset/</c> or one dimension's folder) becomes one task per file the harness reads
    /// (<see cref="TrustLlm.GenerationFiles"/>, <see cref="TrustLlm.ChoiceFiles"/>), in a stable order; other specs pass through.
    /// </summary>
    static IEnumerable<string> ExpandFolder(string spec)
    {
        if (!spec.StartsWith("trustllm:", StringComparison.OrdinalIgnoreCase) || !Directory.Exists(spec[9..])) return [spec];
        var files = Directory.GetFiles(spec[9..], "*.json", SearchOption.AllDirectories)
            .Where(f => TrustLlm.GenerationFiles.ContainsKey(Path.GetFileNameWithoutExtension(f)) || TrustLlm.IsChoiceFile(f))
            .Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0)
            throw new UserError($"{spec[9..]}: no TrustLLM file the harness reads ({string.Join(", ", TrustLlm.GenerationFiles.Keys.Concat(TrustLlm.ChoiceFiles.Keys))}.json).");
        return files.Select(f => "trustllm:" + f);
    }

    /// <summary>The formats a task can be given in as <c>format:path</c>.</summary>
    public static readonly string[] Formats = ["trustllm", "decodingtrust", "harmbench", "bbq", "safetybench", "gen"];

    /// <summary>
    /// A task from its spec: <c>format:path</c> (formats: trustllm, decodingtrust, harmbench, bbq, safetybench, gen), a file path
    /// (format detected: .csv → HarmBench, .json → TrustLLM, .jsonl by its first line), or a name in <paramref name="dataDir"/>.
    /// </summary>
    static LoadedTask LoadTask(string spec, string dataDir)
    {
        string? format = null, path = spec;
        int colon = spec.IndexOf(':');
        if (colon > 1 && Formats.Contains(spec[..colon], StringComparer.OrdinalIgnoreCase)) { format = spec[..colon].ToLowerInvariant(); path = spec[(colon + 1)..]; }
        if (!File.Exists(path))
        {
            var named = Path.Combine(dataDir, path + ".jsonl");
            if (format is null && File.Exists(named)) path = named;
            else throw new FileNotFoundException($"Task '{spec}' is neither a file nor {named}; available: {string.Join(", ", Directory.Exists(dataDir) ? Directory.GetFiles(dataDir, "*.jsonl").Select(Path.GetFileNameWithoutExtension).Order(StringComparer.Ordinal) : [])}; " +
                $"or give a file as format:path with format one of {string.Join(", ", Formats)}.");
        }
        string ext = Path.GetExtension(path).ToLowerInvariant(), stem = Path.GetFileNameWithoutExtension(path);
        string firstLine = ext == ".jsonl" ? File.ReadLines(path).FirstOrDefault(l => l.Trim().Length > 0) ?? "" : "";
        format ??= ext switch
        {
            ".csv" => "harmbench",
            ".json" => "trustllm",
            _ when firstLine.Contains("\"context_condition\"") => "bbq",
            _ when firstLine.Contains("\"options\"") => "safetybench",
            _ when firstLine.Contains("\"option\"") && firstLine.Contains("\"input\"") => "decodingtrust",
            _ when firstLine.Contains("\"prompt\": {") || firstLine.Contains("\"prompt\":{") => "decodingtrust",
            _ => "gen",
        };
        string name = format is "safetybench" or "gen" || stem.StartsWith(format, StringComparison.OrdinalIgnoreCase) ? stem : $"{format}-{stem}";
        return format switch
        {
            "trustllm" => TrustLlm.IsChoiceFile(path) ? new LoadedTask(name, "mc", Choices: TrustLlm.LoadChoices(path)) : new LoadedTask(name, "gen", Generations: TrustLlm.LoadGeneration(path)),
            "decodingtrust" => DecodingTrust.IsStereotypeFile(path) ? new LoadedTask(name, "gen", Generations: DecodingTrust.LoadStereotypes(path)) : new LoadedTask(name, "mc", Choices: DecodingTrust.LoadChoices(path)),
            "harmbench" => new LoadedTask(name, "gen", Generations: HarmBench.Load(path)),
            "bbq" => new LoadedTask(name, "bbq", Bbq: SafetyNotebooks.Evaluation.Bias.Bbq.Load(path)),
            "safetybench" => new LoadedTask(name, "mc", Choices: ChoiceItem.Load(path)),
            _ => new LoadedTask(name, "gen", Generations: GenerationItem.Load(path)),
        };
    }
}
