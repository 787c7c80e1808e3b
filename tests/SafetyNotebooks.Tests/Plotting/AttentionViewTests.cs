using SafetyNotebooks.Plotting;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Plotting;

public class AttentionViewTests
{
    static AttentionViewTests() => TorchRuntime.EnsureLoaded();

    static Tensor Pattern()
    {
        // Two heads over 3 positions: head 0 previous-token (row 0 on itself), head 1 splits 0.25/0.75.
        var p = zeros(2, 3, 3);
        p[0, 0, 0] = 1; p[0, 1, 0] = 1; p[0, 2, 1] = 1;
        p[1, 0, 0] = 1; p[1, 1, 0] = 0.25f; p[1, 1, 1] = 0.75f; p[1, 2, 2] = 0.125f; p[1, 2, 0] = 0.875f;
        return p;
    }

    [Fact]
    public void The_attention_view_is_self_contained_and_encodes_the_pattern_values()
    {
        var view = AttentionView.Create(new[] { "<bos>", " cat", "</script>" }, Pattern(), new[] { "L0H0", "L0H1" });
        var html = view.Html;
        Assert.DoesNotContain("http", html);
        Assert.DoesNotContain("src=", html);
        Assert.Equal(1, html.Split("<script").Length - 1);
        Assert.DoesNotContain("</script>\"", html);                                     // the token is escaped inside the data
        Assert.Contains("[[[1,0,0],[1,0,0],[0,1,0]],[[1,0,0],[0.25,0.75,0],[0.875,0,0.125]]]", html);
        Assert.Contains("\"L0H1\"", html);
        Assert.Contains(" cat", html);
        Assert.Contains(AttentionView.CssClass, html);
        Assert.Contains("<!DOCTYPE html>", view.Page());
        Assert.Equal(2, view.Heads);
    }

    [Fact]
    public void The_attention_view_rejects_mismatched_labels_and_the_heatmap_carries_one_head()
    {
        var e = Assert.Throws<ArgumentException>(() => AttentionView.Create(new[] { "a", "b" }, Pattern()));
        Assert.Contains("one label per position", e.Message);
        var batched = Assert.Throws<ArgumentException>(() => AttentionView.Create(new[] { "a", "b", "c" }, Pattern().unsqueeze(0)));
        Assert.Contains("cache[\"pattern\", layer][0]", batched.Message);
        var json = OfflineHtml.FigureJson(AttentionView.Heatmap(Pattern()[1], new[] { "a", "b", "c" }, "L0H1"));
        Assert.Contains("0.875", json);
        Assert.Contains("2: c", json);
    }
}
