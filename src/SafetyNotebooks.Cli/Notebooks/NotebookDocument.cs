using System.Text.Json;
using System.Text.Json.Nodes;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>
/// An .ipynb file (nbformat 4) held as JSON, so everything we do not touch (metadata, attachments,
/// ids) survives a round trip. Loading validates the file and turns every problem into a one-line
/// <see cref="UserError"/> that names the file, the problem and the fix.
/// </summary>
public sealed class NotebookDocument
{
    /// <summary>Kernel names accepted as C# notebooks.</summary>
    public static readonly string[] CSharpKernels = { ".net-csharp", "csharp", "c#", ".net-c#" };

    public string Path { get; }
    public JsonObject Root { get; }
    public JsonArray Cells => (JsonArray)Root["cells"]!;

    NotebookDocument(string path, JsonObject root) { Path = path; Root = root; }

    /// <summary>Loads and validates a C# notebook.</summary>
    public static NotebookDocument Load(string path)
    {
        if (Directory.Exists(path))
            throw new UserError($"{path} is a folder; pass a .ipynb file (or use 'run {path}' to run every notebook in it).");
        if (!File.Exists(path))
            throw new UserError($"{path}: no such file. Check the path (notebooks live in notebooks/).");
        if (!path.EndsWith(".ipynb", StringComparison.OrdinalIgnoreCase))
            throw new UserError($"{path} is not a notebook: expected a .ipynb file.");
        string text = File.ReadAllText(path);
        return Parse(text, path);
    }

