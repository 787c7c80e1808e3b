namespace SafetyNotebooks.Training.Lora;

/// <summary>
/// LoRA hyper-parameters, as PEFT's <c>LoraConfig</c> (the subset for plain LoRA on linear layers): rank <see cref="R"/>,
/// <see cref="LoraAlpha"/>, <see cref="LoraDropout"/>, <see cref="TargetModules"/> (Hugging Face module names of the model's
/// family, e.g. GPT-2 <c>c_attn</c>, Llama <c>q_proj</c>) and <see cref="UseRslora"/>. The adapter adds
/// <c>scaling · B(A(dropout(x)))</c> to each targeted linear layer, with <c>scaling = lora_alpha / r</c>
/// (rsLoRA: <c>lora_alpha / √r</c>).
/// </summary>
public sealed record LoraConfig
{
    /// <summary>Rank r of the update (PEFT default 8).</summary>
    public int R { get; init; } = 8;
    /// <summary>lora_alpha (PEFT default 8): the update is scaled by lora_alpha / r (or / √r with <see cref="UseRslora"/>).</summary>
    public double LoraAlpha { get; init; } = 8;
    /// <summary>Dropout probability on the adapter's input (PEFT default 0); active only in training mode.</summary>
    public double LoraDropout { get; init; }
    /// <summary>
    /// Hugging Face module names to adapt. As in PEFT, a name matches a module whose full name equals it or ends with
    /// "." + name (so <c>c_proj</c> is both GPT-2 projections and <c>mlp.c_proj</c> only the MLP's); a single entry that is
    /// not a plain name is a regular expression matched against the whole module name. Null: PEFT's default for the family
    /// (GPT-2 <c>c_attn</c>; Llama <c>q_proj, v_proj</c>; GPT-NeoX <c>query_key_value</c>).
    /// </summary>
    public IReadOnlyList<string>? TargetModules { get; init; }
    /// <summary>Rank-stabilized LoRA (Kalajdzievski 2023): scaling lora_alpha / √r instead of lora_alpha / r.</summary>
    public bool UseRslora { get; init; }
    /// <summary>
    /// Hugging Face family whose module names (and adapter key names) the model uses: <c>gpt2</c>, <c>llama</c> or
    /// <c>gpt_neox</c> (PEFT's <c>model_type</c> keys). Null: inferred from the model (gated MLP → llama; rotary without gated
    /// MLP → gpt_neox; otherwise gpt2).
    /// </summary>
    public string? Family { get; init; }
    /// <summary>Seed for the Kaiming-uniform initialisation of A (null: the global generator).</summary>
    public long? Seed { get; init; }
    /// <summary>Written to adapter_config.json as <c>base_model_name_or_path</c> (e.g. "gpt2"); informational.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>The factor the update B·A is multiplied by: lora_alpha / r, or lora_alpha / √r with <see cref="UseRslora"/>.</summary>
    public double Scaling => UseRslora ? LoraAlpha / Math.Sqrt(R) : LoraAlpha / R;

    /// <summary>Checks the values; throws <see cref="ArgumentException"/> naming the field and the fix.</summary>
    public LoraConfig Validate()
    {
        if (R <= 0) throw new ArgumentException($"LoraConfig.R (r) is {R}; it must be a positive integer (e.g. 8).");
        if (!double.IsFinite(LoraAlpha) || LoraAlpha <= 0) throw new ArgumentException($"LoraConfig.LoraAlpha is {LoraAlpha}; it must be a positive number (e.g. 16).");
        if (!(LoraDropout >= 0 && LoraDropout < 1)) throw new ArgumentException($"LoraConfig.LoraDropout is {LoraDropout}; it must be in [0, 1) (e.g. 0.05).");
        if (TargetModules is { Count: 0 }) throw new ArgumentException("LoraConfig.TargetModules is empty; name at least one module (e.g. [\"c_attn\"]) or leave it null for the family's default.");
        if (Family is not null && !LoraTargets.Families.Contains(Family))
            throw new ArgumentException($"LoraConfig.Family is '{Family}'; use one of {string.Join(", ", LoraTargets.Families)} (or null to infer it).");
        return this;
    }
}
