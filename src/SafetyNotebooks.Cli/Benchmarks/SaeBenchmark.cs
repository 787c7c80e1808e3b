using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using static TorchSharp.torch;

namespace SafetyNotebooks.Cli.Benchmarks;

/// <summary>
/// <c>sae_train_step</c>: one full SAE training step — forward, loss (MSE + L1 scaled by decoder norms, or TopK's MSE + AuxK),
/// backward, Adam update — on a standard SAE with d_in 512, d_sae 4096, batch 2048 (and the same step for TopK, k 64), through
/// <see cref="SaeTrainingObjective"/>. The matmuls a step needs are five of 2·n·d_in·d_sae FLOPs each (≈ 43 GFLOP): the encoder and
/// decoder forward, and backward ∂L/∂acts = ∂L/∂out·W_decᵀ, ∂L/∂W_dec = actsᵀ·∂L/∂out, ∂L/∂W_enc = sae_inᵀ·∂L/∂pre. SAELens' formula
/// <c>(x − b_dec) W_enc</c> makes autograd compute a sixth, the gradient of the whole input ∂L/∂pre·W_encᵀ, only to sum it into
/// b_dec's gradient; the library gets b_dec's gradient from a vector product instead (<see cref="SparseAutoencoder.EncodeWithHiddenPre"/>).
/// benchmarks/pytorch_baseline.py runs the same step as SAELens writes it (six matmuls), and also with the library's b_dec gradient.
/// </summary>
public static class SaeBenchmark
{
    /// <summary>Workload name in <c>bench</c>.</summary>
    public const string Name = "sae_train_step";
    /// <summary>Shape of the workload.</summary>
    public const int DIn = 512, DSae = 4096, Batch = 2048;
    /// <summary>FLOPs of the five matmuls one step needs (see the class summary).</summary>
    public static double Flops => 5.0 * 2 * Batch * (double)DIn * DSae;

    /// <summary>Median seconds per step for the given architecture.</summary>
    public static double Run(SaeArchitecture arch, int warmup = 2, int runs = 5)
    {
        TorchRuntime.EnsureLoaded();
        using var sae = new SparseAutoencoder(new SaeConfig { DIn = DIn, DSae = DSae, Architecture = arch, K = 64, Seed = 0 });
        var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L1Coefficient = 5 });
        using var opt = optim.Adam(sae.parameters(), 3e-4);
        random.manual_seed(0);
        using var x = randn(Batch, DIn);
        return ModelBenchmarks.MedianSeconds(() =>
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var output = objective.Compute(x);
            output.Loss.backward();
            opt.step();
            using (no_grad()) objective.AfterOptimizerStep();
        }, warmup, runs);
    }
}
