using System.Text.Json.Nodes;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

/// <summary>
/// The training step's fast paths (b_dec's gradient through the encoder bias instead of the input's gradient; L0 from the
/// per-feature counts) against SAELens' formulas written out plainly in the test, on tiny float64 tensors; and b_dec
/// initialization (SAELens' <c>b_dec_init_method</c>) against hand-worked values.
/// </summary>
public class SaeTrainingStepNumericsTests : IDisposable
{
    static SaeTrainingStepNumericsTests() => TorchRuntime.EnsureLoaded();

    readonly string _dir = Path.Combine(Path.GetTempPath(), "sae-bdec-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    const int DIn = 3, DSae = 5, N = 4;
    const double L1 = 0.3;

    static SparseAutoencoder RandomSae(SaeArchitecture arch, long seed)
    {
        var sae = new SparseAutoencoder(new SaeConfig { DIn = DIn, DSae = DSae, Architecture = arch, K = 2, DType = ScalarType.Float64, Seed = seed });
        using var _ = no_grad();
        var g = new Generator((ulong)seed);
        // Non-zero biases (b_dec especially), so every gradient path carries weight; some features active, some not.
        foreach (var (_, p) in sae.named_parameters())
            p.copy_(randn(p.shape, dtype: ScalarType.Float64, generator: g) * (p.dim() == 2 ? 0.8 : 0.3));
        return sae;
    }

    /// <summary>Plain leaf copies of the SAE's parameters for the reference computation.</summary>
    static Dictionary<string, Tensor> Leaves(SparseAutoencoder sae) =>
        sae.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone().requires_grad_(true));

