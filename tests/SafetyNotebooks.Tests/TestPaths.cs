namespace SafetyNotebooks.Tests;

/// <summary>Locates shared test fixtures relative to the repository.</summary>
public static class TestPaths
{
    /// <summary>The folder containing SafetyNotebooks.sln (walking up from the test binaries).</summary>
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "SafetyNotebooks.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException(
                $"Could not find SafetyNotebooks.sln above {AppContext.BaseDirectory}; run the tests from inside the repository.");
        }
    }

    /// <summary>../shared/fixtures/{name} beside the repository; fails with a clear message when absent.</summary>
    public static string Fixture(string name)
    {
        var path = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "fixtures", name));
        if (!Directory.Exists(path))
            throw new DirectoryNotFoundException(
                $"Test fixture '{name}' not found at {path}. The tests expect a 'shared/fixtures' folder beside the repository " +
                "folder (a copy of the project's shared/ directory); copy it there and re-run.");
        return path;
    }
}
