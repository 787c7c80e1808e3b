using System.Text.Json;
using SafetyNotebooks.Plotting;
using SafetyNotebooks.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

public class SuperpositionPlotsTests
{
    public SuperpositionPlotsTests() => TorchRuntime.EnsureLoaded();

    static JsonElement Data(Plotly.NET.GenericChart chart) => JsonDocument.Parse(OfflineHtml.FigureJson(chart)).RootElement.GetProperty("data");
    static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(v => v.GetDouble()).ToArray();

    // Two instances, m = 2, n = 3: instance 0 = identity-ish, instance 1 = an antipodal pair plus an ignored feature.
    static Tensor TwoInstances() => torch.tensor(new double[]
    {
        1, 0, 0,   0, 1, 0,          // instance 0: f0 = (1, 0), f1 = (0, 1), f2 = 0
        1, -1, 0,  0, 0, 0,          // instance 1: f0 = (1, 0), f1 = (−1, 0), f2 = 0
    }).reshape(2, 2, 3);

    [Fact]
    public void Gram_heatmaps_show_the_gram_matrix_of_each_instance()
    {
        using var w = TwoInstances();
        var data = Data(SuperpositionPlots.GramHeatmaps(w));
        Assert.Equal(2, data.GetArrayLength());
        var z1 = data[1].GetProperty("z").EnumerateArray().Select(Doubles).ToArray();
        Assert.Equal(new[] { 1.0, -1.0, 0.0 }, z1[0]);   // W₀·W₀ = 1, W₀·W₁ = −1 (antipodal), W₀·W₂ = 0
        Assert.Equal(new[] { -1.0, 1.0, 0.0 }, z1[1]);
    }

    [Fact]
    public void The_norms_chart_puts_norm_and_superposition_side_by_side()
    {
        using var w = TwoInstances();
        var data = Data(SuperpositionPlots.FeatureNormsAndSuperposition(w, instances: new[] { 1 }));
        Assert.Equal(new[] { 1.0, 1.0, 0.0 }, Doubles(data[0].GetProperty("y")));   // norms
        Assert.Equal(new[] { 1.0, 1.0, 0.0 }, Doubles(data[1].GetProperty("y")));   // each of the pair has the other fully on its axis
    }

    [Fact]
    public void The_columns_chart_draws_each_feature_as_an_arrow_from_the_origin()
    {
        using var w = TwoInstances();
        var data = Data(SuperpositionPlots.Columns2D(w, instances: new[] { 1 }));
        Assert.Equal(4, data.GetArrayLength());                                       // 3 arrows + the invisible square corners
        Assert.Equal(new[] { 0.0, -1.0 }, Doubles(data[1].GetProperty("x")));
        Assert.Equal(new[] { 0.0, 0.0 }, Doubles(data[1].GetProperty("y")));
        var e = Assert.Throws<ArgumentException>(() => SuperpositionPlots.Columns2D(torch.zeros(1, 3, 4)));
        Assert.Contains("m = 2", e.Message);
    }

    [Fact]
    public void The_dimensionality_chart_has_the_sticky_reference_lines_and_one_over_density_on_x()
    {
        using var w = TwoInstances();
        var data = Data(SuperpositionPlots.DimensionalityVsDensity(w, torch.tensor(new double[] { 0.5, 0.05 })));
        Assert.Equal(new[] { 2.0, 2.0, 2.0, 20.0, 20.0, 20.0 }, Doubles(data[0].GetProperty("x")).Select(v => Math.Round(v, 9)));
        Assert.Equal(new[] { 1.0, 1.0, 0.0, 0.5, 0.5, 0.0 }, Doubles(data[0].GetProperty("y")));
        Assert.Equal(new[] { 1.0, 1.0 }, Doubles(data[2].GetProperty("y")));
        Assert.Equal(new[] { 0.5, 0.5 }, Doubles(data[3].GetProperty("y")));
        Assert.Equal(new[] { 1.0, 1.0 }, Doubles(data[1].GetProperty("y")));          // m / ‖W‖_F² = 2 / 2 for both
    }
}
