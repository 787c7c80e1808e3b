using SafetyNotebooks.Cli.Notebooks;

namespace SafetyNotebooks.Cli.Tests.Notebooks;

/// <summary>
/// Every notebook under notebooks/ runs headless in quick mode with no error output — so each new
/// lesson is covered automatically. Failures show the cell and the message.
/// </summary>
public class CurriculumTests
{
    public static IEnumerable<object[]> Notebooks() =>
        Directory.GetFiles(Path.Combine(TestNotebooks.RepoRoot, "notebooks"), "*.ipynb")
            .OrderBy(f => f, StringComparer.Ordinal)
            .Select(f => new object[] { Path.GetFileName(f) });

    [Theory]
    [MemberData(nameof(Notebooks))]
    public async Task Notebook_runs_in_quick_mode_without_errors(string notebook)
    {
        var path = Path.Combine(TestNotebooks.RepoRoot, "notebooks", notebook);
        var outDir = Path.Combine(TestNotebooks.RepoRoot, "artifacts", "test-run");
        var log = new StringWriter();
        var results = await new NotebookRunner(log).RunAsync(new[] { path },
            new RunOptions { Quick = true, OutputDirectory = outDir, Timeout = TimeSpan.FromMinutes(8) });
        var r = Assert.Single(results);
        Assert.True(r.Ok, $"{notebook}: {r.Status} at cell {r.ErrorCell}: {r.ErrorMessage}\n{log}");
        // No error outputs anywhere in the executed notebook.
        var executed = File.ReadAllText(Path.Combine(outDir, notebook));
        Assert.DoesNotContain("\"output_type\": \"error\"", executed);
        NbformatSchema.AssertValid(executed, "executed " + notebook);
        // Every chart carries a short visible text for viewers that block its script.
        var charts = ((System.Text.Json.Nodes.JsonArray)System.Text.Json.Nodes.JsonNode.Parse(executed)!["cells"]!)
            .SelectMany(c => c!["outputs"] as System.Text.Json.Nodes.JsonArray ?? new())
            .Where(o => NotebookDocument.Text(o!["data"]?["text/html"]).Contains(SafetyNotebooks.Runtime.NotebookContract.ChartCssClass)).ToList();
        if (File.ReadAllText(path).Contains("Plots.")) Assert.NotEmpty(charts); // lessons that draw charts must show them
        Assert.All(charts, o => Assert.Equal(SafetyNotebooks.Runtime.NotebookContract.ChartTextFallback, NotebookDocument.Text(o!["data"]!["text/plain"])));
    }

    [Fact]
    public void Every_notebook_can_be_exported_as_a_learner_edition()
    {
        foreach (var f in Directory.GetFiles(Path.Combine(TestNotebooks.RepoRoot, "notebooks"), "*.ipynb"))
        {
            var (learner, hidden) = LearnerExporter.Export(NotebookDocument.Load(f));
            var code = string.Concat(learner.Cells.OfType<System.Text.Json.Nodes.JsonObject>()
                .Where(c => c["cell_type"]?.GetValue<string>() == "code").Select(NotebookDocument.Source));
            Assert.DoesNotContain(LearnerExporter.BeginMarker, code);
            Assert.True(hidden > 0 || !NotebookDocument.Load(f).ToJson().Contains(LearnerExporter.BeginMarker), $"{f}: no solution hidden");
            Assert.DoesNotContain("\"output_type\"", learner.ToJson());
        }
    }
}
