using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using SafetyNotebooks.Teaching;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>Options for <c>safety-notebooks grade</c>.</summary>
public sealed record GradeOptions
{
    /// <summary>Shrink training (SAFETY_NOTEBOOKS_QUICK=1 for each notebook).</summary>
    public bool Quick { get; init; }
    /// <summary>Time limit per notebook.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(20);
    /// <summary>Where the tables and each learner's executed notebooks go.</summary>
    public string OutputDirectory { get; init; } = Path.Combine("artifacts", "grade");
}

/// <summary>One learner's notebook for one lesson.</summary>
/// <param name="Lesson">The notebook's file name without extension in the folder-per-learner layout; empty in the flat layout (one assignment).</param>
public sealed record Submission(string Learner, string Lesson, string Path);

/// <summary>One column of the grade table: an <see cref="Exercises"/> result or a <see cref="Check"/> result of a lesson.</summary>
public sealed record GradeItem(string Lesson, string Kind, string Name)
{
    /// <summary>Column header: the name, prefixed by the lesson when the table covers several lessons.</summary>
    public string Header(bool withLesson) => withLesson && Lesson.Length > 0 ? $"{Lesson}: {Name}" : Name;
}

/// <summary>A cell of the grade table.</summary>
public sealed record GradeCell(string Outcome, string? Message = null, bool Fallback = false)
{
    public const string Pass = "pass", Fail = "fail", Error = "error", NotReached = "not-reached";
}

/// <summary>The learner × (exercise and check) table.</summary>
public sealed class GradeTable
{
    public List<string> Learners { get; } = new();
    public List<GradeItem> Items { get; } = new();
    public Dictionary<(string Learner, GradeItem Item), GradeCell> Cells { get; } = new();
    /// <summary>How each submission's run ended, by learner and lesson.</summary>
    public Dictionary<(string Learner, string Lesson), NotebookResult> Runs { get; } = new();

    public GradeCell this[string learner, GradeItem item] => Cells[(learner, item)];

    public bool SeveralLessons => Items.Select(i => i.Lesson).Distinct().Count() > 1;

    public (int Passed, int Total) Totals(string learner, string kind)
    {
        var items = Items.Where(i => i.Kind == kind).ToList();
        return (items.Count(i => this[learner, i].Outcome == GradeCell.Pass), items.Count);
    }
}

/// <summary>
/// Grades a folder of learner notebooks, as nbgrader and otter-grader do for Python courses: each notebook runs headless in its
/// own notebook host (a child process, with a time limit), every cell runs even after one fails, and the checks'
/// machine-readable results (<see cref="GradeLog"/>) become a learner × exercise table (CSV and offline HTML).
/// </summary>
public static class Grader
{
    /// <summary>
    /// The learners' notebooks in <paramref name="folder"/>: <c>folder/&lt;learner&gt;.ipynb</c> (one assignment; the learner is the file
    /// name) and <c>folder/&lt;learner&gt;/&lt;lesson&gt;.ipynb</c> (a folder per learner, any number of lessons). Names starting with '.' are skipped.
    /// </summary>
    public static List<Submission> Discover(string folder, string? skipDirectory = null)
    {
        if (!Directory.Exists(folder))
            throw new UserError($"{folder}: no such folder; pass the folder holding the learners' notebooks (folder/<learner>.ipynb or folder/<learner>/<lesson>.ipynb).");
        var skip = skipDirectory == null ? null : Path.GetFullPath(skipDirectory).TrimEnd(Path.DirectorySeparatorChar);
        var found = new List<Submission>();
        foreach (var f in Directory.GetFiles(folder, "*.ipynb").Where(f => !Path.GetFileName(f).StartsWith('.')).Order(StringComparer.Ordinal))
            found.Add(new Submission(Path.GetFileNameWithoutExtension(f), "", f));
        foreach (var d in Directory.GetDirectories(folder).Where(d => !Path.GetFileName(d).StartsWith('.')).Order(StringComparer.Ordinal))
        {
            if (skip != null && Path.GetFullPath(d).TrimEnd(Path.DirectorySeparatorChar) == skip) continue;
            foreach (var f in Directory.GetFiles(d, "*.ipynb").Where(f => !Path.GetFileName(f).StartsWith('.')).Order(StringComparer.Ordinal))
                found.Add(new Submission(Path.GetFileName(d), Path.GetFileNameWithoutExtension(f), f));
        }
        if (found.Count == 0)
            throw new UserError($"{folder} holds no learner notebooks; expected folder/<learner>.ipynb or folder/<learner>/<lesson>.ipynb.");
        var clash = found.GroupBy(s => (s.Learner, s.Lesson)).FirstOrDefault(g => g.Count() > 1);
        if (clash != null)
            throw new UserError($"learner '{clash.Key.Learner}' has both {folder}/{clash.Key.Learner}.ipynb and a folder {folder}/{clash.Key.Learner}/; keep one layout per learner.");
        if (found.Any(s => s.Lesson.Length == 0) && found.Any(s => s.Lesson.Length > 0))
            throw new UserError($"{folder} mixes the two layouts (folder/<learner>.ipynb and folder/<learner>/<lesson>.ipynb); use one, so every learner is graded on the same lessons.");
        return found;
    }

