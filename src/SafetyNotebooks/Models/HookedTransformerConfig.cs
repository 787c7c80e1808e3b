namespace SafetyNotebooks.Models;

/// <summary>Which normalization the model applies before attention, MLP and unembedding.</summary>
public enum NormalizationType
{
    /// <summary>LayerNorm with learned weight and bias (GPT-2).</summary>
    LN,
    /// <summary>LayerNorm without weight and bias: what <c>LN</c> becomes after <see cref="HookedTransformer.FoldLayerNorm"/>.</summary>
    LNPre,
    /// <summary>RMSNorm (no centering) with a learned weight.</summary>
    RMS,
    /// <summary>No normalization at all.</summary>
    None,
    /// <summary>RMSNorm without a weight: what <c>RMS</c> becomes after <see cref="HookedTransformer.FoldLayerNorm"/> (TransformerLens' <c>RMSPre</c>).</summary>
    RMSPre,
}

/// <summary>How token positions enter the model.</summary>
public enum PositionalEmbeddingType
{
    /// <summary>A learned absolute positional embedding <c>W_pos</c> added to the residual stream (GPT-2).</summary>
    Standard,
    /// <summary>No positional information at all (the model sees a bag of tokens plus the causal mask).</summary>
    None,
    /// <summary>
    /// Rotary embeddings (RoPE, Llama and GPT-NeoX): queries and keys are rotated by position-dependent angles inside every
    /// attention layer (<c>hook_rot_q</c>, <c>hook_rot_k</c>); nothing is added to the residual stream. See
    /// <see cref="HookedTransformerConfig.RotaryDim"/> and <see cref="HookedTransformerConfig.RotaryBase"/>.
    /// </summary>
    Rotary,
}

