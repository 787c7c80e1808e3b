using System.Diagnostics;
using SafetyNotebooks.Native;
using SafetyNotebooks.Runtime;

namespace SafetyNotebooks.Cli.Commands;

/// <summary>
/// <c>safety-notebooks doctor</c>: reports what a machine has and lacks for the curriculum — .NET,
/// the notebook tools, TorchSharp's native backend (and the Debian fix), the Jupyter kernel — each
/// with the command that fixes it.
/// </summary>
public static class Doctor
{
    public static int Run(TextWriter o)
    {
        int problems = 0;
        void Line(bool ok, string what, string detail, string? fix = null)
        {
            o.WriteLine($"{(ok ? "✓" : "✗")} {what,-26} {detail}");
            if (!ok) { problems++; if (fix != null) o.WriteLine($"  {"",-26} fix: {fix}"); }
        }

        Line(Environment.Version.Major >= 10, ".NET runtime", $"{Environment.Version} ({System.Runtime.InteropServices.RuntimeInformation.OSDescription})", "install the .NET 10 SDK");

        // libstdc++ and the TorchSharp native fix
        var libstd = TorchSharpNativeFix.FindSystemLibStdCxx();
        var provided = libstd != null ? TorchSharpNativeFix.ProvidedGlibcxxVersions(libstd) : new HashSet<string>();
        bool hasNew = provided.Contains(TorchSharpNativeFix.WeakableVersion);
        Line(true, "system libstdc++", libstd == null ? "not found (non-glibc system?)" :
            $"{libstd}: {(hasNew ? "has" : "lacks")} {TorchSharpNativeFix.WeakableVersion}{(hasNew ? "" : " → the build marks that need weak in libLibTorchSharp.so")}");
        foreach (var folder in TorchRuntime.CandidateNativeFolders().Where(Directory.Exists).Distinct())
        {
            var lib = Path.Combine(folder, "libLibTorchSharp.so");
            if (!File.Exists(lib)) continue;
            var needs = ElfVersionTable.ReadNeeds(lib).Where(n => n.Version == TorchSharpNativeFix.WeakableVersion).ToList();
            bool fine = hasNew || needs.All(n => n.IsWeak);
            Line(fine, "libLibTorchSharp.so", $"{lib}: {(needs.Count == 0 ? "no GLIBCXX_3.4.32 need" : needs.All(n => n.IsWeak) ? "GLIBCXX_3.4.32 need is weak (fixed)" : "GLIBCXX_3.4.32 need is strict")}",
                "dotnet build -c Release (the build applies the fix)");
        }

        // Another libtorch on the system path (Debian's python3-torch) — harmless for us since we preload ours.
        var systemTorch = new[] { "/usr/lib/x86_64-linux-gnu/libtorch_cpu.so", "/usr/lib/libtorch_cpu.so", "/usr/local/lib/libtorch_cpu.so" }.FirstOrDefault(File.Exists);
        if (systemTorch != null)
            o.WriteLine($"! {"system libtorch",-26} {systemTorch} is on the library path; SafetyNotebooks preloads its own libtorch by absolute path, so it is not used.");

        try
        {
            TorchRuntime.EnsureLoaded();
            using var a = TorchSharp.torch.ones(64, 64);
            using var b = a.matmul(a);
            bool right = Math.Abs(b[0, 0].item<float>() - 64f) < 1e-3;
            Line(right, "TorchSharp", $"{EnvironmentSummary.VersionOf(typeof(TorchSharp.torch).Assembly)} loads; 64×64 matmul {(right ? "correct" : "WRONG")}; native from {TorchRuntime.NativeFolder ?? "TorchSharp's own search"}; threads {TorchSharp.torch.get_num_threads()}");
            o.WriteLine($"- {"CPU tuning",-26} MKL vendor check: {TorchRuntime.MklOnAmd}; OMP_WAIT_POLICY {TorchRuntime.OmpWaitPolicy}");
            o.WriteLine($"- {"Scalar lifetime guard",-26} {ScalarLifetimeGuard.Status} (TorchSharp 0.107 implicit-Scalar use-after-free workaround)");
            o.WriteLine($"- {"Malloc trim policy",-26} {MallocTrimPolicy.Status} (returns freed tensor memory that glibc keeps; SAFETY_NOTEBOOKS_MALLOC_TRIM=off disables it)");
        }
        catch (Exception e)
        {
            Line(false, "TorchSharp", e.Message, "dotnet build -c Release, then run doctor again");
        }

        var tools = Path.Combine(RepoRoot() ?? ".", ".config", "dotnet-tools.json");
        Line(File.Exists(tools), "tool manifest", File.Exists(tools) ? tools : "missing", "restore the repository's .config/dotnet-tools.json");
        var (code, output) = Try("dotnet", "tool run dotnet-interactive -- --version", RepoRoot());
        Line(code == 0, "dotnet-interactive", code == 0 ? output.Trim().Split('\n')[0] : "not restored", "dotnet tool restore");

        var jupyter = Try("jupyter", "kernelspec list", null);
        if (jupyter.Code != 0)
            o.WriteLine($"- {"Jupyter",-26} not installed (optional: the runner does not need it). To use JupyterLab: see environment/README.md");
        else
            Line(jupyter.Output.Contains(".net-csharp"), "Jupyter .net-csharp kernel", jupyter.Output.Contains(".net-csharp") ? "registered" : "not registered", "bash environment/install-jupyter-kernel.sh");

        const string interactive = SafetyNotebooks.Runtime.NotebookContract.InteractiveAssemblyName;
        var nbDll = Path.Combine(RepoRoot() ?? ".", "src", interactive, "bin", "Release", "net10.0", interactive + ".dll");
        Line(File.Exists(nbDll), "notebook library build", File.Exists(nbDll) ? nbDll : "not built", "dotnet build -c Release");

        o.WriteLine(problems == 0 ? "All good." : $"{problems} problem(s) found.");
        return problems == 0 ? 0 : 1;
    }

    /// <summary>The folder holding SafetyNotebooks.sln, searching up from the current directory and from this program.</summary>
    public static string? RepoRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "SafetyNotebooks.sln"))) return d.FullName;
        }
        return null;
    }

    static (int Code, string Output) Try(string file, string args, string? cwd)
    {
        try
        {
            var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            if (cwd != null) psi.WorkingDirectory = cwd;
            using var p = Process.Start(psi)!;
            var text = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            if (!p.WaitForExit(60_000)) { p.Kill(true); return (-1, "timed out"); }
            return (p.ExitCode, text);
        }
        catch (Exception e) { return (-1, e.Message); }
    }
}
