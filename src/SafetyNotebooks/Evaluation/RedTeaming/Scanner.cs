using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Microsoft.Data.Analysis;
using Microsoft.Extensions.AI;
using SafetyNotebooks.IO;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Statistics;

namespace SafetyNotebooks.Evaluation.RedTeaming;

/// <summary>One attack prompt: an id, a category (for per-category rates) and the text.</summary>
public sealed record AttackPrompt(string Id, string Category, string Text)
{
    /// <summary>
    /// Reads a JSONL file of <c>{"id", "category", "prompt"}</c> objects (blank lines skipped). A malformed line is an error
    /// naming the file and line.
    /// </summary>
    public static IReadOnlyList<AttackPrompt> LoadJsonl(string path)
    {
        var list = new List<AttackPrompt>();
        var ids = new HashSet<string>();
        foreach (var (n, node) in Jsonl.Read(path, "{\"id\", \"category\", \"prompt\"}"))
        {
            string id = node.RequireString("id", path, n), text = node.RequireString("prompt", path, n);
            if (!ids.Add(id)) throw new FormatException($"{path}:{n}: duplicate id \"{id}\"; ids must be unique so a resumed scan can skip finished items.");
            list.Add(new AttackPrompt(id, (string?)node["category"] ?? "uncategorized", text));
        }
        return list;
    }
}

/// <summary>A model under attack: a name for the results, the client, and its system prompt (null: none).</summary>
public sealed record ScanTarget(string Name, IChatClient Client, string? SystemPrompt = null);

/// <summary>How a scan runs.</summary>
public sealed record ScanOptions
{
    /// <summary>Converters applied to every prompt (default: none, i.e. the prompt as written).</summary>
    public IReadOnlyList<IPromptConverter> Converters { get; init; } = [new IdentityConverter()];
    /// <summary>Judges of every reply; the first decides <see cref="ScanRecord.Success"/>, the others are recorded beside it.</summary>
    public IReadOnlyList<IJudge> Judges { get; init; } = [new RefusalJudge()];
    /// <summary>Attempts per (target, prompt, converter): more than one measures the variance of a sampling target. Default 1.</summary>
    public int Repeats { get; init; } = 1;
    /// <summary>Attempts in flight at once (the target clients may limit further). Default 4.</summary>
    public int MaxParallel { get; init; } = 4;
    /// <summary>Append each finished attempt to this JSONL file, and skip attempts already in it (resume). Null: keep in memory only.</summary>
    public string? ResultsPath { get; init; }
    /// <summary>Options for every target call (e.g. temperature, max tokens). Repeat r gets seed <see cref="Seed"/> + r.</summary>
    public ChatOptions? ChatOptions { get; init; }
    /// <summary>Base seed of the calls. Default 0.</summary>
    public int Seed { get; init; }
    /// <summary>Progress title (null: no progress display).</summary>
    public string? ProgressTitle { get; init; } = "scan";
}

/// <summary>One attempt of a scan, as written to the results JSONL.</summary>
public sealed record ScanRecord
{
    /// <summary>Unique key: target, prompt id, converter, repeat.</summary>
    [JsonPropertyName("key")] public string Key { get; init; } = "";
    /// <summary>Target name.</summary>
    [JsonPropertyName("target")] public string Target { get; init; } = "";
    /// <summary>Attack prompt id.</summary>
    [JsonPropertyName("prompt_id")] public string PromptId { get; init; } = "";
    /// <summary>Attack category.</summary>
    [JsonPropertyName("category")] public string Category { get; init; } = "";
    /// <summary>Converter name.</summary>
    [JsonPropertyName("converter")] public string Converter { get; init; } = "";
    /// <summary>Repeat index.</summary>
    [JsonPropertyName("repeat")] public int Repeat { get; init; }
    /// <summary>The converted prompt as sent.</summary>
    [JsonPropertyName("sent")] public string Sent { get; init; } = "";
    /// <summary>The target's reply (null when the call failed).</summary>
    [JsonPropertyName("reply")] public string? Reply { get; init; }
    /// <summary>The error of a failed call (null on success); failed calls are excluded from rates and retried on resume.</summary>
    [JsonPropertyName("error")] public string? Error { get; init; }
    /// <summary>The first judge's decision (null when the call failed).</summary>
    [JsonPropertyName("success")] public bool? Success { get; init; }
    /// <summary>The first judge's reason.</summary>
    [JsonPropertyName("reason")] public string? Reason { get; init; }
    /// <summary>Every judge's decision by name.</summary>
    [JsonPropertyName("judges")] public Dictionary<string, bool> Judges { get; init; } = new();
    /// <summary>Wall time of the call.</summary>
    [JsonPropertyName("latency_ms")] public double LatencyMs { get; init; }
}

