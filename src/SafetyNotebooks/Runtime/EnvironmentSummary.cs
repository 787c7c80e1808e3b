using System.Reflection;
using System.Runtime.InteropServices;

namespace SafetyNotebooks.Runtime;

/// <summary>The one-line environment summary printed by the first cell of every notebook.</summary>
public static class EnvironmentSummary
{
    /// <summary>
    /// Versions, threads, seed and mode, on one line. Seeded runs are bit-identical across processes and machines
    /// at the same thread count; a different thread count changes how libtorch splits its sums, so trained values
    /// drift in the last digits (measured: 1 vs 2 threads differ from training step 11, by 4.8e-7), which the line says.
    /// </summary>
    public static string OneLine()
    {
        TorchRuntime.EnsureLoaded();
        return $"SafetyNotebooks {VersionOf(typeof(EnvironmentSummary).Assembly)} | .NET {Environment.Version} | " +
               $"TorchSharp {VersionOf(typeof(TorchSharp.torch).Assembly)} | " +
               $"threads {TorchSharp.torch.get_num_threads()} ({ThreadNote}){(TorchRuntime.MklOnAmd.StartsWith("AMD:") ? " (MKL fast kernels on AMD)" : "")} | seed {Seeds.Current} | " +
               $"{(QuickMode.IsOn ? "QUICK mode" : "full mode")} | {RuntimeInformation.OSDescription}";
    }

    /// <summary>What the thread count means for reproducibility (printed after it).</summary>
    public const string ThreadNote = "seeded results reproduce exactly at this thread count";

    /// <summary>
    /// The packages a notebook compiles against. Naming their types here also makes the library's
    /// metadata reference them, so a notebook that #r's the library can use them directly.
    /// </summary>
    public static IReadOnlyList<(string Package, string Version)> Packages() => new[]
    {
        ("TorchSharp", VersionOf(typeof(TorchSharp.torch).Assembly)),
        ("Plotly.NET", VersionOf(typeof(Plotly.NET.GenericChart).Assembly)),
        ("Plotly.NET.CSharp", VersionOf(typeof(Plotly.NET.CSharp.Chart).Assembly)),
        ("Microsoft.Data.Analysis", VersionOf(typeof(Microsoft.Data.Analysis.DataFrame).Assembly)),
        ("Microsoft.ML.Tokenizers", VersionOf(typeof(Microsoft.ML.Tokenizers.TiktokenTokenizer).Assembly)),
    };

    /// <summary>The informational version of an assembly, without the commit suffix.</summary>
    public static string VersionOf(Assembly a) =>
        (a.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? a.GetName().Version?.ToString() ?? "?").Split('+')[0];
}
