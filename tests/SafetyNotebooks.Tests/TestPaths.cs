namespace SafetyNotebooks.Tests;

/// <summary>Locates the repository and the shared fixtures from the test binaries.</summary>
public static class TestPaths
{
    /// <summary>The folder holding SafetyNotebooks.sln.</summary>
    public static string RepoRoot
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "SafetyNotebooks.sln"))) return d.FullName;
            throw new InvalidOperationException("SafetyNotebooks.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>../shared/fixtures/NAME beside the repository (CI copies shared/ there).</summary>
    public static string Fixture(string name)
    {
        var path = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "fixtures", name));
        if (!Directory.Exists(path))
            throw new DirectoryNotFoundException($"Fixture folder {path} is missing: the tests expect the shared/ folder beside the repository (shared/fixtures/{name}).");
        return path;
    }
}
