using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>
/// Settings of a synthetic ground-truth dataset in the style of Sharkey, Braun &amp; Millidge (2022, <i>Taking features out
/// of superposition with sparse autoencoders</i>): <see cref="NFeatures"/> random unit-norm feature directions in
/// <see cref="DModel"/> dimensions, each active with its own probability, with nonnegative coefficients, optionally correlated.
/// </summary>
public sealed record GroundTruthConfig
{
    /// <summary>Dimension of the activations (Sharkey et al.: 256).</summary>
    public int DModel { get; init; } = 256;
    /// <summary>Number of true features (Sharkey et al.: 512, twice <see cref="DModel"/>, so they must be in superposition).</summary>
    public int NFeatures { get; init; } = 512;
    /// <summary>Expected number of active features per sample, Σᵢ pᵢ (Sharkey et al.: about 5).</summary>
    public double MeanActiveFeatures { get; init; } = 5;
    /// <summary>Feature i's probability is proportional to <c>ProbabilityDecay^i</c> (scaled so they sum to
    /// <see cref="MeanActiveFeatures"/>): 1 (default) gives every feature the same probability; Sharkey et al. use an
    /// exponential decay (e.g. 0.99), so some features are much rarer than others.</summary>
    public double ProbabilityDecay { get; init; } = 1.0;
    /// <summary>Strength of the correlations between features being active (a Gaussian copula with a random low-rank
    /// correlation matrix): 0 (default) = independent; larger values (e.g. 1–3) correlate more. Each feature keeps its
    /// marginal probability.</summary>
    public double CorrelationStrength { get; init; }
    /// <summary>Rank of the random factor behind the correlations (default 16).</summary>
    public int CorrelationRank { get; init; } = 16;
    /// <summary>Seed of the feature directions and correlation matrix (samples take their own generator). Default 0.</summary>
    public int Seed { get; init; }

    /// <summary>Throws a one-line error naming the field and the fix for an impossible setting.</summary>
    public void Validate()
    {
        if (DModel < 1) throw new ArgumentException($"GroundTruthConfig.DModel is {DModel}; set it to 1 or more.");
        if (NFeatures < 1) throw new ArgumentException($"GroundTruthConfig.NFeatures is {NFeatures}; set it to 1 or more.");
        if (!(MeanActiveFeatures > 0) || MeanActiveFeatures > NFeatures)
            throw new ArgumentException($"GroundTruthConfig.MeanActiveFeatures is {MeanActiveFeatures}; set it in (0, NFeatures = {NFeatures}].");
        if (!(ProbabilityDecay > 0) || ProbabilityDecay > 1)
            throw new ArgumentException($"GroundTruthConfig.ProbabilityDecay is {ProbabilityDecay}; set it in (0, 1] (1 = every feature equally likely).");
        if (!(CorrelationStrength >= 0)) throw new ArgumentException($"GroundTruthConfig.CorrelationStrength is {CorrelationStrength}; set it to 0 (independent) or more.");
        if (CorrelationRank < 1) throw new ArgumentException($"GroundTruthConfig.CorrelationRank is {CorrelationRank}; set it to 1 or more.");
    }
}

/// <summary>One sample of <see cref="GroundTruthFeatures"/>.</summary>
/// <param name="Activations">float32 <c>[batch, d_model]</c> = <c>Coefficients @ Features</c>.</param>
/// <param name="Coefficients">float32 <c>[batch, n_features]</c>, nonnegative, mostly zero: which true features are active and how strongly.</param>
public sealed record GroundTruthBatch(Tensor Activations, Tensor Coefficients) : IDisposable
{
    /// <summary>Disposes both tensors.</summary>
    public void Dispose() { Activations.Dispose(); Coefficients.Dispose(); }
}

/// <summary>
/// Synthetic activations built from known sparse features, for checking that a sparse autoencoder recovers them
/// (with <see cref="Matching"/>). Each sample: feature i is active with probability pᵢ (correlated across features when
/// <see cref="GroundTruthConfig.CorrelationStrength"/> &gt; 0), an active feature gets a coefficient uniform in [0, 1], and
/// the activation is Σᵢ cᵢ fᵢ over the unit-norm feature directions fᵢ.
/// <code>
/// using var truth = new GroundTruthFeatures(new GroundTruthConfig { DModel = 256, NFeatures = 512, MeanActiveFeatures = 5 });
/// var x = truth.SampleActivations(4096, new Generator(1));     // [4096, 256]
/// double mmcs = Matching.MeanMaxCosineSimilarity(learnedDecoderRows, truth.Features);
/// </code>
/// </summary>
public sealed class GroundTruthFeatures : IDisposable
{
    readonly Tensor? _choleskyT;   // Lᵀ of the correlation matrix, when correlated

