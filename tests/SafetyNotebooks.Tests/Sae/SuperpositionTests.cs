using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using SafetyNotebooks.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

public class SuperpositionTests
{
    public SuperpositionTests() => TorchRuntime.EnsureLoaded();

    // One instance, n = 2 features, m = 1: W = [1, 0.5], b = [0, -0.1].
    static ToyModel HandModel(Tensor? importance = null, int instances = 1)
    {
        var model = new ToyModel(new ToyModelConfig(NFeatures: 2, NHidden: 1, NInstances: instances), importance: importance);
        using (torch.no_grad())
        {
            model.W.copy_(torch.tensor(new float[] { 1f, 0.5f }).reshape(1, 1, 2).expand(instances, 1, 2));
            model.b_final.copy_(torch.tensor(new float[] { 0f, -0.1f }).reshape(1, 2).expand(instances, 2));
        }
        return model;
    }

    // Rows x = [1, 0.4] and x = [0, 0], for each instance.
    static Tensor HandBatch(int instances) =>
        torch.tensor(new float[] { 1f, 0.4f, 0f, 0f }).reshape(2, 1, 2).expand(2, instances, 2).contiguous();

    [Fact]
    public void The_toy_model_loss_matches_a_hand_computed_example()
    {
        // Row 1: h = 1·1 + 0.5·0.4 = 1.2; WᵀWx + b = [1.2, 0.6 − 0.1] = [1.2, 0.5]; errors² = [0.04, 0.01], weighted by [1, 0.5] → [0.04, 0.005].
        // Row 2: x = 0 → ReLU([0, −0.1]) = [0, 0], no error. Mean over 2 rows × 2 features: 0.045 / 4 = 0.01125.
        using var model = HandModel(importance: torch.tensor(new float[] { 1f, 0.5f }));
        using var x = HandBatch(1);
        using var xHat = model.call(x);
        Assert.Equal(new[] { 1.2f, 0.5f, 0f, 0f }, xHat.data<float>().ToArray().Select(v => MathF.Round(v, 5)));
        using var loss = model.Loss(x, xHat);
        Assert.Equal(0.01125, loss.item<float>(), 6);
        var output = new ToyModelObjective(model).Compute(x);
        Assert.Equal(0.01125, output.Loss.item<float>(), 6);
    }

    [Fact]
    public void Importance_weights_each_features_squared_error_per_instance()
    {
        // Instance 0 weights both features (errors 0.04 + 0.01 over 4 entries = 0.0125); instance 1 ignores feature 1 (0.04 / 4 = 0.01).
        using var importance = torch.tensor(new float[] { 1f, 1f, 1f, 0f }).reshape(2, 2);
        using var model = HandModel(importance, instances: 2);
        using var x = HandBatch(2);
        using var perInstance = model.PerInstanceLoss(x, model.call(x));
        Assert.Equal(0.0125, perInstance[0].item<float>(), 6);
        Assert.Equal(0.01, perInstance[1].item<float>(), 6);
        Assert.Equal(0.0225, model.Loss(x, model.call(x)).item<float>(), 6);   // instances add up
    }

    [Fact]
    public void Generated_batches_have_each_feature_present_with_its_instances_probability()
    {
        using var model = new ToyModel(new ToyModelConfig(NFeatures: 50, NHidden: 5, NInstances: 2), featureProbability: torch.tensor(new float[] { 1f, 0.1f }));
        using var x = model.GenerateBatch(2000, new Generator(3));
        Assert.Equal(new long[] { 2000, 2, 50 }, x.shape);
        double dense = x[.., 0].gt(0).to_type(ScalarType.Float64).mean().item<double>();
        double sparse = x[.., 1].gt(0).to_type(ScalarType.Float64).mean().item<double>();
        Assert.InRange(dense, 0.999, 1.0);
        Assert.InRange(sparse, 0.09, 0.11);                         // 100,000 draws: std of the mean ≈ 0.001
        Assert.InRange(x.max().item<float>(), 0.99f, 1f);           // values uniform in [0, 1]
        Assert.InRange(x[.., 0].mean().item<float>(), 0.49f, 0.51f);
    }

    [Fact]
    public void Orthogonal_features_have_dimensionality_one_and_no_superposition()
    {
        using var w = torch.eye(2, dtype: ScalarType.Float64);   // m = 2, n = 2
        Assert.Equal(new[] { 1.0, 1.0 }, Superposition.FeatureDimensionality(w).data<double>().ToArray(), new Tol(1e-12));
        Assert.Equal(new[] { 0.0, 0.0 }, Superposition.SuperpositionMeasure(w).data<double>().ToArray(), new Tol(1e-12));
        Assert.Equal(new[] { 1.0, 1.0 }, Superposition.FeatureNorms(w).data<double>().ToArray(), new Tol(1e-12));
    }

    [Fact]
    public void An_antipodal_pair_has_dimensionality_one_half_each()
    {
        using var w = torch.tensor(new double[] { 1, -1 }).reshape(1, 2);   // m = 1: features 0 and 1 point in opposite directions
        Assert.Equal(new[] { 0.5, 0.5 }, Superposition.FeatureDimensionality(w).data<double>().ToArray(), new Tol(1e-12));
        Assert.Equal(new[] { 1.0, 1.0 }, Superposition.SuperpositionMeasure(w).data<double>().ToArray(), new Tol(1e-12));
    }

