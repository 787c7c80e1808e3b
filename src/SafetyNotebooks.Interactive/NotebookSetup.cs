using Microsoft.DotNet.Interactive;
using Microsoft.DotNet.Interactive.Formatting;
using Microsoft.AspNetCore.Html;
using Plotly.NET;
using SafetyNotebooks.Plotting;
using SafetyNotebooks.Runtime;

namespace SafetyNotebooks.Interactive;

/// <summary>
/// What the first cell of every notebook runs: <c>SafetyNotebooks.Interactive.NotebookSetup.Load()</c>.
/// It installs the FSharp.Core binding fix Plotly.NET needs in dotnet-interactive, loads TorchSharp's
/// native backend (with the Debian fix and the shipped libtorch), seeds everything, registers the
/// formatters, embeds plotly.js once for offline charts, routes progress to a live output and returns
/// the one-line environment summary.
/// </summary>
public static class NotebookSetup
{
    static bool _bundleShown;

    /// <summary>Sets up the notebook session. Safe to call again (re-running the first cell).</summary>
    public static string Load(int seed = Seeds.Default)
    {
        AssemblyBinding.InstallFSharpCoreRedirect();
        return LoadCore(seed);
    }

    // Separate method so Plotly/Interactive types are only touched after the binding fix is in place.
    static string LoadCore(int seed)
    {
        TorchRuntime.EnsureLoaded();
        Seeds.Set(seed);
        Formatters.Register();
        Progress.SinkFactory = () => new NotebookProgressSink();
        var context = KernelInvocationContext.Current;
        QuietAssemblyUnificationWarnings(context?.HandlingKernel);
        if (context != null)
        {
            context.Display(new HtmlString(OfflineHtml.PlotlyScriptTag() + "<small>plotly.js " + OfflineHtml.PlotlyJsVersion + " embedded for offline charts</small>"), "text/html");
            _bundleShown = true;
        }
        return EnvironmentSummary.OneLine();
    }

    /// <summary>
    /// TorchSharp is built for .NET 8, so cells that use it make the C# kernel print "warning CS1701: Assuming
    /// assembly reference 'System.Runtime.Numerics, Version=8.0.0.0' ... matches ... 10.0.0.0" — harmless
    /// (SDK builds suppress it by default) but confusing in a lesson. The C# kernel offers no option for it, so
    /// this lowers that kernel's script warning level to 1 (CS1701 is a level-2 warning) through its private
    /// script options, if they are where dotnet-interactive 1.0.712001 keeps them; otherwise nothing changes.
    /// </summary>
    static void QuietAssemblyUnificationWarnings(Kernel? kernel)
    {
        try
        {
            if (kernel == null || kernel.GetType().Name != "CSharpKernel") return;
            var field = kernel.GetType().GetField("_scriptOptions", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance);
            var options = field?.GetValue(kernel);
            var with = options?.GetType().GetMethod("WithWarningLevel", new[] { typeof(int) });
            if (with != null) field!.SetValue(kernel, with.Invoke(options, new object[] { 1 }));
        }
        catch (Exception) { /* a cosmetic fix must never break setup */ }
    }

    /// <summary>Chart HTML for the notebook: a div, plus the plotly.js bundle if the setup cell did not show it.</summary>
    public static string ChartHtml(GenericChart chart)
    {
        bool include = !_bundleShown;
        _bundleShown = true;
        return OfflineHtml.ChartDiv(chart, include, 450);
    }
}

/// <summary>
/// Kernel extension entry point, for hosts that load SafetyNotebooks as a NuGet package
/// (<c>#r "nuget:SafetyNotebooks"</c>): runs the same setup as the first cell.
/// </summary>
public sealed class KernelExtension : IKernelExtension
{
    /// <inheritdoc />
    public Task OnLoadAsync(Kernel kernel)
    {
        AssemblyBinding.InstallFSharpCoreRedirect();
        Register();
        kernel.RegisterForDisposal(() => Progress.SinkFactory = () => new ConsoleProgressSink());
        return Task.CompletedTask;
    }

    static void Register()
    {
        TorchRuntime.EnsureLoaded();
        Formatters.Register();
        Progress.SinkFactory = () => new NotebookProgressSink(); // charts embed plotly.js with the first one shown
    }
}
