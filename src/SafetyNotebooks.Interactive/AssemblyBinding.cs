using System.Reflection;
using System.Runtime.Loader;

namespace SafetyNotebooks.Interactive;

/// <summary>
/// dotnet-interactive 1.0.712001 loads FSharp.Core 10.0.0.0, while Plotly.NET 6 asks for 10.1.0.0,
/// so the first chart would throw FileNotFoundException. This resolver answers such a request with
/// the FSharp.Core already loaded in the process (10.1's API is a superset only in parts Plotly.NET
/// does not use) — or, if none is loaded, with the copy beside this assembly.
/// Must run before any Plotly.NET type is touched, so it lives in a class with no Plotly.NET references.
/// </summary>
public static class AssemblyBinding
{
    static int _installed;

    /// <summary>Installs the resolver once; idempotent.</summary>
    public static void InstallFSharpCoreRedirect()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 1) return;
        AssemblyLoadContext.Default.Resolving += (context, name) => Resolve(name);
        AppDomain.CurrentDomain.AssemblyResolve += (_, e) => Resolve(new AssemblyName(e.Name));
    }

    static Assembly? Resolve(AssemblyName name)
    {
        if (!string.Equals(name.Name, "FSharp.Core", StringComparison.OrdinalIgnoreCase)) return null;
        var loaded = AppDomain.CurrentDomain.GetAssemblies()
            .Where(a => string.Equals(a.GetName().Name, "FSharp.Core", StringComparison.OrdinalIgnoreCase))
            .OrderByDescending(a => a.GetName().Version)
            .FirstOrDefault();
        if (loaded != null) return loaded;
        var beside = Path.Combine(Path.GetDirectoryName(typeof(AssemblyBinding).Assembly.Location) ?? "", "FSharp.Core.dll");
        return File.Exists(beside) ? AssemblyLoadContext.Default.LoadFromAssemblyPath(beside) : null;
    }
}
