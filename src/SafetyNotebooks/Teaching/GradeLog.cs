using System.Text.Json;

namespace SafetyNotebooks.Teaching;

/// <summary>
/// Machine-readable results of <see cref="Exercises"/> and <see cref="Check"/> for <c>safety-notebooks grade</c>.
/// <para>
/// Learners see only the ✓/✗ lines. When the environment variable <see cref="EnvironmentVariable"/> names a file
/// (the grader sets it for the notebook host it starts), every check also appends one JSON line to that file:
/// <c>{"kind":"exercise"|"check","name":…,"passed":true|false,"fallback":bool,"message":…}</c>. Without the
/// variable nothing is written, so a learner's notebook output stays as it is.
/// </para>
/// </summary>
public static class GradeLog
{
    /// <summary>The environment variable holding the path of the JSON-lines file the checks append to.</summary>
    public const string EnvironmentVariable = "SAFETY_NOTEBOOKS_GRADE_LOG";

    /// <summary>Kind of an <see cref="Exercises"/> result.</summary>
    public const string Exercise = "exercise";
    /// <summary>Kind of a <see cref="Check"/> result.</summary>
    public const string Check = "check";

    static readonly object Gate = new();

    /// <summary>Appends one result when grading is on; never throws (grading must not change what a notebook does).</summary>
    public static void Record(string kind, string name, bool passed, string? message = null, bool fallback = false)
    {
        var path = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrEmpty(path)) return;
        var line = JsonSerializer.Serialize(new GradeRecord(kind, name, passed, fallback, message));
        try { lock (Gate) File.AppendAllText(path, line + "\n"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* the grader reports the missing results */ }
    }
}

/// <summary>One line of the grade log (see <see cref="GradeLog"/>).</summary>
public sealed record GradeRecord(
    [property: System.Text.Json.Serialization.JsonPropertyName("kind")] string Kind,
    [property: System.Text.Json.Serialization.JsonPropertyName("name")] string Name,
    [property: System.Text.Json.Serialization.JsonPropertyName("passed")] bool Passed,
    [property: System.Text.Json.Serialization.JsonPropertyName("fallback")] bool Fallback,
    [property: System.Text.Json.Serialization.JsonPropertyName("message")] string? Message);