    static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape), $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        double diff = (expected - actual).abs().max().item<double>();
        Assert.True(diff < 1e-10, $"{what}: max |difference| {diff:G3} from the reference formula");
    }

    [Fact]
    public void Standard_loss_and_every_gradient_equal_sae_lens_formula_with_x_minus_b_dec_in_autograd()
    {
        using var sae = RandomSae(SaeArchitecture.Standard, 3);
        var x = randn(new long[] { N, DIn }, dtype: ScalarType.Float64, generator: new Generator(11)) + 0.5;
        var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L1Coefficient = L1 });
        var output = objective.Compute(x);
        output.Loss.backward();

        // Reference (SAELens' StandardTrainingSAE): pre = (x − b_dec) W_enc + b_enc, f = ReLU(pre), x̂ = f W_dec + b_dec,
        // loss = Σ (x̂ − x)² / n + c · Σ f_i ‖W_dec,i‖ / n.
        var p = Leaves(sae);
        var acts = nn.functional.relu((x - p["b_dec"]).matmul(p["W_enc"]) + p["b_enc"]);
        var recon = acts.matmul(p["W_dec"]) + p["b_dec"];
        var norms = p["W_dec"].pow(2).sum(1).sqrt();
        var loss = (recon - x).pow(2).sum() / N + L1 * (acts * norms).sum() / N;
        loss.backward();

        AssertClose(loss.detach(), output.Loss.detach(), "loss");
        foreach (var name in new[] { "W_enc", "W_dec", "b_enc", "b_dec" })
            AssertClose(p[name].grad!, sae.named_parameters().First(q => q.name == name).parameter.grad!, $"∂loss/∂{name}");
        Assert.True(p["b_dec"].grad!.abs().sum().item<double>() > 1e-3, "the test case must exercise b_dec's gradient");
        // L0 = mean over rows of the number of active features.
        Assert.Equal(acts.detach().gt(0).sum().item<long>() / (double)N, output.Metrics!["metrics/l0"].item<float>(), 5);
    }

    [Fact]
    public void Gated_loss_and_gradients_equal_the_plain_formula_including_b_dec_through_both_encoder_paths()
    {
        using var sae = RandomSae(SaeArchitecture.Gated, 4);
        var x = randn(new long[] { N, DIn }, dtype: ScalarType.Float64, generator: new Generator(12));
        var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L1Coefficient = L1 });
        var output = objective.Compute(x);
        output.Loss.backward();

        // Reference (SAELens' GatedTrainingSAE): gate = (x − b_dec) W_enc + b_gate, mag = (x − b_dec)(W_enc ⊙ exp r_mag) + b_mag,
        // f = 1[gate > 0] · ReLU(mag); loss = MSE + c · Σ ReLU(gate)·‖W_dec‖ / n + Σ (ReLU(gate) W_dec + b_dec − x)² / n.
        var p = Leaves(sae);
        var centred = x - p["b_dec"];
        var gate = centred.matmul(p["W_enc"]) + p["b_gate"];
        var mag = centred.matmul(p["W_enc"] * p["r_mag"].exp()) + p["b_mag"];
        var acts = gate.gt(0).to_type(ScalarType.Float64) * nn.functional.relu(mag);
        var recon = acts.matmul(p["W_dec"]) + p["b_dec"];
        var norms = p["W_dec"].pow(2).sum(1).sqrt();
        var viaGate = nn.functional.relu(gate).matmul(p["W_dec"]) + p["b_dec"];
        var loss = (recon - x).pow(2).sum() / N + L1 * (nn.functional.relu(gate) * norms).sum() / N + (viaGate - x).pow(2).sum() / N;
        loss.backward();

        AssertClose(loss.detach(), output.Loss.detach(), "loss");
        foreach (var name in new[] { "W_enc", "W_dec", "b_gate", "r_mag", "b_mag", "b_dec" })
            AssertClose(p[name].grad!, sae.named_parameters().First(q => q.name == name).parameter.grad!, $"∂loss/∂{name}");
    }

    [Fact]
    public void An_input_that_needs_a_gradient_still_gets_it_and_the_encoding_is_unchanged()
    {
        // Splicing an SAE into a model and attributing to the residual stream needs ∂/∂x; the fast path is only for inputs without grad.
        using var sae = RandomSae(SaeArchitecture.Standard, 5);
        var x0 = randn(new long[] { N, DIn }, dtype: ScalarType.Float64, generator: new Generator(13));
        var x = x0.clone().requires_grad_(true);
        sae.forward(x).pow(2).sum().backward();

        var p = Leaves(sae);
        var xr = x0.clone().requires_grad_(true);
        var recon = nn.functional.relu((xr - p["b_dec"]).matmul(p["W_enc"]) + p["b_enc"]).matmul(p["W_dec"]) + p["b_dec"];
        recon.pow(2).sum().backward();
        AssertClose(xr.grad!, x.grad!, "∂/∂x");
        AssertClose(p["b_dec"].grad!, sae.b_dec.grad!, "∂/∂b_dec");

        using (no_grad())
        {
            // Encoding with and without gradient tracking gives the same numbers.
            var plain = sae.Encode(x0);
            using var _ = enable_grad();
            AssertClose(plain, sae.Encode(x0).detach(), "Encode with grad vs without");
        }
    }

    [Fact]
    public void Geometric_median_of_a_convex_quadrilateral_is_where_its_diagonals_cross()
    {
        // For four points in convex position the geometric median is the crossing of the diagonals (each diagonal's points are
        // on opposite sides, so their distance sum is minimal exactly on it). (0,0)-(3,3): y = x; (4,0)-(0,2): y = 2 − x/2 → (4/3, 4/3).
        // The mean, where Weiszfeld starts, is (7/4, 5/4).
        var pts = tensor(new double[] { 0, 0, 4, 0, 3, 3, 0, 2 }, new long[] { 4, 2 });
        var m = SparseAutoencoder.GeometricMedian(pts).data<double>().ToArray();
        Assert.Equal(4.0 / 3, m[0], 6);
        Assert.Equal(4.0 / 3, m[1], 6);
    }

    [Fact]
    public void Geometric_median_of_a_triangle_with_angles_under_120_degrees_is_its_fermat_point()
    {
        // A = (−1, 0), B = (1, 0), C = (0, 3): the Fermat point (0, y) sees AB under 120°, so tan 60° = 1/y and y = 1/√3.
        var pts = tensor(new float[] { -1, 0, 1, 0, 0, 3 }, new long[] { 3, 2 });
        var median = SparseAutoencoder.GeometricMedian(pts);
        Assert.Equal(ScalarType.Float32, median.dtype);
        var m = median.data<float>().ToArray();
        Assert.Equal(0.0, m[0], 5);
        Assert.Equal(1 / Math.Sqrt(3), m[1], 5);
    }

    [Theory]
    [InlineData(SaeBDecInit.Zeros, 0.0, 0.0)]
    [InlineData(SaeBDecInit.Mean, 7.0 / 4, 5.0 / 4)]
    [InlineData(SaeBDecInit.GeometricMedian, 4.0 / 3, 4.0 / 3)]
    public void Initialize_b_dec_sets_zeros_the_mean_or_the_geometric_median(SaeBDecInit method, double b0, double b1)
    {
        using var sae = new SparseAutoencoder(new SaeConfig { DIn = 2, DSae = 3, BDecInitMethod = method, Seed = 0 });
        using (no_grad()) sae.b_dec.fill_(9);
        Assert.False(sae.BDecInitialized);
        sae.InitializeBDec(tensor(new float[] { 0, 0, 4, 0, 3, 3, 0, 2 }, new long[] { 4, 2 }));
        var b = sae.b_dec.detach().data<float>().ToArray();
        Assert.Equal(b0, b[0], 5);
        Assert.Equal(b1, b[1], 5);
        Assert.True(sae.BDecInitialized);
    }

    [Fact]
    public void Training_initializes_b_dec_from_the_first_batch_once_and_a_loaded_sae_keeps_its_b_dec()
    {
        using var sae = new SparseAutoencoder(new SaeConfig { DIn = 2, DSae = 3, BDecInitMethod = SaeBDecInit.Mean, Seed = 0 });
        var objective = new SaeTrainingObjective(sae);
        objective.Compute(tensor(new float[] { 0, 0, 4, 0, 3, 3, 0, 2 }, new long[] { 4, 2 }));
        Assert.Equal(new[] { 1.75f, 1.25f }, sae.b_dec.detach().data<float>().ToArray());
        objective.Compute(tensor(new float[] { 10, 10, 20, 20 }, new long[] { 2, 2 }));
        Assert.Equal(new[] { 1.75f, 1.25f }, sae.b_dec.detach().data<float>().ToArray());

        sae.Save(_dir);
        using var loaded = SparseAutoencoder.Load(_dir);
        Assert.True(loaded.BDecInitialized);
        new SaeTrainingObjective(loaded).Compute(tensor(new float[] { 10, 10, 20, 20 }, new long[] { 2, 2 }));
        Assert.Equal(new[] { 1.75f, 1.25f }, loaded.b_dec.detach().data<float>().ToArray());
    }

    [Theory]
    [InlineData(SaeBDecInit.Zeros, "zeros")]
    [InlineData(SaeBDecInit.Mean, "mean")]
    [InlineData(SaeBDecInit.GeometricMedian, "geometric_median")]
    public void B_dec_init_method_is_written_to_cfg_json_with_sae_lens_strings_and_read_back(SaeBDecInit method, string name)
    {
        using var sae = new SparseAutoencoder(new SaeConfig { DIn = 2, DSae = 3, BDecInitMethod = method, Seed = 0 });
        sae.Save(_dir);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "cfg.json")))!.AsObject();
        Assert.Equal(name, cfg["b_dec_init_method"]!.GetValue<string>());
        using var loaded = SparseAutoencoder.Load(_dir);
        Assert.Equal(method, loaded.Cfg.BDecInitMethod);
    }

    [Fact]
    public void An_unknown_b_dec_init_method_in_cfg_json_names_the_file_and_the_valid_values()
    {
        using (var sae = new SparseAutoencoder(new SaeConfig { DIn = 2, DSae = 3, Seed = 0 })) sae.Save(_dir);
        var path = Path.Combine(_dir, "cfg.json");
        var cfg = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        cfg["b_dec_init_method"] = "median";
        File.WriteAllText(path, cfg.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => SparseAutoencoder.Load(_dir));
        Assert.Contains("cfg.json", e.Message);
        Assert.Contains("geometric_median", e.Message);
    }
}