/// <summary>The records of a scan with the summaries a report needs.</summary>
public sealed class ScanResult(IReadOnlyList<ScanRecord> records, int skipped)
{
    /// <summary>Every attempt (including ones read back from a resumed results file).</summary>
    public IReadOnlyList<ScanRecord> Records { get; } = records;
    /// <summary>Attempts found finished in the results file and not run again.</summary>
    public int Skipped { get; } = skipped;
    /// <summary>Attempts whose call failed.</summary>
    public int Errors => Records.Count(r => r.Error is not null);

    /// <summary>
    /// Attack success rate per group with Wilson intervals (failed calls excluded): <paramref name="by"/> is a comma-separated
    /// list of <c>target</c>, <c>category</c>, <c>converter</c>, <c>judge:NAME</c> is not a grouping but selects which judge's
    /// verdicts count (default: the first judge's).
    /// </summary>
    public DataFrame AttackSuccessRates(string by = "category", string? judge = null, double level = 0.95)
    {
        var keys = by.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        foreach (var k in keys)
            if (k is not ("target" or "category" or "converter"))
                throw new ArgumentException($"Cannot group by '{k}': use target, category and/or converter, comma-separated.", nameof(by));
        string Group(ScanRecord r) => string.Join(" | ", keys.Select(k => k switch { "target" => r.Target, "category" => r.Category, _ => r.Converter }));
        bool Verdict(ScanRecord r) => judge is null ? r.Success!.Value
            : r.Judges.TryGetValue(judge, out var v) ? v : throw new ArgumentException($"No judge named '{judge}' in the results; judges: {string.Join(", ", r.Judges.Keys)}.", nameof(judge));
        var groups = Records.Where(r => r.Error is null).GroupBy(Group).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (g.Key, g.Count(Verdict), g.Count())).ToList();
        return Rates.Table(groups, "wilson", level);
    }
}

