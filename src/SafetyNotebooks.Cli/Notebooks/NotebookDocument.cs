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
        var nbformat = root["nbformat"]?.GetValueKind() == JsonValueKind.Number ? root["nbformat"]!.GetValue<int>() : 0;
        if (nbformat != 4)
            throw new UserError($"{path}: nbformat {nbformat} is not supported; save it as nbformat 4 (Jupyter's current format).");
        var kernel = root["metadata"]?["kernelspec"]?["name"]?.GetValue<string>();
        var language = root["metadata"]?["kernelspec"]?["language"]?.GetValue<string>() ?? root["metadata"]?["language_info"]?["name"]?.GetValue<string>();
        bool isCSharp = (kernel != null && CSharpKernels.Contains(kernel.ToLowerInvariant()))
                        || (kernel == null && language != null && language.Equals("C#", StringComparison.OrdinalIgnoreCase));
        if (!isCSharp)
            throw new UserError($"{path} is a notebook for the '{kernel ?? language ?? "unknown"}' kernel; the runner executes C# notebooks (.net-csharp). Change its kernel to .NET (C#) or run it elsewhere.");
        for (int i = 0; i < cells.Count; i++)
        {
            if (cells[i] is not JsonObject c || c["cell_type"]?.GetValueKind() != JsonValueKind.String)
                throw new UserError($"{path}: cell {i + 1} has no \"cell_type\"; the file is damaged.");
        }
        return new NotebookDocument(path, root);
    }

    static string FirstLine(string s) => s.Split('\n')[0].Trim();

    /// <summary>The source of a cell as one string (nbformat allows a string or a list of lines).</summary>
    public static string Source(JsonObject cell) => cell["source"] switch
    {
        JsonArray lines => string.Concat(lines.Select(l => l?.GetValue<string>() ?? "")),
        JsonValue v => v.GetValue<string>(),
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
        (cell["metadata"]?["tags"] as JsonArray)?.Select(t => t?.GetValue<string>() ?? "") ?? Enumerable.Empty<string>();

    /// <summary>The file's display name.</summary>
    public string Name => System.IO.Path.GetFileName(Path);

    /// <summary>Serialises as Jupyter does (1-space indent, UTF-8).</summary>
    public string ToJson() => Root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 1, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

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
