using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

public class GroundTruthTests
{
    public GroundTruthTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Samples_are_sparse_nonnegative_combinations_of_unit_norm_features()
    {
        using var truth = new GroundTruthFeatures(new GroundTruthConfig { DModel = 64, NFeatures = 128, MeanActiveFeatures = 5, Seed = 1 });
        Assert.Equal(new long[] { 128, 64 }, truth.Features.shape);
        Assert.All(truth.Features.norm(1).data<float>().ToArray(), n => Assert.Equal(1f, n, 5));
        Assert.Equal(5.0, truth.FeatureProbabilities.sum().item<float>(), 4);
        using var s = truth.Sample(4000, new Generator(2));
        Assert.Equal(new long[] { 4000, 64 }, s.Activations.shape);
        Assert.True(s.Coefficients.min().item<float>() >= 0 && s.Coefficients.max().item<float>() <= 1);
        // Active count per sample: mean Σp = 5; standard error ≈ √(5/4000) ≈ 0.035.
        double meanActive = s.Coefficients.gt(0).sum(1).to_type(ScalarType.Float64).mean().item<double>();
        Assert.InRange(meanActive, 4.85, 5.15);
        Assert.True(torch.allclose(s.Activations, s.Coefficients.matmul(truth.Features), rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void The_same_generator_seed_gives_identical_samples()
    {
        using var truth = new GroundTruthFeatures(new GroundTruthConfig { DModel = 32, NFeatures = 48, CorrelationStrength = 1, Seed = 4 });
        using var truth2 = new GroundTruthFeatures(new GroundTruthConfig { DModel = 32, NFeatures = 48, CorrelationStrength = 1, Seed = 4 });
        Assert.True(truth.Features.eq(truth2.Features).all().item<bool>());
        using var a = truth.SampleActivations(50, new Generator(9));
        using var b = truth2.SampleActivations(50, new Generator(9));
        using var c = truth.SampleActivations(50, new Generator(10));
        Assert.True(a.eq(b).all().item<bool>());
        Assert.False(a.eq(c).all().item<bool>());
    }

    [Fact]
    public void Decaying_probabilities_fall_geometrically_and_sum_to_the_mean_active_count()
    {
        using var truth = new GroundTruthFeatures(new GroundTruthConfig { DModel = 8, NFeatures = 100, MeanActiveFeatures = 4, ProbabilityDecay = 0.97 });
        var p = truth.FeatureProbabilities.data<float>().ToArray();
        // p₀ = 4 (1 − 0.97) / (1 − 0.97¹⁰⁰) by the geometric series; each next one is 0.97 times the previous.
        Assert.Equal(4 * 0.03 / (1 - Math.Pow(0.97, 100)), p[0], 5);
        Assert.Equal(0.97, p[50] / p[49], 4);
    }

    [Fact]
    public void Correlated_features_keep_their_marginal_probability_but_fire_together_more_often()
    {
        var cfg = new GroundTruthConfig { DModel = 16, NFeatures = 64, MeanActiveFeatures = 4, Seed = 3 };
        using var independent = new GroundTruthFeatures(cfg);
        using var correlated = new GroundTruthFeatures(cfg with { CorrelationStrength = 3, CorrelationRank = 2 });
        using var si = independent.Sample(20_000, new Generator(1));
        using var sc = correlated.Sample(20_000, new Generator(1));
        static (double Mean, double Var) CountStats(Tensor coeffs)
        {
            using var counts = coeffs.gt(0).sum(1).to_type(ScalarType.Float64);
            return (counts.mean().item<double>(), counts.var().item<double>());
        }
        var (mi, vi) = CountStats(si.Coefficients);
        var (mc, vc) = CountStats(sc.Coefficients);
        // Marginals unchanged: both means ≈ Σp = 4. Independent Bernoulli counts have variance Σp(1 − p) = 4 (1 − 1/16) = 3.75.
        Assert.InRange(mi, 3.9, 4.1);
        Assert.InRange(mc, 3.85, 4.15);
        Assert.InRange(vi, 3.5, 4.0);
        Assert.True(vc > 1.5 * vi, $"correlated count variance {vc:0.00} should exceed the independent {vi:0.00} clearly");
    }

    [Fact]
    public void Impossible_settings_give_one_line_errors_naming_the_field()
    {
        var e = Assert.Throws<ArgumentException>(() => new GroundTruthFeatures(new GroundTruthConfig { NFeatures = 4, MeanActiveFeatures = 5 }));
        Assert.Contains("MeanActiveFeatures", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => new GroundTruthFeatures(new GroundTruthConfig { NFeatures = 10, MeanActiveFeatures = 9, ProbabilityDecay = 0.5 }));
        Assert.Contains("ProbabilityDecay", e2.Message);
    }
}