/// <summary>
/// The architecture of a <see cref="HookedTransformer"/>, in TransformerLens vocabulary.
/// Create one with an object initializer or a factory (<see cref="Gpt2Small"/>, <see cref="AttnOnly2L"/>),
/// and call <see cref="Validate"/> (the model does it) to get clear errors for inconsistent settings.
/// </summary>
public sealed record HookedTransformerConfig
{
    /// <summary>Number of transformer blocks.</summary>
    public int NLayers { get; init; }
    /// <summary>Width of the residual stream.</summary>
    public int DModel { get; init; }
    /// <summary>Number of attention heads per layer.</summary>
    public int NHeads { get; init; }
    /// <summary>Dimension of each head's query/key/value space.</summary>
    public int DHead { get; init; }
    /// <summary>Hidden width of the MLP (ignored when <see cref="AttnOnly"/>).</summary>
    public int DMlp { get; init; }
    /// <summary>Maximum context length (number of positions).</summary>
    public int NCtx { get; init; }
    /// <summary>Vocabulary size.</summary>
    public int DVocab { get; init; }
    /// <summary>MLP activation: "gelu_new" (tanh approximation, GPT-2), "gelu" (exact), "relu", "solu" (x·softmax(x)), "silu" (x·sigmoid(x), Llama).</summary>
    public string ActFn { get; init; } = "gelu_new";
    /// <summary>Normalization type.</summary>
    public NormalizationType Normalization { get; init; } = NormalizationType.LN;
    /// <summary>Positional embedding type.</summary>
    public PositionalEmbeddingType PositionalEmbedding { get; init; } = PositionalEmbeddingType.Standard;
    /// <summary>If true, blocks have no MLP (and no <c>hook_resid_mid</c>).</summary>
    public bool AttnOnly { get; init; }
    /// <summary>
    /// If true, a freshly initialised model shares <c>W_U = W_E.T</c>. Loaded checkpoints are always untied
    /// (like TransformerLens), so that weight processing can change <c>W_U</c> alone.
    /// </summary>
    public bool TiedEmbeddings { get; init; }
    /// <summary>Epsilon added to the variance in normalization layers.</summary>
    public double LayerNormEps { get; init; } = 1e-5;
    /// <summary>Standard deviation of the normal initialisation of weight matrices; null means 0.8/sqrt(DModel) (TransformerLens' default).</summary>
    public double? InitRange { get; init; }
    /// <summary>Seed for weight initialisation; null leaves the global torch generator as it is.</summary>
    public int? Seed { get; init; }
    /// <summary>
    /// Number of key/value heads (TransformerLens' <c>n_key_value_heads</c>); null means <see cref="NHeads"/> (ordinary
    /// multi-head attention). Fewer is grouped-query attention: query heads <c>h·g … h·g+g-1</c> (g = NHeads / NKeyValueHeads)
    /// share key/value head h, as Hugging Face's <c>repeat_kv</c>. Must divide <see cref="NHeads"/>.
    /// </summary>
    public int? NKeyValueHeads { get; init; }
    /// <summary>
    /// How many leading dimensions of each head's query and key are rotated when <see cref="PositionalEmbedding"/> is
    /// <see cref="PositionalEmbeddingType.Rotary"/> (TransformerLens' <c>rotary_dim</c>; GPT-NeoX's <c>rotary_pct · d_head</c>);
    /// null means all of <see cref="DHead"/>. Must be even and at most <see cref="DHead"/>.
    /// </summary>
    public int? RotaryDim { get; init; }
    /// <summary>Base of the rotary frequencies, θ_i = base^(-2i / rotary_dim) (Hugging Face's <c>rope_theta</c> / <c>rotary_emb_base</c>).</summary>
    public double RotaryBase { get; init; } = 10000.0;
    /// <summary>
    /// If true, the MLP is gated (Llama's SwiGLU): <c>post = act(x @ W_gate) * (x @ W_in + b_in)</c>, with an extra
    /// <c>hook_pre_linear</c>; see <see cref="Components.GatedMlp"/>.
    /// </summary>
    public bool GatedMlp { get; init; }
    /// <summary>
    /// If true, attention and MLP read the same block input (GPT-NeoX / Pythia's parallel residual):
    /// <c>resid_post = resid_pre + attn(ln1(resid_pre)) + mlp(ln2(resid_pre))</c>, and blocks have no <c>hook_resid_mid</c>.
    /// </summary>
    public bool ParallelAttnMlp { get; init; }
    /// <summary>
    /// dtype of the parameters (TransformerLens' <c>cfg.dtype</c>): float32 (default), bfloat16, float16 or float64. Activations
    /// follow the parameters; rotary angles are always computed in float32.
    /// </summary>
    public TorchSharp.torch.ScalarType DType { get; init; } = TorchSharp.torch.ScalarType.Float32;

