using System.Runtime.InteropServices;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>
/// How the CLI writes files: never over one of its inputs, always atomically (a temp file in the same
/// folder, then a rename), into output folders checked up front with one-line errors.
/// </summary>
public static class SafeFiles
{
    static readonly StringComparer PathComparer =
        RuntimeInformation.IsOSPlatform(OSPlatform.Linux) ? StringComparer.Ordinal : StringComparer.OrdinalIgnoreCase;

    /// <summary>The absolute path with every symbolic link along it resolved (the part that does not exist yet is kept as given).</summary>
    public static string Canonical(string path) => Canonical(path, 0);

    static string Canonical(string path, int depth)
    {
        var full = Path.GetFullPath(path);
        if (depth > 40) return full; // a symlink loop: compare as given
        var root = Path.GetPathRoot(full) ?? "/";
        var current = root;
        foreach (var part in full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            var next = Path.Combine(current, part);
            FileSystemInfo info = Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
            if (info.Exists || info.LinkTarget != null)
            {
                if (info.LinkTarget != null)
                {
                    var target = Path.IsPathRooted(info.LinkTarget) ? info.LinkTarget : Path.Combine(current, info.LinkTarget);
                    next = Canonical(target, depth + 1);
                }
            }
            current = next;
        }
        return current;
    }

    /// <summary>
    /// Throws a <see cref="UserError"/> when an output would replace one of the inputs (or two outputs the same file),
    /// comparing full paths with symbolic links resolved. <paramref name="outOption"/> names the option to change.
    /// </summary>
    public static void RefuseOverwritingInputs(IEnumerable<string> inputs, IEnumerable<string> outputs, string outOption)
    {
        var inputSet = new Dictionary<string, string>(PathComparer);
        foreach (var i in inputs) inputSet[Canonical(i)] = i;
        var seen = new HashSet<string>(PathComparer);
        foreach (var o in outputs)
        {
            var c = Canonical(o);
            if (inputSet.TryGetValue(c, out var input))
                throw new UserError($"{outOption} {Path.GetDirectoryName(o)} would overwrite the input {input} with {Path.GetFileName(o)}; choose an output folder that holds none of the inputs (the default is under artifacts/).");
            if (!seen.Add(c))
                throw new UserError($"two inputs would both be written to {o}; pass the folders that hold notebooks of the same name one at a time.");
        }
    }

    /// <summary>Creates the output folder if needed and checks that it is a writable folder; problems become one-line errors.</summary>
    public static string PrepareDirectory(string dir, string outOption)
    {
        if (File.Exists(dir))
            throw new UserError($"{outOption} {dir} is an existing file, not a folder; pass a folder (it is created if missing).");
        try
        {
            Directory.CreateDirectory(dir);
            var probe = Path.Combine(dir, $".sn-write-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new UserError($"{outOption} {dir} is not a writable folder ({FirstLine(e.Message)}); pass a folder you can write to.");
        }
        return dir;
    }

    /// <summary>Writes <paramref name="text"/> to a temp file beside <paramref name="path"/>, then renames it over the target, so a reader never sees half a file and a failure leaves the old file intact.</summary>
    public static void WriteAllTextAtomic(string path, string text)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(tmp, text);
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch { /* best effort */ }
            throw;
        }
    }

    static string FirstLine(string s) => s.Split('\n')[0].Trim().TrimEnd('.');
}
