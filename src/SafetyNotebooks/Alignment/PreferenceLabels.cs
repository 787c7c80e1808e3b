using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using SafetyNotebooks.Tokenization;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// One human (or simulated) preference label in TRL's explicit-prompt text format (<c>prompt</c>, <c>chosen</c>,
/// <c>rejected</c>), with who gave it and when. One JSON object per line in a <see cref="PreferenceJsonl"/> file.
/// </summary>
/// <param name="Prompt">The prompt text (may be empty).</param>
/// <param name="Chosen">The preferred completion.</param>
/// <param name="Rejected">The other completion.</param>
/// <param name="Labeler">Who labelled (a name or id; JSON <c>labeler</c>).</param>
/// <param name="LabeledAt">When (UTC; JSON <c>labeled_at</c>, ISO 8601).</param>
/// <param name="Source">Where the label came from, e.g. "notebook" or a choices file (JSON <c>source</c>; optional).</param>
public sealed record PreferenceRecord(
    [property: JsonPropertyName("prompt")] string Prompt,
    [property: JsonPropertyName("chosen")] string Chosen,
    [property: JsonPropertyName("rejected")] string Rejected,
    [property: JsonPropertyName("labeler")] string Labeler,
    [property: JsonPropertyName("labeled_at")] DateTimeOffset LabeledAt,
    [property: JsonPropertyName("source")] string? Source = null)
{
    /// <summary>Tokenizes the record into a <see cref="PreferencePair"/> (through <see cref="PreferenceData.Tokenize"/>).</summary>
    public PreferencePair ToPreferencePair(ITokenizer tokenizer, bool prependBos = true, bool addEos = false) =>
        PreferenceData.Tokenize(tokenizer, Prompt, Chosen, Rejected, prependBos, addEos);
}

/// <summary>
/// A JSONL preference set: one <see cref="PreferenceRecord"/> per line. <see cref="Append(string, PreferenceRecord)"/> adds lines
/// (creating the file and its folder), <see cref="Load"/> reads them back and names the line of any malformed one.
/// </summary>
public static class PreferenceJsonl
{
    static readonly JsonSerializerOptions Options = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>Appends <paramref name="record"/> as one line to <paramref name="path"/>.</summary>
    public static void Append(string path, PreferenceRecord record) => Append(path, new[] { record });

    /// <summary>Appends the records, one line each, to <paramref name="path"/> (nothing already there is changed).</summary>
    public static void Append(string path, IEnumerable<PreferenceRecord> records)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(records);
        var lines = new StringBuilder();
        foreach (var r in records)
        {
            Validate(r, path, null);
            lines.Append(JsonSerializer.Serialize(r, Options)).Append('\n');
        }
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        File.AppendAllText(path, lines.ToString(), new UTF8Encoding(false));
    }

    /// <summary>
    /// Reads every record of <paramref name="path"/> (blank lines skipped). A line that is not a JSON object with string
    /// <c>prompt</c>, <c>chosen</c>, <c>rejected</c>, <c>labeler</c> and an ISO 8601 <c>labeled_at</c> is an error naming its line number.
    /// </summary>
    public static IReadOnlyList<PreferenceRecord> Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"No preference file at {path}; label some pairs first (PreferenceJsonl.Append) or check the path.", path);
        var records = new List<PreferenceRecord>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            PreferenceRecord? r;
            try { r = JsonSerializer.Deserialize<PreferenceRecord>(line, Options); }
            catch (JsonException e)
            {
                throw new FormatException($"{path}:{lineNumber}: not a preference record ({e.Message.Split('\n')[0]}); fix or delete that line (each line is one JSON object with prompt, chosen, rejected, labeler, labeled_at).", e);
            }
            Validate(r, path, lineNumber);
            records.Add(r!);
        }
        return records;
    }

    static void Validate(PreferenceRecord? r, string path, int? line)
    {
        string where = line is int n ? $"{path}:{n}" : path;
        if (r is null) throw new FormatException($"{where}: the line is JSON null, not a preference record; fix or delete that line.");
        foreach (var (name, value) in new[] { ("prompt", r.Prompt), ("chosen", r.Chosen), ("rejected", r.Rejected), ("labeler", r.Labeler) })
            if (value is null) throw new FormatException($"{where}: the record has no \"{name}\" string; add it (each record needs prompt, chosen, rejected, labeler, labeled_at).");
        if (r.LabeledAt == default) throw new FormatException($"{where}: the record has no \"labeled_at\" time; add it as ISO 8601, e.g. \"2026-01-31T12:00:00+00:00\".");
    }
}

/// <summary>
/// A small labelling helper: shows pairs of completions as "A" and "B", records the choice (from a notebook cell, or from a
/// choices file for headless runs) and appends each label, with who and when, to a <see cref="PreferenceJsonl"/> file.
/// </summary>
public sealed class LabelingSession
{
    readonly Func<DateTimeOffset> _clock;
    readonly List<PreferenceRecord> _recorded = new();

