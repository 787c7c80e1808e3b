using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using SafetyNotebooks.IO;
using SafetyNotebooks.Statistics;

namespace SafetyNotebooks.Evaluation.Governance;

/// <summary>What kind of result file a JSONL file is.</summary>
public enum ResultKind
{
    /// <summary><c>safety-notebooks eval</c> lines: <c>{"task", "id", "kind": "mc"|"gen", "dimension", "correct"|"pass", "error"}</c>.</summary>
    Eval,
    /// <summary>Red-teaming scan records (<c>ScanRecord</c>): <c>{"key", "target", "prompt_id", "category", "converter", "success", "error"}</c>.</summary>
    Scan,
    /// <summary><c>safety-notebooks guard</c> decisions: <c>{"id", "action", "rail", "reason", "text"}</c>.</summary>
    Guard,
    /// <summary>Metrics with an interval (bias scores, anything else): <c>{"metric", "value", "lower", "upper", "n"}</c>.</summary>
    Metric,
}

/// <summary>One result file that was read: its path, kind, line count and the start of its SHA-256 (an audit trail).</summary>
public sealed record ResultSource(string Path, ResultKind Kind, int Lines, string Sha256);

/// <summary>
/// One number taken from the results: a rate (<see cref="Successes"/> of <see cref="Trials"/> with a Wilson interval) or a metric
/// as its file gives it. <see cref="Group"/> is e.g. <c>safety-gen | safety | refuse</c> or <c>converter=base64</c>.
/// </summary>
public sealed record Measurement(ResultKind Kind, string Source, string Name, string Group, Interval Value, int Trials, int? Successes)
{
    /// <summary>The measurement as every document prints it, e.g. <c>25.0% [14.2%, 40.2%] (10/40)</c>; see <see cref="EvaluationEvidence.Describe"/>.</summary>
    public string Text => Successes is int k ? EvaluationEvidence.Describe(Value, k, Trials) : EvaluationEvidence.DescribeMetric(Value, Trials);
}

/// <summary>
/// The evaluation results the governance documents rest on, read from the files the project writes (evaluation harness, red-team
/// scans, guardrail decisions, metric files), with every rate recomputed from the lines (Wilson 95% intervals, failed calls
/// excluded, as the reports do). Nothing here is typed by hand: change a line and the documents change.
/// </summary>
public sealed class EvaluationEvidence
{
    /// <summary>The files read.</summary>
    public IReadOnlyList<ResultSource> Sources { get; }
    /// <summary>Every measurement, in a stable order.</summary>
    public IReadOnlyList<Measurement> Measurements { get; }

    EvaluationEvidence(IReadOnlyList<ResultSource> sources, IReadOnlyList<Measurement> measurements) { Sources = sources; Measurements = measurements; }

    /// <summary>Measurements of one kind.</summary>
    public IEnumerable<Measurement> Of(ResultKind kind) => Measurements.Where(m => m.Kind == kind);

    /// <summary>Whether any file of <paramref name="kind"/> was read.</summary>
    public bool Has(ResultKind kind) => Sources.Any(s => s.Kind == kind);

    /// <summary>A rate as the documents print it: percent with one decimal, the Wilson interval, and the counts.</summary>
    public static string Describe(Interval ci, int successes, int trials) =>
        string.Create(CultureInfo.InvariantCulture, $"{Pct(ci.Estimate)} [{Pct(ci.Lower)}, {Pct(ci.Upper)}] ({successes}/{trials})");

    /// <summary>A metric as the documents print it: three decimals, its interval, and n.</summary>
    public static string DescribeMetric(Interval ci, int n) =>
        string.Create(CultureInfo.InvariantCulture, $"{ci.Estimate:0.000} [{ci.Lower:0.000}, {ci.Upper:0.000}] (n = {n})");

