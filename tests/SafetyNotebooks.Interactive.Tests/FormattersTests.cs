using Microsoft.Data.Analysis;
using Microsoft.DotNet.Interactive.Formatting;
using SafetyNotebooks.Plotting;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interactive.Tests;

public class FormattersTests
{
    public FormattersTests() => SafetyNotebooks.Runtime.TorchRuntime.EnsureLoaded();

    [Fact]
    public void Small_tensors_show_as_a_table_of_their_values()
    {
        using var t = tensor(new float[] { 0.5f, -1f, 2f, 3.25f }).reshape(2, 2);
        Assert.Equal("Tensor [2, 2] Float32 cpu\n      0.5         -1\n        2       3.25", Formatters.TensorText(t));
        var html = Formatters.TensorHtml(t);
        Assert.Contains("Tensor [2, 2] Float32 cpu", html);
        Assert.Equal(4, html.Split("<td").Length - 1);
        Assert.Contains(">3.25</td>", html);
    }

    [Fact]
    public void Integer_and_bool_tensors_keep_their_kind()
    {
        using var i = tensor(new long[] { 7, -2 });
        Assert.EndsWith("7         -2", Formatters.TensorText(i));
        using var b = tensor(new[] { true, false });
        Assert.Contains("true", Formatters.TensorText(b));
    }

    [Fact]
    public void Large_tensors_show_a_summary_not_every_value()
    {
        using var t = arange(1000, dtype: float32).reshape(10, 100); // mean 499.5, min 0, max 999
        var text = Formatters.TensorText(t);
        Assert.StartsWith("Tensor [10, 100] Float32 cpu\nmin 0  max 999  mean 499.5", text);
        Assert.Contains("first: 0, 1, 2, 3, 4, 5, 6, 7, …", text);
        Assert.True(text.Length < 300);
    }

    [Fact]
    public void Requires_grad_is_shown_and_disposed_tensors_do_not_throw()
    {
        var t = ones(2).requires_grad_(true);
        Assert.Contains("requires_grad", Formatters.Header(t));
        t.Dispose();
        Assert.Equal("Tensor (disposed)", Formatters.TensorText(t));
    }

    [Fact]
    public void Data_frames_become_an_html_table_with_the_row_count()
    {
        var df = new DataFrame(new DoubleDataFrameColumn("loss", new[] { 2.5, 1.25 }), new StringDataFrameColumn("run", new[] { "a", "b" }));
        var html = Formatters.DataFrameHtml(df);
        Assert.Contains(">loss</th>", html);
        Assert.Contains(">1.25</td>", html);
        Assert.Contains(">b</td>", html);
        Assert.Contains("2 rows × 2 columns", html);
    }

    [Fact]
    public void Registered_formatters_produce_our_html_through_dot_net_interactive()
    {
        Formatters.Register();
        using var t = tensor(new float[] { 1, 2 });
        Assert.Contains("sn-tensor", t.ToDisplayString("text/html"));
        var chart = Plots.Line("t", "x", "y", new double[] { 1, 2 });
        var chartHtml = chart.ToDisplayString("text/html");
        Assert.Contains("safety-notebooks-chart", chartHtml);
        var df = new DataFrame(new DoubleDataFrameColumn("x", new[] { 1.0 }));
        Assert.Contains("sn-dataframe", df.ToDisplayString("text/html"));
    }

    [Fact]
    public void The_attention_view_displays_as_its_self_contained_html()
    {
        Formatters.Register();
        var view = AttentionView.Create(new[] { "a", "b" }, tensor(new float[] { 1, 0, 0.5f, 0.5f }, new long[] { 2, 2 }));
        var html = view.ToDisplayString("text/html");
        Assert.Contains(AttentionView.CssClass, html);
        Assert.Contains("[[[1,0],[0.5,0.5]]]", html);
        Assert.Contains("AttentionView: 1 head(s)", view.ToDisplayString("text/plain"));
    }

    [Fact]
    public void The_feature_dashboard_displays_as_its_html()
    {
        Formatters.Register();
        var data = SafetyNotebooks.Sae.FeatureDashboards.FromActivations(3, tensor(new float[] { 0, 1.5f }, new long[] { 1, 2 }), tensor(new long[] { 0, 1 }, new long[] { 1, 2 }));
        var dash = FeatureDashboard.Create(new[] { data }, id => id == 1 ? "<b>" : "x");
        var html = dash.ToDisplayString("text/html");
        Assert.Contains(FeatureDashboard.CssClass, html);
        Assert.Contains("&lt;b&gt;", html);
        Assert.Contains("FeatureDashboard: feature 3", dash.ToDisplayString("text/plain"));
    }

    [Fact]
    public void Progress_html_carries_the_text_line()
    {
        var u = new SafetyNotebooks.Runtime.ProgressUpdate("fit", 5, 10, TimeSpan.FromSeconds(1), new Dictionary<string, double>(), false);
        var html = NotebookProgressSink.Html(u).ToString();
        Assert.Contains($"class=\"{NotebookProgressSink.CssClass}\"", html);
        Assert.Contains("width:50%", html);
        Assert.Contains("5/10", html);
    }
}
