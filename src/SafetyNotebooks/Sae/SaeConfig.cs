using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>The SAE architectures, with SAELens' <c>architecture</c> strings (<see cref="SaeConfig.ArchitectureName"/>).</summary>
public enum SaeArchitecture
{
    /// <summary><c>standard</c>: ReLU encoder; trained with an L1 penalty scaled by the decoder row norms.</summary>
    Standard,
    /// <summary><c>topk</c>: keeps the k largest pre-activations of each row (then ReLU); AuxK loss for dead features.</summary>
    TopK,
    /// <summary><c>batchtopk</c>: keeps the k·batch largest ReLU activations of the whole batch; saved as <c>jumprelu</c> with the learned global threshold.</summary>
    BatchTopK,
    /// <summary><c>jumprelu</c>: ReLU(x)·H(x − θ) with a learned per-feature threshold θ; trained with an L0 penalty through the rectangle-kernel pseudo-derivative.</summary>
    JumpReLU,
    /// <summary><c>gated</c>: a gate path (W_enc, b_gate) decides which features fire, a magnitude path (W_enc·exp(r_mag), b_mag) how strongly.</summary>
    Gated,
}

/// <summary>How inputs are scaled before the SAE (SAELens' <c>normalize_activations</c>).</summary>
public enum SaeNormalization
{
    /// <summary><c>none</c>.</summary>
    None,
    /// <summary>
    /// <c>expected_average_only_in</c> (Anthropic's April 2024 update): inputs are multiplied by a constant
    /// √d_in / E‖x‖ estimated on training data (<see cref="SparseAutoencoder.EstimateScalingFactor"/>), outputs divided back.
    /// </summary>
    ExpectedAverageOnlyIn,
}

/// <summary>How b_dec is set before training (SAELens' <c>b_dec_init_method</c>; <see cref="SaeConfig.BDecInitName"/> gives the strings).</summary>
public enum SaeBDecInit
{
    /// <summary><c>zeros</c>: b_dec stays 0.</summary>
    Zeros,
    /// <summary><c>mean</c>: the mean of a sample of training activations.</summary>
    Mean,
    /// <summary><c>geometric_median</c>: the point minimizing the summed Euclidean distance to a sample of training activations
    /// (Weiszfeld iterations, <see cref="SparseAutoencoder.GeometricMedian"/>), robust to outlier activations.</summary>
    GeometricMedian,
}

/// <summary>
/// Configuration of a <see cref="SparseAutoencoder"/>. Property names are SAELens' in .NET casing; the saved cfg.json
/// uses SAELens' snake_case (<c>d_in</c>, <c>d_sae</c>, <c>architecture</c>, <c>dtype</c>, <c>apply_b_dec_to_input</c>,
/// <c>normalize_activations</c>, <c>k</c>, <c>metadata.hook_name</c>, …). Training-only fields (coefficients, bandwidth)
/// are in here too, as in SAELens' training configs, but are not written to cfg.json except where inference needs them.
/// </summary>
public sealed record SaeConfig
{
    /// <summary>Input width (<c>d_in</c>), e.g. d_model for a residual-stream SAE.</summary>
    public required int DIn { get; init; }
    /// <summary>Dictionary size (<c>d_sae</c>).</summary>
    public required int DSae { get; init; }
    /// <summary>Architecture. Default <see cref="SaeArchitecture.Standard"/>.</summary>
    public SaeArchitecture Architecture { get; init; } = SaeArchitecture.Standard;
    /// <summary>Hook the SAE reads (<c>metadata.hook_name</c>), e.g. <c>blocks.0.hook_resid_pre</c>; the default splice point.</summary>
    public string? HookName { get; init; }
    /// <summary>Head index for per-head hooks (<c>metadata.hook_head_index</c>); null for whole activations.</summary>
    public int? HookHeadIndex { get; init; }
    /// <summary>Model the SAE was trained on (<c>metadata.model_name</c>), informational.</summary>
    public string? ModelName { get; init; }
    /// <summary>Parameter dtype (<c>dtype</c>). Default float32.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;
    /// <summary>Subtract b_dec from the input before encoding (<c>apply_b_dec_to_input</c>). Default true.</summary>
    public bool ApplyBDecToInput { get; init; } = true;
    /// <summary>Input normalization (<c>normalize_activations</c>). Default none.</summary>
    public SaeNormalization NormalizeActivations { get; init; } = SaeNormalization.None;
    /// <summary>TopK: features kept per row; BatchTopK: average features kept per row (k·batch in total) (<c>k</c>). Default 100.</summary>
    public double K { get; init; } = 100;
    /// <summary>TopK/BatchTopK: select on pre-activations times the decoder row norms, as if the decoder were unit-norm (<c>rescale_acts_by_decoder_norm</c>). Default false.</summary>
    public bool RescaleActsByDecoderNorm { get; init; }
    /// <summary>JumpReLU: initial threshold θ (<c>jumprelu_init_threshold</c>). Default 0.01.</summary>
    public double JumpReLUInitThreshold { get; init; } = 0.01;
    /// <summary>JumpReLU: width ε of the rectangle kernel of the pseudo-derivative (<c>jumprelu_bandwidth</c>). Default 0.05.</summary>
    public double JumpReLUBandwidth { get; init; } = 0.05;
    /// <summary>BatchTopK: rate of the moving average that learns the inference threshold (<c>topk_threshold_lr</c>). Default 0.01.</summary>
    public double TopKThresholdLr { get; init; } = 0.01;
    /// <summary>Initial decoder row norm (<c>decoder_init_norm</c>, Anthropic's "heuristic" initialization); null keeps Kaiming-uniform norms. Default 0.1.</summary>
    public double? DecoderInitNorm { get; init; } = 0.1;
    /// <summary>
    /// How b_dec is initialized (<c>b_dec_init_method</c>): zeros (default), the mean or the geometric median of training
    /// activations. <see cref="SparseAutoencoder.InitializeBDec"/> applies it to a sample; otherwise <see cref="SaeTrainingObjective"/>
    /// applies it to the first training batch.
    /// </summary>
    public SaeBDecInit BDecInitMethod { get; init; } = SaeBDecInit.Zeros;
    /// <summary>Seed for the initial weights; null draws from the current torch generator.</summary>
    public long? Seed { get; init; }