    /// <summary>
    /// TransformerLens' <c>use_split_qkv_input</c>: each block hooks the residual stream that feeds the queries, keys and
    /// values separately and per head, as <c>hook_q_input</c> [batch, pos, head, d_model] and <c>hook_k_input</c> /
    /// <c>hook_v_input</c> [batch, pos, kv_head, d_model] (n_key_value_heads heads for grouped-query attention, as in
    /// TransformerLens); <c>ln1</c> is applied to each per head. Patching one head's <c>hook_q_input</c> changes only that
    /// head's queries (path patching). Off by default: it costs a per-head projection. Cannot be combined with <see cref="UseAttnIn"/>.
    /// </summary>
    public bool UseSplitQkvInput { get; init; }
    /// <summary>
    /// TransformerLens' <c>use_attn_in</c>: each block hooks the attention input per head as <c>hook_attn_in</c>
    /// [batch, pos, head, d_model] (before <c>ln1</c>, which is applied per head); queries, keys and values of a head all read
    /// it. Off by default. Not available with grouped-query attention (a key/value head serves several query heads) nor
    /// together with <see cref="UseSplitQkvInput"/>.
    /// </summary>
    public bool UseAttnIn { get; init; }
    /// <summary>
    /// TransformerLens' <c>use_attn_result</c>: <see cref="HookedTransformer.RunWithCache"/> without a names filter also
    /// caches each block's per-head outputs <c>attn.hook_result</c> [batch, pos, head, d_model]. Off by default, as in
    /// TransformerLens, because it is the largest activation of a block (n_heads times <c>hook_attn_out</c>) and caching it
    /// made a cache-everything run about 10% slower. Unlike TransformerLens, <c>hook_result</c> is still computed whenever it
    /// is hooked or named by a names filter, whatever this flag says; <see cref="ActivationCache.StackHeadResults"/> computes
    /// the per-head outputs from <c>hook_z</c> when they were not cached.
    /// </summary>
    public bool UseAttnResult { get; init; }
    /// <summary>
    /// TransformerLens' <c>use_hook_mlp_in</c>: each block hooks the MLP input (before <c>ln2</c>) as <c>hook_mlp_in</c>
    /// [batch, pos, d_model], a copy of <c>hook_resid_mid</c> (of <c>hook_resid_pre</c> with <see cref="ParallelAttnMlp"/>), so
    /// that editing it changes only what the MLP reads. Off by default.
    /// </summary>
    public bool UseHookMlpIn { get; init; }

    /// <summary>
    /// Sliding-window attention (Mistral's <c>sliding_window</c>): a query at cache index i attends only to keys j with
    /// i − j &lt; SlidingWindow (the last SlidingWindow keys, itself included), as Hugging Face's Mistral masks it; also with
    /// a key/value cache and padded batches. Null (default): full causal attention.
    /// </summary>
    public int? SlidingWindow { get; init; }

    /// <summary>The initialisation standard deviation actually used.</summary>
    public double EffectiveInitRange => InitRange ?? 0.8 / Math.Sqrt(DModel);
    /// <summary>The number of key/value heads actually used (<see cref="NKeyValueHeads"/> or <see cref="NHeads"/>).</summary>
    public int EffectiveNKeyValueHeads => NKeyValueHeads ?? NHeads;
    /// <summary>The number of rotated dimensions per head actually used (<see cref="RotaryDim"/> or <see cref="DHead"/>).</summary>
    public int EffectiveRotaryDim => RotaryDim ?? DHead;
    /// <summary>True when there are fewer key/value heads than query heads (grouped-query attention).</summary>
    public bool IsGroupedQuery => EffectiveNKeyValueHeads != NHeads;

    /// <summary>Valid values of <see cref="ActFn"/>.</summary>
    public static readonly string[] ActFns = { "gelu_new", "gelu", "relu", "solu", "silu" };

