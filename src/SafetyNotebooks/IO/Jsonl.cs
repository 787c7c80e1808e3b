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

    /// <summary>
    /// The objects of a JSON file holding one array of objects (TrustLLM's layout) or of a JSONL file, with the 1-based line on
    /// which each object starts, so errors can name it. Which it is is decided by the first non-blank character (<c>[</c>: array).
    /// </summary>
    public static IEnumerable<(int Line, JsonObject Node)> ReadRecords(string path, string shape)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"'{path}' does not exist; it should be a JSON list or JSONL file of {shape} objects.", path);
        var bytes = File.ReadAllBytes(path);
        int start = 0;
        if (bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF) start = 3;
        int first = start;
        while (first < bytes.Length && bytes[first] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') first++;
        if (first >= bytes.Length || bytes[first] != (byte)'[') return Read(path, shape);
        return ReadArray(path, shape, bytes, start);
    }

    static List<(int Line, JsonObject Node)> ReadArray(string path, string shape, byte[] bytes, int start)
    {
        var items = new List<(int, JsonObject)>();
        var reader = new Utf8JsonReader(bytes.AsSpan(start), new JsonReaderOptions { MaxDepth = 64, CommentHandling = JsonCommentHandling.Skip });
        int line = 1; long counted = 0;
        int LineAt(long offset)
        {
            for (; counted < offset; counted++) if (bytes[start + counted] == (byte)'\n') line++;
            return line;
        }
        try
        {
            reader.Read();                                                     // the opening '['
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                int at = LineAt(reader.TokenStartIndex);
                if (reader.TokenType != JsonTokenType.StartObject) throw new FormatException($"{path}:{at}: an array element that is not an object; the file must be a list of {shape} objects.");
                items.Add((at, JsonNode.Parse(ref reader)!.AsObject()));
            }
        }
        catch (JsonException e) { throw new FormatException($"{path}:{(e.LineNumber ?? 0) + 1}: not valid JSON ({e.Message.Split('\n')[0]}); the file must be a list of {shape} objects."); }
        return items;
    }
}
