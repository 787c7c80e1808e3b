using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SafetyNotebooks.Cli.Notebooks;

namespace SafetyNotebooks.Cli.Tests.Notebooks;

/// <summary>Every notebook the project writes is valid nbformat 4.5, with stable cell ids.</summary>
public class NotebookFileTests
{
    // nbformat 4.5's cell_id definition.
    static readonly Regex CellId = new("^[a-zA-Z0-9-_]{1,64}$");

    static string[] Ids(NotebookDocument d) => d.Cells.Select(c => c!["id"]?.GetValue<string>() ?? "").ToArray();

    public static IEnumerable<object[]> Committed() =>
        Directory.GetFiles(Path.Combine(TestNotebooks.RepoRoot, "notebooks"), "*.ipynb").OrderBy(f => f, StringComparer.Ordinal).Select(f => new object[] { Path.GetFileName(f) });

    [Theory]
    [MemberData(nameof(Committed))]
    public void Committed_notebook_is_valid_nbformat45_with_unique_cell_ids(string notebook)
    {
        var text = File.ReadAllText(Path.Combine(TestNotebooks.RepoRoot, "notebooks", notebook));
        NbformatSchema.AssertValid(text, notebook); // the schema requires an id on every cell
        var ids = ((JsonArray)JsonNode.Parse(text)!["cells"]!).Select(c => c!["id"]!.GetValue<string>()).ToList();
        Assert.All(ids, id => Assert.Matches(CellId, id));
        Assert.Equal(ids.Count, ids.Distinct().Count());
    }

    [Theory]
    [MemberData(nameof(Committed))]
    public void Learner_edition_is_valid_nbformat45(string notebook)
    {
        var (learner, _) = LearnerExporter.Export(NotebookDocument.Load(Path.Combine(TestNotebooks.RepoRoot, "notebooks", notebook)));
        NbformatSchema.AssertValid(learner.ToJson(), "learner edition of " + notebook);
    }

    [Fact]
    public void The_schema_rejects_a_cell_without_an_id()
    {
        // The check itself can fail: the old committed form (no ids) is invalid 4.5.
        var json = """{"cells":[{"cell_type":"markdown","metadata":{},"source":["x"]}],"metadata":{},"nbformat":4,"nbformat_minor":5}""";
        Assert.NotEmpty(NbformatSchema.Errors(json));
    }

    [Fact]
    public void Missing_ids_are_added_deterministically_and_uniquely_and_valid_ids_are_kept()
    {
        var json = """{"cells":[{"cell_type":"code","metadata":{},"outputs":[],"execution_count":null,"source":"x"},{"cell_type":"code","metadata":{},"outputs":[],"execution_count":null,"source":"x"},{"cell_type":"markdown","id":"keep-me_1","metadata":{},"source":"y"},{"cell_type":"markdown","id":"keep-me_1","metadata":{},"source":"z"},{"cell_type":"markdown","id":"bad id!","metadata":{},"source":"w"}],"metadata":{"kernelspec":{"name":".net-csharp","display_name":"C#"}},"nbformat":4,"nbformat_minor":4}""";
        var a = NotebookDocument.Parse(json, "a.ipynb");
        var b = NotebookDocument.Parse(json, "a.ipynb");
        Assert.Equal(Ids(a), Ids(b));                       // same file, same ids
        Assert.Equal("keep-me_1", Ids(a)[2]);                // a valid id is kept
        Assert.Equal(5, Ids(a).Distinct().Count());          // identical cells and a repeated id still get unique ids
        Assert.All(Ids(a), id => Assert.Matches(CellId, id));
        Assert.Equal(5, a.Root["nbformat_minor"]!.GetValue<int>()); // ids need 4.5
        NbformatSchema.AssertValid(a.ToJson(), "notebook with added ids");
        Assert.Equal("x", NotebookDocument.Source((JsonObject)a.Cells[0]!)); // contents untouched
    }

    [Fact]
    public async Task Executed_copy_is_valid_nbformat45()
    {
        var doc = NotebookDocument.Parse(TestNotebooks.Json(
            "md:# t", "Console.WriteLine(\"out\"); Console.Error.WriteLine(\"err\");", "display(\"shown\"); 6 * 7", "throw new Exception(\"boom\");"), "e.ipynb");
        var result = await new NotebookExecutor().ExecuteAsync(doc);
        Assert.Equal(RunStatus.Error, result.Status);
        NbformatSchema.AssertValid(doc.ToJson(), "executed copy");
    }
}