    /// <summary>Runs every submission and writes grades.csv, results.csv and grades.html into the output folder.</summary>
    public static async Task<GradeTable> GradeAsync(string folder, GradeOptions options, TextWriter log)
    {
        var submissions = Discover(folder, options.OutputDirectory);
        SafeFiles.RefuseOverwritingInputs(submissions.Select(s => s.Path),
            new[] { "grades.csv", "results.csv", "grades.html" }.Select(f => Path.Combine(Path.GetFullPath(options.OutputDirectory), f)), "--out");
        SafeFiles.PrepareDirectory(options.OutputDirectory, "--out");
        var runs = new List<(Submission Sub, NotebookResult Result, List<GradeRecord> Records)>();
        foreach (var learner in submissions.GroupBy(s => s.Learner))
        {
            var runDir = RunDirectory(options.OutputDirectory, learner.Key);
            var subs = learner.ToList();
            var results = await new NotebookRunner(TextWriter.Null).RunAsync(subs.Select(s => s.Path).ToList(), new RunOptions
            {
                Quick = options.Quick, Timeout = options.Timeout, OutputDirectory = runDir, KeepGoing = true, GradeLogs = true,
            });
            for (int i = 0; i < subs.Count; i++)
            {
                var records = ReadLog(NotebookRunner.GradeLogFor(subs[i].Path, runDir));
                runs.Add((subs[i], results[i], records));
                int passed = records.Count(r => r.Passed);
                log.WriteLine($"{subs[i].Learner}{(subs[i].Lesson.Length > 0 ? " / " + subs[i].Lesson : "")}: {results[i].Status.Name()} in {results[i].Seconds:0.0} s, " +
                    $"{passed} of {records.Count} reported checks passed{(results[i].ErrorMessage != null && results[i].Status is RunStatus.Timeout or RunStatus.Crashed or RunStatus.Invalid ? " — " + results[i].ErrorMessage : "")}");
            }
        }
        var table = Build(runs.Select(r => (r.Sub, r.Result, r.Records, StaticExercises(r.Sub.Path))).ToList());
        var outDir = Path.GetFullPath(options.OutputDirectory);
        SafeFiles.WriteAllTextAtomic(Path.Combine(outDir, "grades.csv"), WideCsv(table));
        SafeFiles.WriteAllTextAtomic(Path.Combine(outDir, "results.csv"), LongCsv(table));
        SafeFiles.WriteAllTextAtomic(Path.Combine(outDir, "grades.html"), Html(table, options));
        log.WriteLine($"grade table: {Path.Combine(outDir, "grades.csv")} and {Path.Combine(outDir, "grades.html")} ({table.Learners.Count} learners × {table.Items.Count(i => i.Kind == GradeLog.Exercise)} exercises and {table.Items.Count(i => i.Kind == GradeLog.Check)} checks)");
        return table;
    }

    static string RunDirectory(string outputDirectory, string learner) => Path.Combine(Path.GetFullPath(outputDirectory), "runs", learner);

    /// <summary>The records of a grade log; a torn last line (the host was killed while writing) is ignored.</summary>
    public static List<GradeRecord> ReadLog(string path)
    {
        var list = new List<GradeRecord>();
        if (!File.Exists(path)) return list;
        foreach (var line in File.ReadAllLines(path))
        {
            if (line.Trim().Length == 0) continue;
            try { if (JsonSerializer.Deserialize<GradeRecord>(line) is { } r) list.Add(r); }
            catch (JsonException) { /* torn line */ }
        }
        return list;
    }

    static readonly Regex ExerciseCall = new(@"Exercises\s*\.\s*(?:Check|CheckOrFallback|Use)\s*(?:<[^()]*>)?\s*\(\s*""((?:[^""\\]|\\.)*)""", RegexOptions.Compiled);

