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

    /// <summary>
    /// ../shared/fixtures/{name} beside the repository, or the copy the repository ships in data/{name};
    /// fails with a clear message when neither exists.
    /// </summary>
    public static string Fixture(string name)
    {
        var shared = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "fixtures", name));
        if (Directory.Exists(shared)) return shared;
        var shipped = Path.Combine(RepoRoot, "data", name);
        if (Directory.Exists(shipped)) return shipped;
        throw new DirectoryNotFoundException(
            $"Test fixture '{name}' not found at {shared} nor at {shipped}. Restore data/{name} with " +
            $"'git checkout -- data/{name}', or place the project's shared/ folder beside the repository folder.");
    }
}
