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

/// <summary>Runs the real <c>safety-notebooks</c> program as a child process.</summary>
public static class CliProcess
{
    public static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(params string[] args)
    {
        var psi = SafetyNotebooks.Cli.Notebooks.NotebookRunner.SelfInvocation(args);
        psi.RedirectStandardError = true;
        psi.RedirectStandardOutput = true;
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, stdout, await stderr);
    }

    /// <summary>Asserts exit code 2 and exactly one stderr line, starting with "error: " and containing <paramref name="expected"/>; returns it.</summary>
    public static string AssertOneLineError((int Exit, string Stdout, string Stderr) r, string expected)
    {
        Assert.True(r.Exit == 2, $"exit {r.Exit}\nstdout: {r.Stdout}\nstderr: {r.Stderr}");
        var line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line);
        Assert.Contains(expected, line);
        return line;
    }
}

/// <summary>Validates notebook JSON against the official nbformat 4.5 schema (vendored in tests/.../Schemas, BSD-3, from jupyter/nbformat).</summary>
public static class NbformatSchema
{
    static readonly Lazy<NJsonSchema.JsonSchema> Schema = new(() =>
        NJsonSchema.JsonSchema.FromJsonAsync(Flattened(File.ReadAllText(Path.Combine(TestNotebooks.RepoRoot, "tests", "SafetyNotebooks.Cli.Tests", "Schemas", "nbformat.v4.5.schema.json")))).GetAwaiter().GetResult());

    /// <summary>
    /// The schema keeps helper schemas one level down, in <c>definitions/misc/*</c>; NJsonSchema resolves <c>$ref</c>s only to
    /// direct children of <c>definitions</c>. Same schema, in memory: each <c>misc/x</c> becomes <c>definitions/misc_x</c>.
    /// </summary>
    static string Flattened(string schemaJson)
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse(schemaJson)!.AsObject();
        var definitions = root["definitions"]!.AsObject();
        var misc = definitions["misc"]!.AsObject();
        definitions.Remove("misc");
        foreach (var (name, schema) in misc.ToList()) { misc.Remove(name); definitions["misc_" + name] = schema; }
        return root.ToJsonString().Replace("\"#/definitions/misc/", "\"#/definitions/misc_");
    }

    /// <summary>The schema violations of <paramref name="json"/> (empty when valid), one per line.</summary>
    public static string Errors(string json) => string.Join("\n", Schema.Value.Validate(json).Select(e => $"{e.Path}: {e.Kind} {e}"));

    public static void AssertValid(string json, string what)
    {
        var errors = Errors(json);
        Assert.True(errors.Length == 0, $"{what} is not valid nbformat 4.5:\n{errors}");
    }
}
