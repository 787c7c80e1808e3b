using System.Text.Json.Nodes;
using SafetyNotebooks.Cli.Notebooks;
using SafetyNotebooks.Plotting;

namespace SafetyNotebooks.Cli.Tests.Notebooks;

/// <summary><c>safety-notebooks render</c>: executed notebooks → offline pages sharing one plotly.min.js.</summary>
public class RenderTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("sn-render-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    /// <summary>An executed notebook as 'run' writes it: the setup cell's plotly.js bundle, a chart, a stream, run metadata.</summary>
    static string Executed(string title, string chartTitle)
    {
        var chart = Plots.Line(chartTitle, "x", "y", new[] { 1.0, 4, 9 });
        JsonObject Display(string html) => new()
        {
            ["output_type"] = "display_data", ["metadata"] = new JsonObject(),
            ["data"] = new JsonObject { ["text/html"] = html, ["text/plain"] = "chart" },
        };
        var doc = JsonNode.Parse(TestNotebooks.Json($"md:# {title}\n\nSome *text*.", "setup()", "Plots.Line(...)", "Console.WriteLine(\"loss 0.25\");"))!;
        var cells = (JsonArray)doc["cells"]!;
        cells[1]!["outputs"] = new JsonArray(Display(OfflineHtml.PlotlyScriptTag()));
        cells[2]!["outputs"] = new JsonArray(Display(OfflineHtml.ChartDiv(chart)));
        cells[3]!["outputs"] = new JsonArray(new JsonObject { ["output_type"] = "stream", ["name"] = "stdout", ["text"] = "loss 0.25\n" });
        doc["metadata"]!["safety_notebooks"] = new JsonObject { ["executed_by"] = "safety-notebooks run", ["quick_mode"] = true, ["seconds"] = 12.3, ["status"] = "ok" };
        return doc.ToJsonString();
    }

    [Fact]
    public async Task Render_writes_pages_that_share_one_plotly_file_and_an_index_linking_them()
    {
        var from = Directory.CreateDirectory(Path.Combine(_dir, "run")).FullName;
        File.WriteAllText(Path.Combine(from, "00-first.ipynb"), Executed("00 · First lesson", "squares"));
        File.WriteAllText(Path.Combine(from, "01-second.ipynb"), Executed("01 · Second lesson", "more squares"));
        var site = Path.Combine(_dir, "site");
        var r = await CliProcess.RunAsync("render", "--from", from, "--out", site);
        Assert.True(r.Exit == 0, r.Stdout + r.Stderr);

        Assert.Equal(new[] { "00-first.html", "01-second.html", "index.html", "plotly.min.js" },
            Directory.GetFiles(site).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(OfflineHtml.PlotlyJs, File.ReadAllText(Path.Combine(site, "plotly.min.js")));
        foreach (var page in new[] { "00-first.html", "01-second.html" })
        {
            var html = File.ReadAllText(Path.Combine(site, page));
            Assert.Single(System.Text.RegularExpressions.Regex.Matches(html, "<script src=\"plotly.min.js\"></script>"));
            Assert.DoesNotContain(OfflineHtml.BundleMarker, html);              // the setup cell's embedded copy is left out
            Assert.True(html.Length < OfflineHtml.PlotlyJs.Length / 10, $"{page} is {html.Length} chars: plotly.js must not be embedded");
            Assert.Contains(SafetyNotebooks.Runtime.NotebookContract.ChartCssClass, html);
            Assert.Contains("<pre class=\"stdout\">loss 0.25\n</pre>", html);
            Assert.Contains("ok · quick mode · 12 s", html);
        }
        var first = File.ReadAllText(Path.Combine(site, "00-first.html"));
        Assert.Contains(">00 · First lesson</h1>", first);
        Assert.Contains("<a href=\"01-second.html\">01 · Second lesson →</a>", first);
        var index = File.ReadAllText(Path.Combine(site, "index.html"));
        Assert.Contains("<a href=\"00-first.html\">00 · First lesson</a>", index);
        Assert.Contains("<a href=\"01-second.html\">01 · Second lesson</a>", index);
    }

    [Fact]
    public async Task Render_of_a_folder_without_notebooks_is_a_one_line_error()
    {
        var from = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        CliProcess.AssertOneLineError(await CliProcess.RunAsync("render", "--from", from, "--out", Path.Combine(_dir, "site")), "holds no .ipynb notebooks");
    }
}