    /// <summary>Percent with one decimal.</summary>
    public static string Pct(double v) => (v * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%";

    /// <summary>
    /// Reads result files: each path is a JSONL file or a folder searched recursively for <c>*.jsonl</c>. The kind of each file is
    /// told by its first line's fields; a file of none of the known kinds, or a line missing a field its kind needs, is an error
    /// naming the file, the line and the field.
    /// </summary>
    public static EvaluationEvidence Load(IEnumerable<string> paths)
    {
        var files = new List<string>();
        foreach (var p in paths)
        {
            if (Directory.Exists(p))
            {
                var found = Directory.GetFiles(p, "*.jsonl", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal).ToList();
                if (found.Count == 0) throw new FileNotFoundException($"Results folder '{p}' holds no .jsonl files; run `eval`, `scan` or `guard` first, or point --results at the files.");
                files.AddRange(found);
            }
            else if (File.Exists(p)) files.Add(p);
            else throw new FileNotFoundException($"Results path '{p}' is neither a file nor a folder.", p);
        }
        if (files.Count == 0) throw new ArgumentException("No result files given; the governance documents need at least one (eval, scan, guard or metric JSONL).");
        var sources = new List<ResultSource>();
        var ms = new List<Measurement>();
        foreach (var f in files.Distinct())
        {
            var lines = Jsonl.Read(f, "result").ToList();
            if (lines.Count == 0) throw new FormatException($"{f}: the file is empty; a result file needs at least one line.");
            var kind = KindOf(lines[0].Node, f, lines[0].Line);
            string name = Path.GetFileName(f);
            sources.Add(new ResultSource(f, kind, lines.Count, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)))[..12].ToLowerInvariant()));
            ms.AddRange(kind switch
            {
                ResultKind.Eval => ReadEval(lines, f, name),
                ResultKind.Scan => ReadScan(lines, f, name),
                ResultKind.Guard => ReadGuard(lines, f, name),
                _ => ReadMetric(lines, f, name),
            });
        }
        return new EvaluationEvidence(sources, ms);
    }

    static ResultKind KindOf(JsonObject o, string path, int line) =>
        o.ContainsKey("task") && o.ContainsKey("kind") ? ResultKind.Eval
        : o.ContainsKey("key") && o.ContainsKey("prompt_id") ? ResultKind.Scan
        : o.ContainsKey("action") && o.ContainsKey("rail") ? ResultKind.Guard
        : o.ContainsKey("metric") && o.ContainsKey("value") ? ResultKind.Metric
        : throw new FormatException($"{path}:{line}: not a result line the governance documents read. Expected an eval result {{\"task\", \"id\", \"kind\", ...}}, " +
            "a scan record {\"key\", \"prompt_id\", \"success\", ...}, a guardrail decision {\"id\", \"action\", \"rail\", ...} or a metric {\"metric\", \"value\", \"lower\", \"upper\", \"n\"}.");

    static string Str(JsonObject o, string field, string path, int line) => o.RequireString(field, path, line);

    static bool Bool(JsonObject o, string field, string path, int line) =>
        o[field] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : throw new FormatException($"{path}:{line}: needs a true/false field \"{field}\".");

    static double Num(JsonObject o, string field, string path, int line) =>
        o[field] is JsonValue v && v.TryGetValue<double>(out var d) && double.IsFinite(d) ? d : throw new FormatException($"{path}:{line}: needs a number field \"{field}\".");

    static bool Failed(JsonObject o) => o["error"] is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0;

    static IEnumerable<Measurement> RateGroups(ResultKind kind, string source, string name, IEnumerable<(string Group, bool Hit)> items) =>
        items.GroupBy(i => i.Group).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g =>
        {
            int k = g.Count(i => i.Hit), n = g.Count();
            return new Measurement(kind, source, name, g.Key, Rates.Wilson(k, n), n, k);
        });

    static IEnumerable<Measurement> ReadEval(List<(int Line, JsonObject Node)> lines, string path, string name)
    {
        var items = new List<(string Group, bool Hit, bool Mc)>();
        foreach (var (n, o) in lines)
        {
            string task = Str(o, "task", path, n), kind = Str(o, "kind", path, n), dim = (string?)o["dimension"] ?? "safety";
            if (kind is not ("mc" or "gen")) throw new FormatException($"{path}:{n}: field \"kind\" is '{kind}'; eval results are \"mc\" or \"gen\".");
            if (Failed(o)) continue;
            if (kind == "mc") items.Add(($"{task} | {dim} | acc", Bool(o, "correct", path, n), true));
            else items.Add(($"{task} | {dim} | {Str(o, "scoring", path, n)}", Bool(o, "pass", path, n), false));
        }
        return RateGroups(ResultKind.Eval, name, "eval", items.Select(i => (i.Group, i.Hit)));
    }

    static IEnumerable<Measurement> ReadScan(List<(int Line, JsonObject Node)> lines, string path, string name)
    {
        var recs = new List<(string Target, string Category, string Converter, bool Success)>();
        foreach (var (n, o) in lines)
        {
            string target = Str(o, "target", path, n), cat = Str(o, "category", path, n), conv = Str(o, "converter", path, n);
            if (Failed(o)) continue;
            recs.Add((target, cat, conv, Bool(o, "success", path, n)));
        }
        // ASR per target, then per target × converter and target × category: the groupings the scan report uses.
        return RateGroups(ResultKind.Scan, name, "asr", recs.Select(r => ($"target={r.Target}", r.Success)))
            .Concat(RateGroups(ResultKind.Scan, name, "asr", recs.Select(r => ($"target={r.Target} | converter={r.Converter}", r.Success))))
            .Concat(RateGroups(ResultKind.Scan, name, "asr", recs.Select(r => ($"target={r.Target} | category={r.Category}", r.Success))));
    }

    static IEnumerable<Measurement> ReadGuard(List<(int Line, JsonObject Node)> lines, string path, string name)
    {
        var actions = new List<string>();
        foreach (var (n, o) in lines)
        {
            string action = Str(o, "action", path, n);
            if (action == "error") continue;
            actions.Add(action);
        }
        // Share of screened inputs per action (allow, refuse, fix, filter, ...), each with its interval.
        return actions.Distinct().OrderBy(a => a, StringComparer.Ordinal).Select(a =>
        {
            int k = actions.Count(x => x == a);
            return new Measurement(ResultKind.Guard, name, "guard", $"action={a}", Rates.Wilson(k, actions.Count), actions.Count, k);
        }).ToList();
    }

    static IEnumerable<Measurement> ReadMetric(List<(int Line, JsonObject Node)> lines, string path, string name)
    {
        foreach (var (n, o) in lines)
        {
            string metric = Str(o, "metric", path, n);
            double v = Num(o, "value", path, n), lo = Num(o, "lower", path, n), hi = Num(o, "upper", path, n);
            if (lo > v || v > hi) throw new FormatException($"{path}:{n}: metric '{metric}' has value {v} outside its interval [{lo}, {hi}].");
            int count = o["n"] is JsonValue nv && nv.TryGetValue<int>(out var c) && c > 0 ? c : throw new FormatException($"{path}:{n}: needs a positive integer field \"n\".");
            string group = (string?)o["group"] ?? "";
            yield return new Measurement(ResultKind.Metric, name, metric, group, new Interval(v, lo, hi, 0.95, (string?)o["method"] ?? "given"), count, null);
        }
    }

    /// <summary>
    /// Appends one metric line <c>{"metric", "group", "value", "lower", "upper", "n", "method"}</c> to <paramref name="path"/>:
    /// how a bias score or any other interval-valued metric reaches the governance documents.
    /// </summary>
    public static void WriteMetric(string path, string metric, Interval value, int n, string group = "")
    {
        var o = new JsonObject { ["metric"] = metric, ["group"] = group, ["value"] = value.Estimate, ["lower"] = value.Lower, ["upper"] = value.Upper, ["n"] = n, ["method"] = value.Method };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.AppendAllText(path, o.ToJsonString() + "\n");
    }

    /// <summary>
    /// Writes eval result lines in the format of <c>safety-notebooks eval</c> (<c>kind: "gen"</c>) for generation records produced
    /// in a notebook, so the documents read them like the CLI's.
    /// </summary>
    public static void WriteGenerationResults(string path, string task, IEnumerable<Harness.GenerationRecord> records)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var w = new StreamWriter(path, append: true);
        foreach (var r in records)
            w.WriteLine(new JsonObject { ["task"] = task, ["id"] = r.Id, ["kind"] = "gen", ["dimension"] = r.Dimension, ["category"] = r.Category,
                ["scoring"] = r.Scoring, ["reply"] = r.Reply, ["pass"] = r.Pass, ["error"] = r.Error }.ToJsonString());
    }

    /// <summary>Writes eval result lines in the format of <c>safety-notebooks eval</c> (<c>kind: "mc"</c>) for multiple-choice records.</summary>
    public static void WriteChoiceResults(string path, string task, IEnumerable<Harness.ChoiceRecord> records)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var w = new StreamWriter(path, append: true);
        foreach (var r in records)
            w.WriteLine(new JsonObject { ["task"] = task, ["id"] = r.Id, ["kind"] = "mc", ["dimension"] = r.Dimension, ["category"] = r.Category,
                ["answer"] = r.Answer, ["predicted"] = r.Predicted, ["correct"] = r.Correct, ["correct_norm"] = r.CorrectNorm }.ToJsonString());
    }
}
