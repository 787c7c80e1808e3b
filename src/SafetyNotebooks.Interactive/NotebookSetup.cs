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
        if (context != null)
        {
            context.Display(new HtmlString(OfflineHtml.PlotlyScriptTag() + "<small>plotly.js " + OfflineHtml.PlotlyJsVersion + " embedded for offline charts</small>"), "text/html");
            _bundleShown = true;
        }
        return EnvironmentSummary.OneLine();
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
