using SafetyNotebooks.Plotting;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using SafetyNotebooks.Tokenization;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Plotting;

public class FeatureDashboardTests
{
    static FeatureDashboardTests() => TorchRuntime.EnsureLoaded();

    // Tokens 0..4 named "the", "<script>", "cat", "a&b", "dog"; the feature fires 2.5 on "<script>" and 1 on "dog".
    static (FeatureDashboardData Data, SyntheticTokenizer Tok) Data()
    {
        var tok = new SyntheticTokenizer(new[] { "the", "<script>", "cat", "a&b", "dog" });
        var tokens = tensor(new long[] { 0, 1, 2, 3, 4 }, new long[] { 1, 5 });
        var acts = tensor(new float[] { 0, 2.5f, 0, 0, 1 }, new long[] { 1, 5 });
        var effects = tensor(new float[] { 0.5f, -2, 3, 0, 1 });
        return (FeatureDashboards.FromActivations(9, acts, tokens, effects, new FeatureDashboardOptions { TopLogits = 2 }), tok);
    }

    [Fact]
    public void The_dashboard_shows_the_tokens_and_escapes_their_html()
    {
        var (data, tok) = Data();
        var dash = FeatureDashboard.Create(data, tok, title: "Feature <9>");
        var html = dash.Html;
        Assert.Contains("&lt;script&gt;", html);
        Assert.DoesNotContain("<script", html);                       // neither the token nor any script of our own
        Assert.Contains("a&amp;b", html);
        Assert.DoesNotContain("a&b", html);
        Assert.Contains("Feature &lt;9&gt;", html);
        Assert.Contains(">cat</span>", html);
        Assert.Contains(">dog</span>", html);
        Assert.DoesNotContain("http", html);                          // nothing fetched
        Assert.Contains(FeatureDashboard.CssClass, html);
        Assert.Equal(new[] { 9 }, dash.Features);
        Assert.Contains("<!DOCTYPE html>", dash.Page());
    }

    [Fact]
    public void The_dashboard_lists_logit_effects_in_order_and_the_metrics()
    {
        var (data, tok) = Data();
        var html = FeatureDashboard.Create(data, tok).Html;
        // Positive logits: cat (+3.00) then dog (+1.00); negative: <script> (−2.00) then a&b (0.00).
        int cat = html.IndexOf(">cat</td>", StringComparison.Ordinal), dog = html.IndexOf(">dog</td>", StringComparison.Ordinal);
        Assert.True(cat > 0 && dog > cat, "cat's row comes before dog's in the positive table");
        Assert.Contains("+3.00", html);
        Assert.Contains("-2.00", html);
        Assert.DoesNotContain(">the</td>", html);                     // 0.5 is neither in the top 2 nor the bottom 2
        Assert.Contains("density 40%", html);                         // 2 of 5 tokens
        Assert.Contains("<svg", html);
        var e = Assert.Throws<ArgumentException>(() => FeatureDashboard.Create(Array.Empty<FeatureDashboardData>(), tok));
        Assert.Contains("FeatureDashboards.Compute", e.Message);
    }
}