/// <summary>
/// Runs targets × attack prompts × converters × repeats, judges every reply, and appends each attempt to a JSONL file so an
/// interrupted scan resumes where it stopped (finished attempts are skipped; failed calls are recorded and retried on the
/// next run, never fatal). In garak's terms the prompts are probes, the converters buffs and the judges detectors; in
/// PyRIT's, targets, converters and scorers.
/// </summary>
public static class Scanner
{
    static readonly JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Runs the scan; see the class summary.</summary>
    public static async Task<ScanResult> RunAsync(IReadOnlyList<ScanTarget> targets, IReadOnlyList<AttackPrompt> prompts, ScanOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var o = options ?? new ScanOptions();
        if (targets.Count == 0 || prompts.Count == 0) throw new ArgumentException($"A scan needs at least one target and one prompt (got {targets.Count} and {prompts.Count}).");
        if (o.Judges.Count == 0) throw new ArgumentException("A scan needs at least one judge to decide success.", nameof(options));
        if (o.Repeats < 1 || o.MaxParallel < 1) throw new ArgumentOutOfRangeException(nameof(options), $"Repeats and MaxParallel must be ≥ 1 (got {o.Repeats}, {o.MaxParallel}).");
        var dupTarget = targets.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (dupTarget is not null) throw new ArgumentException($"Two targets are named '{dupTarget.Key}'; names key the results, make them unique.");
        var dupConv = o.Converters.GroupBy(c => c.Name).FirstOrDefault(g => g.Count() > 1);
        if (dupConv is not null) throw new ArgumentException($"Two converters are named '{dupConv.Key}'; names key the results, make them unique.");

        var done = new Dictionary<string, ScanRecord>(StringComparer.Ordinal);
        if (o.ResultsPath is { } path && File.Exists(path))
        {
            int n = 0;
            foreach (var line in File.ReadLines(path))
            {
                n++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                ScanRecord? rec;
                try { rec = JsonSerializer.Deserialize<ScanRecord>(line, Json); }
                catch (JsonException e)
                {
                    throw new FormatException($"{path}:{n}: not a scan record ({e.Message}). The file is kept as is; move it aside to start a new scan, or delete the bad line to resume.");
                }
                if (rec is { Error: null }) done[rec.Key] = rec;
            }
        }

        var work = (from t in targets from p in prompts from c in o.Converters from r in Enumerable.Range(0, o.Repeats)
                    select (Target: t, Prompt: p, Converter: c, Repeat: r, Key: $"{t.Name}|{p.Id}|{c.Name}|{r}")).ToList();
        var todo = work.Where(w => !done.ContainsKey(w.Key)).ToList();
        var fresh = new List<ScanRecord>();
        var writeLock = new object();
        StreamWriter? writer = null;
        if (o.ResultsPath is { } outPath)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
            writer = new StreamWriter(outPath, append: true, new UTF8Encoding(false));
        }
        using var progress = o.ProgressTitle is null ? null : Progress.Start(o.ProgressTitle, todo.Count);
        int finished = 0, successes = 0, failures = 0;
        try
        {
            using var gate = new SemaphoreSlim(o.MaxParallel);
            var tasks = todo.Select(async w =>
            {
                await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    var rec = await Attempt(w.Target, w.Prompt, w.Converter, w.Repeat, w.Key, o, cancellationToken).ConfigureAwait(false);
                    lock (writeLock)
                    {
                        fresh.Add(rec);
                        if (writer is not null) { writer.WriteLine(JsonSerializer.Serialize(rec, Json)); writer.Flush(); }
                        finished++;
                        if (rec.Success == true) successes++;
                        if (rec.Error is not null) failures++;
                        progress?.Report(finished, ("asr", successes / (double)Math.Max(1, finished - failures)), ("errors", failures));
                    }
                }
                finally { gate.Release(); }
            }).ToList();
            await Task.WhenAll(tasks).ConfigureAwait(false);
        }
        finally { writer?.Dispose(); }
        var byKey = done.Values.Concat(fresh).GroupBy(r => r.Key).ToDictionary(g => g.Key, g => g.Last());
        return new ScanResult(work.Where(w => byKey.ContainsKey(w.Key)).Select(w => byKey[w.Key]).ToList(), work.Count - todo.Count);
    }

    static async Task<ScanRecord> Attempt(ScanTarget target, AttackPrompt prompt, IPromptConverter converter, int repeat, string key, ScanOptions o, CancellationToken ct)
    {
        string sent;
        try { sent = converter.Convert(prompt.Text); }
        catch (Exception e) { return Record(null, null, $"converter {converter.Name} failed: {e.Message}", 0); }
        var messages = new List<ChatMessage>();
        if (target.SystemPrompt is not null) messages.Add(new ChatMessage(ChatRole.System, target.SystemPrompt));
        messages.Add(new ChatMessage(ChatRole.User, sent));
        var chatOptions = o.ChatOptions?.Clone() ?? new ChatOptions();
        chatOptions.Seed ??= o.Seed + repeat;
        var sw = Stopwatch.StartNew();
        string reply;
        try { reply = (await target.Client.GetResponseAsync(messages, chatOptions, ct).ConfigureAwait(false)).Text ?? ""; }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { throw; }
        catch (Exception e) { return Record(sent, null, $"{e.GetType().Name}: {e.Message}", sw.Elapsed.TotalMilliseconds); }
        double latency = sw.Elapsed.TotalMilliseconds;
        var verdicts = new Dictionary<string, bool>();
        Verdict? first = null;
        try
        {
            foreach (var j in o.Judges)
            {
                var v = await j.JudgeAsync(prompt.Text, reply, ct).ConfigureAwait(false);
                verdicts[j.Name] = v.Success;
                first ??= v;
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { throw; }
        catch (Exception e) { return Record(sent, reply, $"judge failed: {e.GetType().Name}: {e.Message}", latency); }
        return Record(sent, reply, null, latency) with { Success = first!.Success, Reason = first.Reason, Judges = verdicts };

        ScanRecord Record(string? s, string? r, string? error, double ms) => new()
        {
            Key = key, Target = target.Name, PromptId = prompt.Id, Category = prompt.Category, Converter = converter.Name, Repeat = repeat,
            Sent = s ?? "", Reply = r, Error = error, LatencyMs = Math.Round(ms, 1),
        };
    }
}