    /// <summary>SAELens' <c>architecture</c> string: standard, topk, batchtopk, jumprelu, gated.</summary>
    public string ArchitectureName => NameOf(Architecture);

    /// <summary>SAELens' string for an architecture.</summary>
    public static string NameOf(SaeArchitecture a) => a switch
    {
        SaeArchitecture.Standard => "standard",
        SaeArchitecture.TopK => "topk",
        SaeArchitecture.BatchTopK => "batchtopk",
        SaeArchitecture.JumpReLU => "jumprelu",
        SaeArchitecture.Gated => "gated",
        _ => throw new ArgumentOutOfRangeException(nameof(a)),
    };

    /// <summary>SAELens' <c>b_dec_init_method</c> string: zeros, mean, geometric_median.</summary>
    public string BDecInitName => NameOf(BDecInitMethod);

    /// <summary>SAELens' string for a b_dec initialization.</summary>
    public static string NameOf(SaeBDecInit m) => m switch
    {
        SaeBDecInit.Zeros => "zeros",
        SaeBDecInit.Mean => "mean",
        SaeBDecInit.GeometricMedian => "geometric_median",
        _ => throw new ArgumentOutOfRangeException(nameof(m)),
    };

    /// <summary>Parses SAELens' <c>b_dec_init_method</c> string; unknown names throw, listing the valid ones.</summary>
    public static SaeBDecInit ParseBDecInit(string name) => name.ToLowerInvariant() switch
    {
        "zeros" => SaeBDecInit.Zeros,
        "mean" => SaeBDecInit.Mean,
        "geometric_median" => SaeBDecInit.GeometricMedian,
        _ => throw new ArgumentException($"Unknown b_dec_init_method '{name}'; use one of zeros, mean, geometric_median."),
    };

    /// <summary>Parses SAELens' <c>architecture</c> string (case-insensitive); unknown names throw, listing the valid ones.</summary>
    public static SaeArchitecture ParseArchitecture(string name) => name.ToLowerInvariant() switch
    {
        "standard" => SaeArchitecture.Standard,
        "topk" => SaeArchitecture.TopK,
        "batchtopk" => SaeArchitecture.BatchTopK,
        "jumprelu" => SaeArchitecture.JumpReLU,
        "gated" => SaeArchitecture.Gated,
        _ => throw new ArgumentException($"Unknown SAE architecture '{name}'; use one of standard, topk, batchtopk, jumprelu, gated."),
    };

    /// <summary>Checks the fields; throws one-line errors naming the field and the fix.</summary>
    public void Validate()
    {
        if (DIn < 1) throw new ArgumentException($"SaeConfig.DIn (d_in) is {DIn}; set it to the width of the activations (≥ 1).");
        if (DSae < 1) throw new ArgumentException($"SaeConfig.DSae (d_sae) is {DSae}; set it to the dictionary size (≥ 1).");
        if (DType is not (ScalarType.Float32 or ScalarType.Float64 or ScalarType.Float16 or ScalarType.BFloat16))
            throw new ArgumentException($"SaeConfig.DType is {DType}; use Float32, Float64, Float16 or BFloat16.");
        if (Architecture is SaeArchitecture.TopK && (K < 1 || K > DSae || K != Math.Floor(K)))
            throw new ArgumentException($"SaeConfig.K is {K} for a topk SAE; set a whole number between 1 and d_sae = {DSae}.");
        if (Architecture is SaeArchitecture.BatchTopK && (K <= 0 || K > DSae))
            throw new ArgumentException($"SaeConfig.K is {K} for a batchtopk SAE; set the average active features per row, in (0, d_sae = {DSae}].");
        if (Architecture is SaeArchitecture.JumpReLU && !(JumpReLUBandwidth > 0))
            throw new ArgumentException($"SaeConfig.JumpReLUBandwidth is {JumpReLUBandwidth}; set a positive kernel width (SAELens' default 0.05).");
    }
}