    [Fact]
    public void A_regular_pentagon_has_dimensionality_two_fifths_each()
    {
        // Σ_j cos²(θ_ij) = 1 + 2cos²72° + 2cos²144° = 2.5, so D = 1 / 2.5.
        var a = Enumerable.Range(0, 5).Select(i => 2 * Math.PI * i / 5).ToArray();
        using var w = torch.tensor(a.Select(Math.Cos).Concat(a.Select(Math.Sin)).ToArray()).reshape(2, 5);
        Assert.All(Superposition.FeatureDimensionality(w).data<double>().ToArray(), d => Assert.Equal(0.4, d, 10));
        Assert.All(Superposition.AngleGaps(Superposition.SortedAngles2D(w)), g => Assert.Equal(72, g, 8));
    }

    [Fact]
    public void Superposition_measure_and_dimensionality_match_hand_computed_values()
    {
        // Columns W₁ = (1, 0), W₂ = 0.5·(0.6, 0.8) = (0.3, 0.4), W₃ = 0.
        // Ŵ₁·W₂ = 0.3 → measure₁ = 0.09, D₁ = 1 / (1 + 0.09). Ŵ₂ = (0.6, 0.8), Ŵ₂·W₁ = 0.6 → measure₂ = 0.36, D₂ = 0.25 / (0.25 + 0.36).
        // W₃ = 0 is not represented: measure 0, D 0.
        using var w = torch.tensor(new double[] { 1, 0.3, 0, 0, 0.4, 0 }).reshape(2, 3);
        Assert.Equal(new[] { 0.09, 0.36, 0.0 }, Superposition.SuperpositionMeasure(w).data<double>().ToArray(), new Tol(1e-12));
        Assert.Equal(new[] { 1 / 1.09, 0.25 / 0.61, 0.0 }, Superposition.FeatureDimensionality(w).data<double>().ToArray(), new Tol(1e-12));
        Assert.Equal(new[] { 1.0, 0.5, 0.0 }, Superposition.FeatureNorms(w).data<double>().ToArray(), new Tol(1e-12));
        using var gram = Superposition.Gram(w);
        Assert.Equal(new[] { 1.0, 0.3, 0.0, 0.3, 0.25, 0.0, 0.0, 0.0, 0.0 }, gram.data<double>().ToArray(), new Tol(1e-12));
        Assert.Equal(2 / 1.25, Superposition.DimensionsPerFeature(w).item<double>(), 12);   // m / ‖W‖_F² = 2 / (1 + 0.25)
        Assert.Equal(new[] { 1 }, Superposition.RepresentedFeatureCounts(w, threshold: 0.75));
    }

    [Fact]
    public void Five_features_in_two_dimensions_form_a_pentagon_when_sparse()
    {
        // Elhage et al. 2022, Fig. 2: at high sparsity all 5 features get a direction, 72° apart, each of norm ≈ 1.
        // Four instances trained at once; the one with the lowest loss is kept, as in the paper.
        var model = new ToyModel(new ToyModelConfig(NFeatures: 5, NHidden: 2, NInstances: 4), featureProbability: torch.tensor(0.03f), seed: 1);
        var trainer = new Trainer<Tensor>(new ToyModelObjective(model),
            new TrainerConfig { MaxSteps = 1500, BatchSize = 512, LearningRate = 1e-2, WeightDecay = 0, MaxGradNorm = 0, LrSchedulerType = LrSchedulerType.Constant, ConsoleProgress = false, Seed = 3 });
        trainer.Train((_, _) => model.GenerateBatch(512));
        int best;
        using (torch.no_grad())
        {
            using var eval = model.GenerateBatch(20_000, new Generator(9));
            best = (int)model.PerInstanceLoss(eval, model.call(eval)).argmin().item<long>();
        }
        var norms = Superposition.FeatureNorms(model.W)[best].data<double>().ToArray();
        Assert.All(norms, n => Assert.InRange(n, 0.85, 1.2));
        var gaps = Superposition.AngleGaps(Superposition.SortedAngles2D(model.W, best));
        Assert.Equal(5, gaps.Length);
        Assert.All(gaps, g => Assert.InRange(g, 62, 82));
    }

    [Fact]
    public void Bad_shapes_and_probabilities_give_one_line_errors_naming_the_fix()
    {
        var e1 = Assert.Throws<ArgumentException>(() => new ToyModel(new ToyModelConfig(5, 2, 3), featureProbability: torch.ones(4)));
        Assert.Contains("featureProbability has shape [4]", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => new ToyModel(new ToyModelConfig(5, 2, 3), featureProbability: torch.zeros(3)));
        Assert.Contains("(0, 1]", e2.Message);
        using var m = new ToyModel(new ToyModelConfig(5, 2, 3));
        var e3 = Assert.Throws<ArgumentException>(() => m.call(torch.zeros(4, 5)));
        Assert.Contains("[batch, 3, 5]", e3.Message);
        Assert.Throws<ArgumentException>(() => new ToyModel(new ToyModelConfig(0, 2, 3)));
    }

    sealed class Tol(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(double v) => 0;
    }
}