    /// <summary>Draws the feature directions (and the correlation matrix) from <see cref="GroundTruthConfig.Seed"/>.</summary>
    public GroundTruthFeatures(GroundTruthConfig config)
    {
        TorchRuntime.EnsureLoaded();
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        var gen = new Generator((ulong)config.Seed);
        using (var scope = torch.NewDisposeScope())
        {
            var f = torch.randn(new long[] { config.NFeatures, config.DModel }, generator: gen, dtype: ScalarType.Float64);
            Features = (f / f.norm(1, keepdim: true)).to_type(ScalarType.Float32).MoveToOuterDisposeScope();
            var raw = torch.pow(config.ProbabilityDecay, torch.arange(config.NFeatures, dtype: ScalarType.Float64));
            var p = raw * (config.MeanActiveFeatures / raw.sum().item<double>());
            using (var pmax = p.max())
                if (pmax.item<double>() > 1)
                    throw new ArgumentException($"GroundTruthConfig: MeanActiveFeatures {config.MeanActiveFeatures} with ProbabilityDecay {config.ProbabilityDecay} needs a feature probability above 1; lower MeanActiveFeatures or raise ProbabilityDecay towards 1.");
            FeatureProbabilities = p.to_type(ScalarType.Float32).MoveToOuterDisposeScope();
            if (config.CorrelationStrength > 0)
            {
                var a = torch.randn(new long[] { config.NFeatures, config.CorrelationRank }, generator: gen, dtype: ScalarType.Float64)
                        * (config.CorrelationStrength / Math.Sqrt(config.CorrelationRank));
                var cov = a.matmul(a.T) + torch.eye(config.NFeatures, dtype: ScalarType.Float64);
                var d = cov.diagonal().rsqrt();
                var corr = cov * d.unsqueeze(0) * d.unsqueeze(1);
                Correlation = corr.to_type(ScalarType.Float32).MoveToOuterDisposeScope();
                _choleskyT = torch.linalg.cholesky(corr).T.contiguous().MoveToOuterDisposeScope();
            }
        }
    }

    /// <summary>The settings.</summary>
    public GroundTruthConfig Config { get; }
    /// <summary>The true feature directions, float32 <c>[n_features, d_model]</c>, unit-norm rows.</summary>
    public Tensor Features { get; }
    /// <summary>pᵢ, float32 <c>[n_features]</c>, summing to <see cref="GroundTruthConfig.MeanActiveFeatures"/>.</summary>
    public Tensor FeatureProbabilities { get; }
    /// <summary>The correlation matrix of the Gaussian copula deciding which features fire together, float32
    /// <c>[n_features, n_features]</c>; null when features are independent.</summary>
    public Tensor? Correlation { get; }

    /// <summary>Draws <paramref name="batch"/> samples: activations and the true coefficients behind them.
    /// Uses <paramref name="generator"/> (or torch's global generator), so a seeded generator gives identical samples.</summary>
    public GroundTruthBatch Sample(int batch, Generator? generator = null)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), $"GroundTruthFeatures.Sample batch is {batch}; ask for 1 or more samples.");
        using var scope = torch.NewDisposeScope();
        int n = Config.NFeatures;
        Tensor u;                                                                      // uniform marginals [batch, n]
        if (_choleskyT is null) u = torch.rand(new long[] { batch, n }, generator: generator, dtype: ScalarType.Float64);
        else
        {
            var z = torch.randn(new long[] { batch, n }, generator: generator, dtype: ScalarType.Float64).matmul(_choleskyT);
            u = 0.5 * (1 + torch.special.erf(z / Math.Sqrt(2)));                     // Φ(z): each column uniform, columns correlated
        }
        var active = u < FeatureProbabilities.to_type(ScalarType.Float64);
        var magnitudes = torch.rand(new long[] { batch, n }, generator: generator);
        var coeffs = torch.where(active, magnitudes, torch.zeros_like(magnitudes));
        var acts = coeffs.matmul(Features);
        return new GroundTruthBatch(acts.MoveToOuterDisposeScope(), coeffs.MoveToOuterDisposeScope());
    }

    /// <summary>Just the activations <c>[batch, d_model]</c> of <see cref="Sample"/> (e.g. as SAE training batches).</summary>
    public Tensor SampleActivations(int batch, Generator? generator = null)
    {
        var s = Sample(batch, generator);
        s.Coefficients.Dispose();
        return s.Activations;
    }

    /// <summary>Disposes the feature matrix and the other tensors.</summary>
    public void Dispose()
    {
        Features.Dispose(); FeatureProbabilities.Dispose(); Correlation?.Dispose(); _choleskyT?.Dispose();
    }
}
