using System.Text.Json;
using System.Text.Json.Nodes;

namespace SafetyNotebooks.IO;

/// <summary>
/// JSON Lines files, read one way everywhere: blank lines skipped, each other line one JSON object, and every problem an error
/// naming the file and the line (<c>path:line: …</c>) with what the line should look like.
/// </summary>
public static class Jsonl
{
    /// <summary>
    /// The objects of <paramref name="path"/> with their 1-based line numbers. <paramref name="shape"/> describes a valid line
    /// (e.g. <c>{"id", "prompt"}</c>) for the error messages.
    /// </summary>
    public static IEnumerable<(int Line, JsonObject Node)> Read(string path, string shape)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"'{path}' does not exist; it should be a JSONL file of {shape} lines.", path);
        int n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(line, documentOptions: new JsonDocumentOptions { MaxDepth = 32 }); }
            catch (JsonException e) { throw new FormatException($"{path}:{n}: not valid JSON ({e.Message.Split('\n')[0]}); each line must be one {shape} object."); }
            if (node is not JsonObject obj) throw new FormatException($"{path}:{n}: not a JSON object; each line must be one {shape} object.");
            yield return (n, obj);
        }
    }

    /// <summary>A required string field, or a <see cref="FormatException"/> naming the file, line and field.</summary>
    public static string RequireString(this JsonObject node, string field, string path, int line) =>
        node[field] is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw new FormatException($"{path}:{line}: needs a string field \"{field}\".");
}
