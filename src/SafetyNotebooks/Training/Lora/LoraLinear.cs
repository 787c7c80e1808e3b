using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training.Lora;

/// <summary>
/// The LoRA update of one linear layer, as PEFT's <c>lora.Linear</c> without its base layer (the base weight stays where it is
/// in the <see cref="Models.HookedTransformer"/>): <c>delta(x) = scaling · B(A(dropout(x)))</c> with <c>lora_A</c> an
/// <c>nn.Linear(in, r)</c> (weight [r, in], Kaiming-uniform with a = √5, i.e. U(−1/√in, 1/√in)) and <c>lora_B</c> an
/// <c>nn.Linear(r, out)</c> (weight [out, r], zeros), both without bias. In nn.Linear convention (weight [out, in]) the
/// layer's effective weight is <c>W + scaling · B·A</c> (<see cref="DeltaWeight"/>).
/// </summary>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
    readonly Linear _a, _b;
    readonly Dropout? _dropout;

    /// <summary>Creates the update for a layer with <paramref name="inFeatures"/> inputs and <paramref name="outFeatures"/> outputs.</summary>
    /// <param name="name">Hugging Face module name of the adapted layer, e.g. <c>transformer.h.0.attn.c_attn</c>.</param>
    /// <param name="inFeatures">Input width of the layer.</param>
    /// <param name="outFeatures">Output width of the layer.</param>
    /// <param name="config">Rank, alpha, dropout and rsLoRA.</param>
    /// <param name="generator">Generator for A's initialisation (null: the global one).</param>
    /// <param name="dtype">Parameter dtype (the base model's).</param>
    public LoraLinear(string name, int inFeatures, int outFeatures, LoraConfig config, Generator? generator = null, ScalarType dtype = ScalarType.Float32)
        : base("lora")
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        HfName = name; InFeatures = inFeatures; OutFeatures = outFeatures; R = config.R; Scaling = config.Scaling;
        _a = nn.Linear(inFeatures, config.R, hasBias: false, dtype: dtype);
        _b = nn.Linear(config.R, outFeatures, hasBias: false, dtype: dtype);
        using (torch.no_grad())
        {
            // PEFT: kaiming_uniform_(A, a=√5) → bound = √(2/(1+a²))·√(3/fan_in) = 1/√in; B = 0 so the adapter starts as a no-op.
            double bound = 1.0 / Math.Sqrt(inFeatures);
            using var u = torch.rand(new long[] { config.R, inFeatures }, dtype: ScalarType.Float64, generator: generator);
            _a.weight!.copy_(u * (2 * bound) - bound);
            _b.weight!.zero_();
        }
        register_module("lora_A", _a);
        register_module("lora_B", _b);
        if (config.LoraDropout > 0)
        {
            _dropout = nn.Dropout(config.LoraDropout);
            register_module("lora_dropout", _dropout);
        }
    }

    /// <summary>All submodules are registered explicitly under PEFT's names.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Hugging Face module name of the adapted layer (PEFT's key without <c>base_model.model.</c>).</summary>
    public string HfName { get; }
    /// <summary>Input width.</summary>
    public int InFeatures { get; }
    /// <summary>Output width.</summary>
    public int OutFeatures { get; }
    /// <summary>Rank r.</summary>
    public int R { get; }
    /// <summary>lora_alpha / r (or / √r with rsLoRA).</summary>
    public double Scaling { get; }
    /// <summary>A, [r, in] (PEFT's <c>lora_A.weight</c>).</summary>
    public Parameter A => _a.weight!;
    /// <summary>B, [out, r] (PEFT's <c>lora_B.weight</c>).</summary>
    public Parameter B => _b.weight!;

    /// <summary>Input rows [rows, in] → update [rows, out] = scaling · B(A(dropout(x))), in the Hugging Face layer's output order.</summary>
    public override Tensor forward(Tensor x)
    {
        var h = _dropout is null ? x : _dropout.call(x);
        return _b.call(_a.call(h)) * Scaling;
    }

    /// <summary>The merged update scaling · B·A, [out, in] (nn.Linear convention; PEFT's <c>get_delta_weight</c> before its fan_in_fan_out transpose).</summary>
    public Tensor DeltaWeight() => B.matmul(A) * Scaling;
}