    /// <summary>The exercise names written as string literals in a notebook's code, in order: columns even when no learner reached them.</summary>
    public static List<string> StaticExercises(string notebookPath)
    {
        try
        {
            var doc = NotebookDocument.Load(notebookPath);
            var code = string.Join("\n", doc.Cells.OfType<System.Text.Json.Nodes.JsonObject>()
                .Where(c => c["cell_type"]?.GetValue<string>() == "code").Select(NotebookDocument.Source));
            return ExerciseCall.Matches(code).Select(m => Regex.Unescape(m.Groups[1].Value)).Distinct().ToList();
        }
        catch (UserError) { return new List<string>(); } // an invalid notebook is reported by its run
    }

    /// <summary>
    /// Builds the table. A recorded result is pass or fail; a check with no record is <c>error</c> when the notebook ran to its end
    /// (the cell failed before the check reported, or the check is not in this learner's notebook) and <c>not-reached</c> when the
    /// run stopped early (time limit, crash, invalid file) or the learner has no notebook for that lesson.
    /// Columns: per lesson, exercises then checks, each in the order the notebooks ran them; a name repeated within one
    /// notebook becomes "name (#2)", "name (#3)"….
    /// </summary>
    public static GradeTable Build(IReadOnlyList<(Submission Sub, NotebookResult Result, List<GradeRecord> Records, List<string> StaticExercises)> runs)
    {
        var table = new GradeTable();
        table.Learners.AddRange(runs.Select(r => r.Sub.Learner).Distinct());
        var lessons = runs.Select(r => r.Sub.Lesson).Distinct().Order(StringComparer.Ordinal).ToList();
        var keyed = new Dictionary<(string Learner, string Lesson), Dictionary<GradeItem, GradeRecord>>();
        foreach (var lesson in lessons)
        {
            foreach (var kind in new[] { GradeLog.Exercise, GradeLog.Check })
            {
                var order = new List<GradeItem>();
                foreach (var run in runs.Where(r => r.Sub.Lesson == lesson))
                {
                    if (kind == GradeLog.Exercise) Merge(order, run.StaticExercises.Select(n => new GradeItem(lesson, kind, n)).ToList());
                    var counts = new Dictionary<string, int>();
                    var seq = new List<GradeItem>();
                    if (!keyed.TryGetValue((run.Sub.Learner, lesson), out var byItem)) keyed[(run.Sub.Learner, lesson)] = byItem = new();
                    foreach (var rec in run.Records.Where(r => r.Kind == kind))
                    {
                        int n = counts[rec.Name] = counts.GetValueOrDefault(rec.Name) + 1;
                        var item = new GradeItem(lesson, kind, n == 1 ? rec.Name : $"{rec.Name} (#{n})");
                        seq.Add(item);
                        byItem[item] = rec;
                    }
                    Merge(order, seq);
                }
                table.Items.AddRange(order);
            }
        }
        foreach (var run in runs) table.Runs[(run.Sub.Learner, run.Sub.Lesson)] = run.Result;
        foreach (var learner in table.Learners)
            foreach (var item in table.Items)
            {
                GradeCell cell;
                if (!table.Runs.TryGetValue((learner, item.Lesson), out var result))
                    cell = new GradeCell(GradeCell.NotReached, $"no {item.Lesson}.ipynb from this learner");
                else if (keyed[(learner, item.Lesson)].TryGetValue(item, out var rec))
                    cell = new GradeCell(rec.Passed ? GradeCell.Pass : GradeCell.Fail, rec.Message, rec.Fallback);
                else if (result.Status is RunStatus.Ok or RunStatus.Error)
                    cell = new GradeCell(GradeCell.Error, result.Status == RunStatus.Error
                        ? $"no result: a cell failed before this check reported (first failing cell {result.ErrorCell}: {FirstLine(result.ErrorMessage)})"
                        : "no result: this check is not in the learner's notebook");
                else
                    cell = new GradeCell(GradeCell.NotReached, $"the run stopped before this check ({result.Status.Name()}: {FirstLine(result.ErrorMessage)})");
                table.Cells[(learner, item)] = cell;
            }
        return table;
    }

    /// <summary>Inserts the items of <paramref name="sequence"/> missing from <paramref name="order"/> after the item that precedes them there.</summary>
    static void Merge(List<GradeItem> order, List<GradeItem> sequence)
    {
        int last = -1;
        foreach (var item in sequence)
        {
            int at = order.IndexOf(item);
            if (at >= 0) { last = Math.Max(last, at); continue; }
            order.Insert(last + 1, item);
            last++;
        }
    }

    static string FirstLine(string? s) => (s ?? "").Replace("\r", "").Split('\n')[0].Trim();

    static string Status(GradeTable t, string learner) =>
        string.Join("; ", t.Runs.Where(kv => kv.Key.Learner == learner).OrderBy(kv => kv.Key.Lesson, StringComparer.Ordinal)
            .Select(kv => (kv.Key.Lesson.Length > 0 ? kv.Key.Lesson + ": " : "") + kv.Value.Status.Name()));