    /// <summary>Parses and validates notebook JSON; <paramref name="path"/> is used in messages.</summary>
    public static NotebookDocument Parse(string text, string path)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true }); }
        catch (JsonException e)
        {
            throw new UserError($"{path} is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}): {FirstLine(e.Message)} Fix the file or restore it with 'git checkout -- {path}'.");
        }
        if (node is not JsonObject root)
            throw new UserError($"{path} is not a notebook: the top level must be a JSON object with \"cells\".");
        if (root["cells"] is not JsonArray cells)
            throw new UserError($"{path} is not a notebook: it has no \"cells\" array.");
        int nbformat = root["nbformat"] is JsonValue nbv && nbv.TryGetValue<int>(out var nbi) ? nbi : 0;
        if (nbformat != 4)
            throw new UserError($"{path}: nbformat {root["nbformat"]?.ToJsonString() ?? "(missing)"} is not supported; save it as nbformat 4 (Jupyter's current format).");
        var kernel = StringField(root["metadata"]?["kernelspec"]?["name"], path, "metadata.kernelspec.name", "\".net-csharp\"");
        var language = StringField(root["metadata"]?["kernelspec"]?["language"], path, "metadata.kernelspec.language", "\"C#\"")
                       ?? StringField(root["metadata"]?["language_info"]?["name"], path, "metadata.language_info.name", "\"C#\"");
        bool isCSharp = (kernel != null && CSharpKernels.Contains(kernel.ToLowerInvariant()))
                        || (kernel == null && language != null && language.Equals("C#", StringComparison.OrdinalIgnoreCase));
        if (!isCSharp)
            throw new UserError($"{path} is a notebook for the '{kernel ?? language ?? "unknown"}' kernel; the runner executes C# notebooks (.net-csharp). Change its kernel to .NET (C#) or run it elsewhere.");
        for (int i = 0; i < cells.Count; i++)
        {
            if (cells[i] is not JsonObject c || c["cell_type"]?.GetValueKind() != JsonValueKind.String)
                throw new UserError($"{path}: cell {i + 1} has no \"cell_type\"; the file is damaged.");
            if (!IsMultilineString(c["source"]) && c["source"] != null)
                throw new UserError($"{path}: cell {i + 1} has a \"source\" that is a {Kind(c["source"])}, not text; it must be a string or a list of strings (restore the file with 'git checkout -- {path}').");
            if (c["metadata"]?["tags"] is { } tags && (tags is not JsonArray ta || ta.Any(t => t?.GetValueKind() != JsonValueKind.String)))
                throw new UserError($"{path}: cell {i + 1} has \"metadata.tags\" that is not a list of strings; fix or remove the tags.");
        }
        var doc = new NotebookDocument(path, root);
        doc.EnsureCellIds();
        return doc;
    }

    /// <summary>A string field, or null when absent; any other JSON kind is a one-line error naming the field.</summary>
    static string? StringField(JsonNode? node, string path, string field, string example)
    {
        if (node == null || node.GetValueKind() == JsonValueKind.Null) return null;
        if (node.GetValueKind() == JsonValueKind.String) return node.GetValue<string>();
        throw new UserError($"{path}: {field} is a {Kind(node)} ({Short(node.ToJsonString())}), not a string; set it to a string such as {example}.");
    }

    static bool IsMultilineString(JsonNode? n) =>
        n?.GetValueKind() == JsonValueKind.String || (n is JsonArray a && a.All(x => x?.GetValueKind() == JsonValueKind.String));

    static string Kind(JsonNode? n) => n?.GetValueKind() switch
    {
        JsonValueKind.Number => "number", JsonValueKind.True or JsonValueKind.False => "boolean", JsonValueKind.Object => "JSON object",
        JsonValueKind.Array => "list with non-text items", JsonValueKind.Null => "null", _ => "value",
    };

    static string Short(string s) => s.Length <= 40 ? s : s[..37] + "...";

    static readonly System.Text.RegularExpressions.Regex CellIdPattern = new("^[a-zA-Z0-9-_]{1,64}$");

    /// <summary>
    /// Gives every cell an nbformat 4.5 <c>id</c>: valid, unique ids are kept; a missing, invalid or repeated one becomes a
    /// deterministic id (the first 12 hex digits of SHA-256 over the cell's position, type and source), so the same file
    /// always gets the same ids. Notebooks older than 4.5 are marked 4.5, as Jupyter's upgrade does. Returns how many ids were added.
    /// </summary>
    public int EnsureCellIds()
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        var missing = new List<int>();
        for (int i = 0; i < Cells.Count; i++)
        {
            var cell = (JsonObject)Cells[i]!;
            var id = cell["id"]?.GetValueKind() == JsonValueKind.String ? cell["id"]!.GetValue<string>() : null;
            if (id != null && CellIdPattern.IsMatch(id) && used.Add(id)) continue;
            missing.Add(i);
        }
        foreach (var i in missing)
        {
            var cell = (JsonObject)Cells[i]!;
            var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes($"{i}\n{cell["cell_type"]!.GetValue<string>()}\n{Source(cell)}"));
            var id = Convert.ToHexStringLower(hash)[..12];
            for (int k = 2; !used.Add(id); k++) id = Convert.ToHexStringLower(hash)[..12] + "-" + k;
            cell.Remove("id");
            int at = cell.IndexOf("metadata");
            if (at < 0) cell["id"] = id; else cell.Insert(at, "id", id);
        }
        if (missing.Count > 0 && (Root["nbformat_minor"] is not JsonValue mv || !mv.TryGetValue<int>(out var minor) || minor < 5))
            Root["nbformat_minor"] = 5;
        return missing.Count;
    }


    static string FirstLine(string s) => s.Split('\n')[0].Trim();

    /// <summary>The source of a cell as one string (nbformat allows a string or a list of lines).</summary>
    public static string Source(JsonObject cell) => cell["source"] switch
    {
        JsonArray lines => string.Concat(lines.Select(l => l?.GetValueKind() == JsonValueKind.String ? l.GetValue<string>() : "")),
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        _ => "",
    };

    /// <summary>Sets a cell's source in the usual list-of-lines form.</summary>
    public static void SetSource(JsonObject cell, string source) => cell["source"] = ToLines(source);

    /// <summary>Splits text into nbformat's list of lines (each keeps its newline).</summary>
    public static JsonArray ToLines(string text)
    {
        var arr = new JsonArray();
        int start = 0;
        for (int i = 0; i < text.Length; i++)
            if (text[i] == '\n') { arr.Add(text.Substring(start, i - start + 1)); start = i + 1; }
        if (start < text.Length) arr.Add(text.Substring(start));
        return arr;
    }

    /// <summary>Tags in a cell's metadata.</summary>
    public static IEnumerable<string> Tags(JsonObject cell) =>
        (cell["metadata"]?["tags"] as JsonArray)?.Select(t => t?.GetValueKind() == JsonValueKind.String ? t.GetValue<string>() : "") ?? Enumerable.Empty<string>();

    /// <summary>The file's display name.</summary>
    public string Name => System.IO.Path.GetFileName(Path);

    /// <summary>Serialises as Jupyter does (1-space indent, UTF-8, final newline).</summary>
    public string ToJson() => Root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 1, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";

    /// <summary>The text of an output field (a string or a list of strings); anything else reads as empty.</summary>
    public static string Text(JsonNode? node, string separator = "") => node switch
    {
        JsonArray a => string.Join(separator, a.Select(x => x?.GetValueKind() == JsonValueKind.String ? x.GetValue<string>() : "")),
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        _ => "",
    };

    /// <summary>A deep copy.</summary>
    public NotebookDocument Clone() => new(Path, (JsonObject)Root.DeepClone());

    /// <summary>Finds notebooks: the file itself, or every *.ipynb in a folder (not checkpoints), sorted by name.</summary>
    public static List<string> Discover(string path)
    {
        if (File.Exists(path)) return new List<string> { path };
        if (!Directory.Exists(path)) throw new UserError($"{path}: no such file or folder. Pass a notebook (.ipynb) or a folder of notebooks, e.g. 'run notebooks'.");
        var files = Directory.GetFiles(path, "*.ipynb", SearchOption.AllDirectories)
            .Where(f => !f.Contains(".ipynb_checkpoints"))
            .OrderBy(f => f, StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new UserError($"{path} holds no .ipynb notebooks.");
        return files;
    }
}
