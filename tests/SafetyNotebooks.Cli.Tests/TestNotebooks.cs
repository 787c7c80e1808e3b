using System.Text.Json;

namespace SafetyNotebooks.Cli.Tests;

/// <summary>Writes small notebooks for tests.</summary>
public static class TestNotebooks
{
    public static string RepoRoot
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "SafetyNotebooks.sln"))) return d.FullName;
            throw new InvalidOperationException("SafetyNotebooks.sln not found");
        }
    }

    /// <summary>A C# notebook JSON with the given cells ("md:" prefix makes a markdown cell; "tag:solution|" adds a tag).</summary>
    public static string Json(params string[] cells)
    {
        var list = cells.Select(c =>
        {
            var tags = new List<string>();
            if (c.StartsWith("tag:solution|")) { tags.Add("solution"); c = c["tag:solution|".Length..]; }
            bool md = c.StartsWith("md:");
            var src = md ? c[3..] : c;
            var meta = new Dictionary<string, object>();
            if (tags.Count > 0) meta["tags"] = tags;
            return md
                ? (object)new { cell_type = "markdown", metadata = meta, source = new[] { src } }
                : new { cell_type = "code", execution_count = (int?)null, metadata = meta, outputs = Array.Empty<object>(), source = new[] { src } };
        });
        return JsonSerializer.Serialize(new
        {
            cells = list,
            metadata = new { kernelspec = new { display_name = ".NET (C#)", language = "C#", name = ".net-csharp" } },
            nbformat = 4,
            nbformat_minor = 5,
        });
    }

    public static string Write(string dir, string name, params string[] cells)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, Json(cells));
        return path;
    }
}