    /// <summary>The wide table: one row per learner, one column per exercise and check, then totals and run status.</summary>
    public static string WideCsv(GradeTable t)
    {
        var sb = new StringBuilder();
        var header = new List<string> { "learner" };
        header.AddRange(t.Items.Select(i => i.Header(t.SeveralLessons)));
        header.AddRange(new[] { "exercises_passed", "exercises_total", "checks_passed", "checks_total", "run_status" });
        sb.Append(string.Join(",", header.Select(Csv))).Append('\n');
        foreach (var l in t.Learners)
        {
            var (ep, et) = t.Totals(l, GradeLog.Exercise);
            var (cp, ct) = t.Totals(l, GradeLog.Check);
            var row = new List<string> { l };
            row.AddRange(t.Items.Select(i => t[l, i].Outcome));
            row.AddRange(new[] { ep, et, cp, ct }.Select(n => n.ToString(CultureInfo.InvariantCulture)));
            row.Add(Status(t, l));
            sb.Append(string.Join(",", row.Select(Csv))).Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>The long table: one row per learner and item, with the failure message.</summary>
    public static string LongCsv(GradeTable t)
    {
        var sb = new StringBuilder("learner,lesson,kind,name,outcome,fallback,message\n");
        foreach (var l in t.Learners)
            foreach (var i in t.Items)
            {
                var c = t[l, i];
                sb.Append(string.Join(",", new[] { l, i.Lesson, i.Kind, i.Name, c.Outcome, c.Fallback ? "yes" : "", c.Message ?? "" }.Select(Csv))).Append('\n');
            }
        return sb.ToString();
    }

    /// <summary>RFC 4180 quoting.</summary>
    static string Csv(string s) => s.IndexOfAny(new[] { ',', '"', '\n', '\r' }) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    static string Enc(string s) => WebUtility.HtmlEncode(s);

    const string Css = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:center}
th.item{writing-mode:vertical-rl;transform:rotate(180deg);max-height:22em;font-weight:normal;text-align:left}
th.exercise{font-weight:bold}td.learner{text-align:left}
.pass{background:#d4f4d4}.fail{background:#fde2c8}.error{background:#f8c8c8}.not-reached{background:#e4e4e4;color:#666}
""";

    static string Html(GradeTable t, GradeOptions options)
    {
        var sb = new StringBuilder($"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>SafetyNotebooks grades</title><style>{Css}</style></head><body>\n");
        sb.Append($"<h1>Grades</h1><p>{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC · {(options.Quick ? "quick mode" : "full mode")} · {t.Learners.Count} learners · " +
                  "cells: <span class=\"pass\">pass</span> <span class=\"fail\">fail</span> <span class=\"error\">error</span> (the cell failed before the check reported) " +
                  "<span class=\"not-reached\">not-reached</span> (the run stopped first); hover a cell for the message, † = later cells used the reference solution.</p>\n");
        sb.Append("<table><tr><th>learner</th>");
        foreach (var i in t.Items) sb.Append($"<th class=\"item {i.Kind}\" title=\"{Enc(i.Kind)}\">{Enc(i.Header(t.SeveralLessons))}</th>");
        sb.Append("<th>exercises</th><th>checks</th><th>run</th></tr>\n");
        foreach (var l in t.Learners)
        {
            var (ep, et) = t.Totals(l, GradeLog.Exercise);
            var (cp, ct) = t.Totals(l, GradeLog.Check);
            var reports = t.Runs.Where(kv => kv.Key.Learner == l).OrderBy(kv => kv.Key.Lesson, StringComparer.Ordinal)
                .Select(kv => $"<a href=\"runs/{Uri.EscapeDataString(l)}/{Uri.EscapeDataString(Path.GetFileNameWithoutExtension(kv.Value.Notebook))}.html\">{Enc((kv.Key.Lesson.Length > 0 ? kv.Key.Lesson + ": " : "") + kv.Value.Status.Name())}</a>");
            sb.Append($"<tr><td class=\"learner\">{Enc(l)}</td>");
            foreach (var i in t.Items)
            {
                var c = t[l, i];
                sb.Append($"<td class=\"{c.Outcome}\" title=\"{Enc(c.Message ?? c.Outcome)}\">{c.Outcome}{(c.Fallback ? "†" : "")}</td>");
            }
            sb.Append($"<td>{ep}/{et}</td><td>{cp}/{ct}</td><td>{string.Join("<br>", reports)}</td></tr>\n");
        }
        sb.Append("</table></body></html>\n");
        return sb.ToString();
    }
}