    /// <summary>Creates a session over <paramref name="pairs"/> (texts shown as A and B) that appends to <paramref name="outputPath"/>.</summary>
    /// <param name="prompt">The prompt text shared by the pairs (may be empty).</param>
    /// <param name="pairs">The completions to compare.</param>
    /// <param name="labeler">Who labels (written to each record).</param>
    /// <param name="outputPath">The JSONL file labels are appended to.</param>
    /// <param name="clock">The time source (default: <see cref="DateTimeOffset.UtcNow"/>); pass a fixed one for reproducible files.</param>
    public LabelingSession(string prompt, IReadOnlyList<(string A, string B)> pairs, string labeler, string outputPath, Func<DateTimeOffset>? clock = null)
    {
        Prompt = prompt ?? throw new ArgumentNullException(nameof(prompt));
        Pairs = pairs ?? throw new ArgumentNullException(nameof(pairs));
        if (string.IsNullOrWhiteSpace(labeler)) throw new ArgumentException("The labeller's name is empty; pass who is labelling (e.g. your name or initials).", nameof(labeler));
        Labeler = labeler;
        ArgumentException.ThrowIfNullOrEmpty(outputPath);
        OutputPath = outputPath;
        _clock = clock ?? (() => DateTimeOffset.UtcNow);
    }

    /// <summary>The shared prompt.</summary>
    public string Prompt { get; }
    /// <summary>The pairs to label.</summary>
    public IReadOnlyList<(string A, string B)> Pairs { get; }
    /// <summary>Who labels.</summary>
    public string Labeler { get; }
    /// <summary>The JSONL file the labels go to.</summary>
    public string OutputPath { get; }
    /// <summary>The records appended by this session, in order.</summary>
    public IReadOnlyList<PreferenceRecord> Recorded => _recorded;

    /// <summary>Pair <paramref name="index"/> as text to show: <c>"pair 3 of 8 | A: … | B: …"</c> on three lines.</summary>
    public string Show(int index)
    {
        CheckIndex(index);
        var (a, b) = Pairs[index];
        return $"pair {index + 1} of {Pairs.Count}{(Prompt.Length > 0 ? $" (prompt: {Prompt})" : "")}\n  A: {a}\n  B: {b}";
    }

    /// <summary>Records the choice ("A" or "B", case-insensitive) for pair <paramref name="index"/> and appends it to the file.</summary>
    public PreferenceRecord Record(int index, string choice, string source = "notebook")
    {
        CheckIndex(index);
        bool aChosen = ParseChoice(choice, $"choice for pair {index + 1}");
        var (a, b) = Pairs[index];
        var record = new PreferenceRecord(Prompt, aChosen ? a : b, aChosen ? b : a, Labeler, _clock(), source);
        PreferenceJsonl.Append(OutputPath, record);
        _recorded.Add(record);
        return record;
    }

    /// <summary>
    /// Records one choice per pair from a text: one "A" or "B" per line, in pair order; blank lines and lines starting with
    /// <c>#</c> are skipped. Every line is checked before anything is written, and errors name the line.
    /// </summary>
    public IReadOnlyList<PreferenceRecord> RecordAll(string choices, string source = "notebook")
    {
        ArgumentNullException.ThrowIfNull(choices);
        var parsed = new List<bool>();
        int lineNumber = 0;
        foreach (var raw in choices.Split('\n'))
        {
            lineNumber++;
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            parsed.Add(ParseChoice(line, $"{source}:{lineNumber}"));
        }
        if (parsed.Count != Pairs.Count)
            throw new FormatException($"{source}: {parsed.Count} choices for {Pairs.Count} pairs; give exactly one A or B line per pair.");
        return parsed.Select((aChosen, i) => Record(i, aChosen ? "A" : "B", source)).ToList();
    }

    /// <summary>Records the choices in the file <paramref name="choicesPath"/> (see <see cref="RecordAll"/>).</summary>
    public IReadOnlyList<PreferenceRecord> RecordFromFile(string choicesPath)
    {
        if (!File.Exists(choicesPath)) throw new FileNotFoundException($"No choices file at {choicesPath}; write one A or B per line, one line per pair.", choicesPath);
        return RecordAll(File.ReadAllText(choicesPath), choicesPath);
    }

    static bool ParseChoice(string choice, string where) => choice?.Trim().ToUpperInvariant() switch
    {
        "A" => true,
        "B" => false,
        _ => throw new FormatException($"{where}: '{choice}' is not a choice; write A (the first completion is better) or B (the second).")
    };

    void CheckIndex(int index)
    {
        if (index < 0 || index >= Pairs.Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"There are {Pairs.Count} pairs; pass an index in 0..{Pairs.Count - 1}.");
    }
}