    /// <summary>Throws <see cref="ArgumentException"/> naming the offending field and the fix.</summary>
    public HookedTransformerConfig Validate()
    {
        void Positive(int v, string name, string hint)
        {
            if (v <= 0) throw new ArgumentException($"HookedTransformerConfig.{name} is {v} but must be positive. {hint}");
        }
        Positive(NLayers, nameof(NLayers), "Set the number of transformer blocks, e.g. NLayers = 2.");
        Positive(DModel, nameof(DModel), "Set the residual stream width, e.g. DModel = 768.");
        Positive(NHeads, nameof(NHeads), "Set the number of heads per layer, e.g. NHeads = 12.");
        Positive(DHead, nameof(DHead), "Set the head dimension, usually DModel / NHeads.");
        Positive(NCtx, nameof(NCtx), "Set the maximum context length, e.g. NCtx = 1024.");
        Positive(DVocab, nameof(DVocab), "Set the vocabulary size, e.g. DVocab = 50257 for GPT-2.");
        if (!AttnOnly)
            Positive(DMlp, nameof(DMlp), "Set the MLP width (usually 4 * DModel) or set AttnOnly = true.");
        if (!ActFns.Contains(ActFn))
            throw new ArgumentException($"HookedTransformerConfig.ActFn is \"{ActFn}\" but must be one of {string.Join(", ", ActFns.Select(a => "\"" + a + "\""))}. " +
                "GPT-2 uses \"gelu_new\".");
        if (!(LayerNormEps > 0) && Normalization != NormalizationType.None)
            throw new ArgumentException($"HookedTransformerConfig.LayerNormEps is {LayerNormEps} but must be > 0 (1e-5 is usual).");
        if (InitRange is { } r && !(r > 0))
            throw new ArgumentException($"HookedTransformerConfig.InitRange is {r} but must be > 0, or null for 0.8/sqrt(DModel).");
        if (DType is not (TorchSharp.torch.ScalarType.Float32 or TorchSharp.torch.ScalarType.BFloat16 or TorchSharp.torch.ScalarType.Float16 or TorchSharp.torch.ScalarType.Float64))
            throw new ArgumentException($"HookedTransformerConfig.DType is {DType} but must be a floating-point type: Float32 (default), BFloat16, Float16 or Float64.");
        if (NKeyValueHeads is { } kv && (kv <= 0 || NHeads % kv != 0))
            throw new ArgumentException($"HookedTransformerConfig.NKeyValueHeads is {kv} but must be a positive divisor of NHeads ({NHeads}), " +
                "or null for ordinary multi-head attention.");
        if (PositionalEmbedding == PositionalEmbeddingType.Rotary)
        {
            int rd = EffectiveRotaryDim;
            if (rd <= 0 || rd > DHead || rd % 2 != 0)
                throw new ArgumentException($"HookedTransformerConfig.RotaryDim is {rd} but must be even and in [2, DHead = {DHead}] " +
                    "(null rotates the whole head).");
            if (!(RotaryBase > 0) || !double.IsFinite(RotaryBase))
                throw new ArgumentException($"HookedTransformerConfig.RotaryBase is {RotaryBase} but must be a positive number (10000 is usual).");
        }
        if (SlidingWindow is int sw && sw < 1)
            throw new ArgumentException($"HookedTransformerConfig.SlidingWindow is {sw}; it must be ≥ 1 (the number of keys a query sees), or null for full causal attention.");
        if (UseAttnIn && UseSplitQkvInput)
            throw new ArgumentException("HookedTransformerConfig.UseAttnIn and UseSplitQkvInput are both true, but queries, keys and values " +
                "read either hook_attn_in or hook_q_input/hook_k_input/hook_v_input: set only one of them.");
        if (UseAttnIn && IsGroupedQuery)
            throw new ArgumentException($"HookedTransformerConfig.UseAttnIn is true but attention is grouped-query ({NHeads} query heads, " +
                $"{EffectiveNKeyValueHeads} key/value heads), so a per-head attention input has no single key/value head: use UseSplitQkvInput instead " +
                "(hook_k_input/hook_v_input have n_key_value_heads heads).");
        return this;
    }

    /// <summary>GPT-2 small's architecture (124M parameters): 12 layers, d_model 768, 12 heads, d_mlp 3072, vocab 50257, n_ctx 1024.</summary>
    public static HookedTransformerConfig Gpt2Small() => new()
    {
        NLayers = 12, DModel = 768, NHeads = 12, DHead = 64, DMlp = 3072, NCtx = 1024, DVocab = 50257,
        ActFn = "gelu_new", Normalization = NormalizationType.LN, TiedEmbeddings = true, InitRange = 0.02,
    };

    /// <summary>A small attention-only model (the kind used in induction-head experiments).</summary>
    public static HookedTransformerConfig AttnOnly2L(int dVocab = 64, int nCtx = 128) => new()
    {
        NLayers = 2, DModel = 64, NHeads = 8, DHead = 8, DMlp = 0, NCtx = nCtx, DVocab = dVocab,
        AttnOnly = true, Normalization = NormalizationType.LN,
    };
}
