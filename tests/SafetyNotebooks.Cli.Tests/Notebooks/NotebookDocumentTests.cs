using SafetyNotebooks.Cli.Notebooks;

namespace SafetyNotebooks.Cli.Tests.Notebooks;

public class NotebookDocumentTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("sn-doc-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void Missing_file_names_the_path()
    {
        var e = Assert.Throws<UserError>(() => NotebookDocument.Load(Path.Combine(_dir, "nope.ipynb")));
        Assert.Contains("nope.ipynb: no such file", e.Message);
    }

    [Fact]
    public void Non_notebook_file_is_rejected()
    {
        var p = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(p, "hello");
        Assert.Contains("expected a .ipynb file", Assert.Throws<UserError>(() => NotebookDocument.Load(p)).Message);
    }

    [Fact]
    public void Invalid_json_gives_line_and_fix()
    {
        var p = Path.Combine(_dir, "bad.ipynb");
        File.WriteAllText(p, "{\n \"cells\": [\n  {\"cell_type\": \"code\",, }\n ]\n}");
        var e = Assert.Throws<UserError>(() => NotebookDocument.Load(p));
        Assert.Contains("is not valid JSON (line 3", e.Message);
        Assert.Contains("git checkout", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void A_notebook_for_another_kernel_is_rejected()
    {
        var p = Path.Combine(_dir, "py.ipynb");
        File.WriteAllText(p, """{"cells":[],"metadata":{"kernelspec":{"name":"python3","language":"python"}},"nbformat":4,"nbformat_minor":5}""");
        var e = Assert.Throws<UserError>(() => NotebookDocument.Load(p));
        Assert.Contains("'python3' kernel", e.Message);
    }

    [Fact]
    public void Old_nbformat_and_missing_cells_are_rejected()
    {
        Assert.Contains("nbformat 3", Assert.Throws<UserError>(() => NotebookDocument.Parse("""{"cells":[],"nbformat":3}""", "x.ipynb")).Message);
        Assert.Contains("no \"cells\"", Assert.Throws<UserError>(() => NotebookDocument.Parse("""{"nbformat":4}""", "x.ipynb")).Message);
        Assert.Contains("top level must be a JSON object", Assert.Throws<UserError>(() => NotebookDocument.Parse("[1,2]", "x.ipynb")).Message);
    }

    [Fact]
    public void Source_accepts_string_or_lines_and_round_trips_unknown_metadata()
    {
        var doc = NotebookDocument.Parse("""{"cells":[{"cell_type":"code","source":"a\nb","metadata":{"x":1},"outputs":[]}],"metadata":{"kernelspec":{"name":".net-csharp"},"custom":{"keep":true}},"nbformat":4,"nbformat_minor":5}""", "x.ipynb");
        var cell = (System.Text.Json.Nodes.JsonObject)doc.Cells[0]!;
        Assert.Equal("a\nb", NotebookDocument.Source(cell));
        NotebookDocument.SetSource(cell, "x\ny\n");
        Assert.Equal(new[] { "x\n", "y\n" }, ((System.Text.Json.Nodes.JsonArray)cell["source"]!).Select(n => n!.GetValue<string>()));
        Assert.Contains("\"keep\": true", doc.ToJson());
    }

    [Fact]
    public void Discover_finds_notebooks_in_order_and_skips_checkpoints()
    {
        TestNotebooks.Write(_dir, "b.ipynb");
        TestNotebooks.Write(_dir, "a.ipynb");
        Directory.CreateDirectory(Path.Combine(_dir, ".ipynb_checkpoints"));
        TestNotebooks.Write(Path.Combine(_dir, ".ipynb_checkpoints"), "a-checkpoint.ipynb");
        Assert.Equal(new[] { "a.ipynb", "b.ipynb" }, NotebookDocument.Discover(_dir).Select(Path.GetFileName));
        Assert.Contains("no such file or folder", Assert.Throws<UserError>(() => NotebookDocument.Discover(Path.Combine(_dir, "missing"))).Message);
    }
}
