using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>What <see cref="SparseAutoencoder.EncodeWithHiddenPre"/> returns (SAELens' <c>encode_with_hidden_pre</c>).</summary>
/// <param name="FeatureActs">Feature activations <c>[..., d_sae]</c> (after the activation function and <c>hook_sae_acts_post</c>).</param>
/// <param name="HiddenPre">Pre-activations <c>[..., d_sae]</c> the sparsity terms use (TopK: already rescaled by decoder norms when
/// <see cref="SaeConfig.RescaleActsByDecoderNorm"/>; gated: the magnitude path).</param>
/// <param name="GatePre">Gated only: the gate path's pre-activations (π_gate), used by the gated SAE's L1 and auxiliary terms.</param>
public sealed record SaeEncoding(Tensor FeatureActs, Tensor HiddenPre, Tensor? GatePre = null);

/// <summary>
/// A sparse autoencoder in SAELens' form, as one TorchSharp module for every <see cref="SaeArchitecture"/>:
/// <c>encode(x) = f((x − b_dec) W_enc + b_enc)</c>, <c>decode(a) = a W_dec + b_dec</c>, with <c>W_enc [d_in, d_sae]</c>,
/// <c>W_dec [d_sae, d_in]</c> (features are rows of W_dec), and TransformerLens hook points with SAELens' names
/// (<c>hook_sae_input</c>, <c>hook_sae_acts_pre</c>, <c>hook_sae_acts_post</c>, <c>hook_sae_recons</c>, <c>hook_sae_error</c>,
/// <c>hook_sae_output</c>) so features can be read, steered or ablated with the same hooks as the model's.
/// <code>
/// var sae = new SparseAutoencoder(new SaeConfig { DIn = 64, DSae = 512, HookName = "blocks.0.hook_resid_pre" });
/// var acts = sae.Encode(x);                    // [..., 512]
/// var recon = sae.Decode(acts);                // [..., 64]
/// sae.Save("my-sae");                          // cfg.json + sae_weights.safetensors, SAELens layout
/// </code>
/// Training is <see cref="SaeTrainingObjective"/> on the library's <see cref="Training.Trainer{TBatch}"/>; splicing into a
/// <see cref="HookedTransformer"/> is <see cref="SaeSplicing"/>; metrics are <see cref="SaeMetrics"/>.
/// </summary>
public sealed partial class SparseAutoencoder : nn.Module<Tensor, Tensor>
{
    readonly Dictionary<string, HookPoint> _hookPoints = new(StringComparer.Ordinal);
    bool _hooksOff;

    /// <summary>All submodules and parameters are registered explicitly under SAELens names.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Builds an SAE with SAELens' training initialization: W_dec Kaiming-uniform, rows scaled to
    /// <see cref="SaeConfig.DecoderInitNorm"/>, W_enc = W_decᵀ, biases 0, JumpReLU thresholds at <see cref="SaeConfig.JumpReLUInitThreshold"/>.</summary>
    public SparseAutoencoder(SaeConfig cfg) : base("SparseAutoencoder")
    {
        ArgumentNullException.ThrowIfNull(cfg);
        cfg.Validate();
        TorchRuntime.EnsureLoaded();
        Cfg = cfg;
        var dt = cfg.DType;
        Tensor wDec, wEnc;
        using (no_grad())
        {
            if (cfg.Seed is { } seed) random.manual_seed(seed);
            double bound = Math.Sqrt(6.0 / cfg.DIn);                      // kaiming_uniform_ on [d_sae, d_in]: fan_in = d_in, gain √2
            wDec = (rand(new long[] { cfg.DSae, cfg.DIn }, dtype: ScalarType.Float32) * (2 * bound) - bound).to_type(dt);
            if (cfg.DecoderInitNorm is { } n)
            {
                var norms = wDec.pow(2).sum(1, keepdim: true).sqrt();
                wDec = wDec / norms * n;
            }
            // Two independent leaf tensors (W_enc = W_decᵀ at init): built here, under no_grad, before either becomes a Parameter.
            wEnc = wDec.t().contiguous().clone();
            wDec = wDec.contiguous().clone();
        }
        W_dec = new Parameter(wDec, requires_grad: true);
        W_enc = new Parameter(wEnc, requires_grad: true);
        b_dec = new Parameter(zeros(cfg.DIn, dtype: dt), requires_grad: true);
        register_parameter("W_enc", W_enc);
        register_parameter("W_dec", W_dec);
        if (cfg.Architecture == SaeArchitecture.Gated)
        {
            b_gate = new Parameter(zeros(cfg.DSae, dtype: dt), requires_grad: true);
            r_mag = new Parameter(zeros(cfg.DSae, dtype: dt), requires_grad: true);
            b_mag = new Parameter(zeros(cfg.DSae, dtype: dt), requires_grad: true);
            register_parameter("b_gate", b_gate);
            register_parameter("r_mag", r_mag);
            register_parameter("b_mag", b_mag);
        }
        else
        {
            b_enc = new Parameter(zeros(cfg.DSae, dtype: dt), requires_grad: true);
            register_parameter("b_enc", b_enc);
        }
        register_parameter("b_dec", b_dec);
        if (cfg.Architecture == SaeArchitecture.JumpReLU)
        {
            threshold = new Parameter(full(cfg.DSae, cfg.JumpReLUInitThreshold, dtype: dt), requires_grad: true);
            register_parameter("threshold", threshold);
        }
        if (cfg.Architecture == SaeArchitecture.BatchTopK)
        {
            topk_threshold = zeros(Array.Empty<long>(), dtype: ScalarType.Float64);   // double, as SAELens (numerical stability)
            register_buffer("topk_threshold", topk_threshold);
        }
        foreach (var name in HookNames)
        {
            var hp = new HookPoint(name);
            hp.Name = cfg.HookName is null ? name : cfg.HookName + "." + name;
            _hookPoints[name] = hp;
            register_module(name, hp);
        }
    }

    /// <summary>The SAE's hook point names, in forward order (SAELens').</summary>
    public static IReadOnlyList<string> HookNames { get; } =
        ["hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_error", "hook_sae_output"];

    /// <summary>The configuration.</summary>
    public SaeConfig Cfg { get; private set; }

    /// <summary>Encoder weights <c>[d_in, d_sae]</c>.</summary>
    public Parameter W_enc { get; }
    /// <summary>Decoder weights <c>[d_sae, d_in]</c>; row i is feature i's direction.</summary>
    public Parameter W_dec { get; }
    /// <summary>Encoder bias <c>[d_sae]</c> (null for gated SAEs, which have b_gate and b_mag).</summary>
    public Parameter? b_enc { get; }
    /// <summary>Decoder bias <c>[d_in]</c>.</summary>
    public Parameter b_dec { get; }
    /// <summary>JumpReLU thresholds θ <c>[d_sae]</c> (the parameter itself, saved as SAELens' <c>threshold</c>).</summary>
    public Parameter? threshold { get; }
    /// <summary>Gated: gate bias <c>[d_sae]</c>.</summary>
    public Parameter? b_gate { get; }
    /// <summary>Gated: log-scale of the magnitude path <c>[d_sae]</c> (magnitude weights W_enc·exp(r_mag)).</summary>
    public Parameter? r_mag { get; }
    /// <summary>Gated: magnitude bias <c>[d_sae]</c>.</summary>
    public Parameter? b_mag { get; }
    /// <summary>BatchTopK: the learned global threshold (0-d float64 buffer), used in eval mode and saved as a JumpReLU threshold.</summary>
    public Tensor? topk_threshold { get; private set; }

    /// <summary>
    /// <c>expected_average_only_in</c>: the constant inputs are multiplied by (outputs divided by); null = 1. Set it with
    /// <see cref="EstimateScalingFactor"/> before training; <see cref="FoldActivationNormScalingFactor"/> folds it into the weights.
    /// </summary>
    public double? ScalingFactor { get; set; }

    /// <summary>When true, <see cref="forward"/> adds the error term (input − clean reconstruction, computed without hooks and
    /// without gradient), so the output equals the input exactly while hooks on the SAE's points still act (SAELens' <c>use_error_term</c>).</summary>
    public bool UseErrorTerm { get; set; }

    /// <summary>Hook points by local name (<see cref="HookNames"/>).</summary>
    public IReadOnlyDictionary<string, HookPoint> HookPoints => _hookPoints;

    /// <summary>The hook point with this local name (<c>hook_sae_acts_post</c>) or full name (<c>blocks.0.hook_resid_pre.hook_sae_acts_post</c>).</summary>
    public HookPoint GetHookPoint(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_hookPoints.TryGetValue(name, out var hp)) return hp;
        var local = name.Split('.')[^1];
        if (_hookPoints.TryGetValue(local, out hp) && hp.Name == name) return hp;
        throw new ArgumentException($"Unknown SAE hook point '{name}'. Valid names: {string.Join(", ", HookNames)} (or prefixed with the SAE's hook_name '{Cfg.HookName}').", nameof(name));
    }

    /// <summary>Adds a hook on one of the SAE's points (stays until <see cref="ResetHooks"/>), e.g. to steer or ablate features.</summary>
    public void AddHook(string name, Func<Tensor, HookPoint, Tensor?> hook, bool permanent = false, HookDirection dir = HookDirection.Fwd) =>
        GetHookPoint(name).AddHook(hook, permanent, dir);

    /// <summary>Removes the SAE's hooks (permanent ones only if asked).</summary>
    public void ResetHooks(bool includePermanent = false)
    {
        foreach (var hp in _hookPoints.Values) hp.RemoveHooks(includePermanent);
    }

    Tensor Hook(string name, Tensor x) => _hooksOff ? x : _hookPoints[name].forward(x);

    /// <summary>The decoder row norms ‖W_dec[i]‖ <c>[d_sae]</c> (with autograd).</summary>
    public Tensor DecoderNorms() => W_dec.pow(2).sum(1).sqrt();

    /// <summary>
    /// SAELens' <c>process_sae_in</c>: casts to the SAE's dtype, runs <c>hook_sae_input</c>, scales by
    /// <see cref="ScalingFactor"/>, and subtracts b_dec when <see cref="SaeConfig.ApplyBDecToInput"/>.
    /// </summary>
    public Tensor ProcessSaeIn(Tensor x)
    {
        var (sae_in, _) = EncoderInput(x, forTraining: false);
        return sae_in;
    }

    /// <summary>
    /// <see cref="ProcessSaeIn"/> for the encoder. When <paramref name="forTraining"/>, b_dec needs a gradient and the input does
    /// not (training on stored activations), the input is centred on a detached b_dec, and b_dec's gradient flows through the
    /// second result instead: the zero vector <c>b_dec.detach() − b_dec</c>, which <see cref="EncoderAffine"/> multiplies by the
    /// detached encoder weights and adds to the encoder bias. Same values as <c>(x − b_dec) W + b</c>, bit for bit; the gradients are the same
    /// formulas, but b_dec's is <c>−(Σₙ ∂L/∂pre) W_encᵀ</c>, one [d_sae]·[d_sae, d_in] product, instead of autograd's gradient of
    /// the whole [n, d_in] input (an n·d_sae·d_in matmul: a sixth of an SAE training step's FLOPs).
    /// </summary>
    (Tensor SaeIn, Tensor? BDecShift) EncoderInput(Tensor x, bool forTraining)
    {
        CheckInput(x);
        var sae_in = x.dtype == Cfg.DType ? x : x.to_type(Cfg.DType);
        sae_in = Hook("hook_sae_input", sae_in);
        if (ScalingFactor is { } s) sae_in = sae_in * s;
        if (!Cfg.ApplyBDecToInput) return (sae_in, null);
        if (forTraining && b_dec.requires_grad && is_grad_enabled() && !sae_in.requires_grad)
        {
            var bDec = b_dec.detach();
            return (sae_in - bDec, bDec - b_dec);
        }
        return (sae_in - b_dec, null);
    }

    /// <summary>The encoder's <c>sae_in W + b</c>, with b_dec's gradient path from <see cref="EncoderInput"/> folded into the bias.</summary>
    static Tensor EncoderAffine(Tensor sae_in, Tensor w, Tensor b, Tensor? bDecShift) =>
        Affine(sae_in, w, bDecShift is null ? b : b + bDecShift.matmul(w.detach()));

    void CheckInput(Tensor x)
    {
        if (x.dim() < 1 || x.shape[^1] != Cfg.DIn)
            throw new ArgumentException($"SAE input has shape [{string.Join(", ", x.shape)}] but the SAE reads d_in = {Cfg.DIn} (last dimension){(Cfg.HookName is null ? "" : $" from '{Cfg.HookName}'")}; pass activations [..., {Cfg.DIn}] (flatten [.., n_heads, d_head] first).");
    }

    /// <summary>x <c>[..., d_in]</c> → feature activations <c>[..., d_sae]</c> (SAELens' <c>encode</c>).</summary>
    public Tensor Encode(Tensor x) => EncodeWithHiddenPre(x).FeatureActs;

    /// <summary>Encodes and also returns the pre-activations the training losses need (SAELens' <c>encode_with_hidden_pre</c>).</summary>
    public SaeEncoding EncodeWithHiddenPre(Tensor x) => EncodeWithHiddenPre(x, hiddenPreNeeded: true);

    /// <summary>
    /// <see cref="EncodeWithHiddenPre(Tensor)"/>; with <paramref name="hiddenPreNeeded"/> false (the standard SAE's training loss,
    /// which never reads the pre-activations) and no hook on <c>hook_sae_acts_pre</c>, the ReLU runs in place on the encoder's
    /// output, saving one [n, d_sae] tensor per step, and <see cref="SaeEncoding.HiddenPre"/> is the activations.
    /// </summary>
    internal SaeEncoding EncodeWithHiddenPre(Tensor x, bool hiddenPreNeeded)
    {
        var (sae_in, shift) = EncoderInput(x, forTraining: true);
        switch (Cfg.Architecture)
        {
            case SaeArchitecture.Gated:
            {
                var gatePre = EncoderAffine(sae_in, W_enc, b_gate!, shift);
                var active = gatePre.gt(0).to_type(gatePre.dtype);
                var magPre = Hook("hook_sae_acts_pre", EncoderAffine(sae_in, W_enc * r_mag!.exp(), b_mag!, shift));
                var acts = Hook("hook_sae_acts_post", active * nn.functional.relu(magPre));
                return new SaeEncoding(acts, magPre, gatePre);
            }
            case SaeArchitecture.JumpReLU:
            {
                var pre = Hook("hook_sae_acts_pre", EncoderAffine(sae_in, W_enc, b_enc!, shift));
                return new SaeEncoding(Hook("hook_sae_acts_post", JumpReLU(pre, threshold!, Cfg.JumpReLUBandwidth)), pre);
            }
            case SaeArchitecture.TopK:
            case SaeArchitecture.BatchTopK:
            {
                var pre = Hook("hook_sae_acts_pre", EncoderAffine(sae_in, W_enc, b_enc!, shift));
                if (Cfg.RescaleActsByDecoderNorm) pre = pre * DecoderNorms();
                Tensor acts;
                if (Cfg.Architecture == SaeArchitecture.TopK) acts = TopK(pre, (int)Cfg.K);
                else if (training) acts = BatchTopK(pre, Cfg.K);
                else acts = nn.functional.relu(pre) * pre.gt(topk_threshold!.to_type(pre.dtype)).to_type(pre.dtype);
                return new SaeEncoding(Hook("hook_sae_acts_post", acts), pre);
            }
            default:
            {
                var pre = Hook("hook_sae_acts_pre", EncoderAffine(sae_in, W_enc, b_enc!, shift));
                if (!hiddenPreNeeded && (_hooksOff || !_hookPoints["hook_sae_acts_pre"].HasHooks))
                {
                    var inPlace = Hook("hook_sae_acts_post", pre.relu_());   // addmm's backward does not read its output
                    return new SaeEncoding(inPlace, inPlace);
                }
                return new SaeEncoding(Hook("hook_sae_acts_post", nn.functional.relu(pre)), pre);
            }
        }
    }

    /// <summary>Feature activations <c>[..., d_sae]</c> → reconstruction <c>[..., d_in]</c> (SAELens' <c>decode</c>:
    /// <c>a W_dec + b_dec</c>, then <c>hook_sae_recons</c>, then undoing <see cref="ScalingFactor"/>).</summary>
    public Tensor Decode(Tensor featureActs)
    {
        if (featureActs.dim() < 1 || featureActs.shape[^1] != Cfg.DSae)
            throw new ArgumentException($"Feature activations have shape [{string.Join(", ", featureActs.shape)}] but the SAE has d_sae = {Cfg.DSae}; pass [..., {Cfg.DSae}] (the output of Encode).");
        var recon = DecodeScaled(featureActs);
        return ScalingFactor is { } s ? recon / s : recon;
    }

    /// <summary>Decode without undoing <see cref="ScalingFactor"/>: the reconstruction in the scaled space the training losses use.</summary>
    internal Tensor DecodeScaled(Tensor featureActs)
    {
        var a = Cfg.RescaleActsByDecoderNorm && Cfg.Architecture is SaeArchitecture.TopK or SaeArchitecture.BatchTopK
            ? featureActs / DecoderNorms() : featureActs;
        return Hook("hook_sae_recons", Affine(a, W_dec, b_dec));
    }

    /// <summary>
    /// Reconstruction of x (SAELens' <c>forward</c>): decode(encode(x)); with <see cref="UseErrorTerm"/>, plus
    /// <c>hook_sae_error</c>(x − clean reconstruction), so the output is x itself unless hooks edited the features.
    /// </summary>
    public override Tensor forward(Tensor x)
    {
        var output = Decode(Encode(x));
        if (UseErrorTerm)
        {
            Tensor error;
            using (no_grad())
            {
                bool was = _hooksOff;
                _hooksOff = true;
                try { error = x.to_type(output.dtype) - Decode(Encode(x)); }
                finally { _hooksOff = was; }
            }
            output = output + Hook("hook_sae_error", error);
        }
        return Hook("hook_sae_output", output);
    }

    /// <summary><c>x W + b</c> over any leading dimensions, as one <c>addmm</c> on the flattened rows.</summary>
    static Tensor Affine(Tensor x, Tensor w, Tensor b)
    {
        if (x.dim() == 2) return addmm(b, x, w, 1, 1);
        var shape = x.shape;
        var outShape = shape.ToArray();
        outShape[^1] = w.shape[1];
        return addmm(b, x.reshape(-1, shape[^1]), w, 1, 1).view(outShape);
    }

    /// <summary>SAELens' <c>TopK</c>: the k largest entries of each row, ReLU'd, zeros elsewhere.</summary>
    public static Tensor TopK(Tensor pre, int k)
    {
        var (values, indices) = pre.topk(k, dim: -1, largest: true, sorted: false);
        return zeros_like(pre).scatter(-1, indices, nn.functional.relu(values));
    }

    /// <summary>SAELens' <c>BatchTopK</c>: ReLU, then the ⌊k·rows⌋ largest entries of the whole batch (all leading dimensions), zeros elsewhere.</summary>
    public static Tensor BatchTopK(Tensor pre, double k)
    {
        var acts = nn.functional.relu(pre);
        var flat = acts.flatten();
        long rows = pre.numel() / pre.shape[^1];
        long keep = Math.Min(flat.numel(), (long)(k * rows));
        var (values, indices) = flat.topk((int)keep, dim: -1, largest: true, sorted: false);
        return zeros_like(flat).scatter(-1, indices, values).view(pre.shape);
    }

    /// <summary>
    /// JumpReLU: <c>ReLU(x)·H(x − θ)</c>. Gradients (Rajamanoharan et al. 2024, SAELens' <c>JumpReLU.backward</c>): to x,
    /// H(x − θ) (no straight-through estimator); to θ, the pseudo-derivative <c>−(θ/ε)·K((x − θ)/ε)</c> per element with the
    /// rectangle kernel K(u) = 1 for −½ &lt; u &lt; ½, summed over the batch.
    /// </summary>
    public static Tensor JumpReLU(Tensor x, Tensor theta, double bandwidth)
    {
        var mask = x.gt(theta).to_type(x.dtype);
        var y = nn.functional.relu(x) * mask;
        if (!theta.requires_grad || !is_grad_enabled()) return y;
        // Surrogate with value 0 whose gradient to θ is the pseudo-derivative: s = −(θ₀/ε)·K·θ, added as s − s.detach().
        Tensor s;
        using (no_grad()) s = Rectangle((x - theta) / bandwidth) * (-theta / bandwidth);
        var surrogate = s * theta;
        return y + (surrogate - surrogate.detach());
    }

    /// <summary>
    /// The Heaviside step H(x − θ) with SAELens' <c>Step</c> pseudo-derivative: no gradient to x, <c>−(1/ε)·K((x − θ)/ε)</c> to θ.
    /// Summed over features it is the L0 norm that JumpReLU training penalizes.
    /// </summary>
    public static Tensor Step(Tensor x, Tensor theta, double bandwidth)
    {
        Tensor h;
        using (no_grad()) h = x.gt(theta).to_type(x.dtype);
        if (!theta.requires_grad || !is_grad_enabled()) return h;
        Tensor k;
        using (no_grad()) k = Rectangle((x.detach() - theta.detach()) / bandwidth) * (-1.0 / bandwidth);
        var surrogate = k * theta;
        return h + (surrogate - surrogate.detach());
    }

    /// <summary>The rectangle kernel: 1 where −½ &lt; u &lt; ½, else 0 (SAELens' <c>rectangle</c>).</summary>
    public static Tensor Rectangle(Tensor u) => u.gt(-0.5).logical_and(u.lt(0.5)).to_type(u.dtype);

    /// <summary>Feature i's decoder direction <c>W_dec[i]</c> <c>[d_in]</c> (a view without gradient).</summary>
    public Tensor FeatureDirection(int feature)
    {
        if (feature < 0 || feature >= Cfg.DSae)
            throw new ArgumentOutOfRangeException(nameof(feature), $"Feature {feature} does not exist; this SAE has d_sae = {Cfg.DSae} features (0..{Cfg.DSae - 1}).");
        return W_dec.detach()[feature];
    }

    /// <summary>
    /// SAELens' <c>fold_W_dec_norm</c>: scales every decoder row to unit norm and the encoder (columns, b_enc, JumpReLU
    /// threshold; gated b_gate and b_mag) by the same norms, leaving the SAE's function unchanged (for standard, gated and
    /// JumpReLU; for TopK only when it rescales by decoder norms, as in SAELens).
    /// </summary>
    public void FoldWDecNorm()
    {
        if (Cfg.Architecture is SaeArchitecture.TopK or SaeArchitecture.BatchTopK && !Cfg.RescaleActsByDecoderNorm)
            throw new InvalidOperationException("Folding decoder norms would change which features a TopK SAE keeps; only fold when SaeConfig.RescaleActsByDecoderNorm is true (as SAELens).");
        using var _ = no_grad();
        using var norms = DecoderNorms();
        W_dec.div_(norms.unsqueeze(1));
        W_enc.mul_(norms.unsqueeze(0));
        b_enc?.mul_(norms);
        threshold?.mul_(norms);
        b_gate?.mul_(norms);
        b_mag?.mul_(norms);
        if (Cfg.Architecture is SaeArchitecture.TopK or SaeArchitecture.BatchTopK) { /* acts already rescaled: unit norms make the rescale a no-op */ }
    }

    /// <summary>
    /// Estimates <see cref="ScalingFactor"/> = √d_in / mean ‖x‖ over <paramref name="activations"/> <c>[..., d_in]</c>
    /// (SAELens' <c>ActivationScaler.estimate_scaling_factor</c>) and returns it.
    /// </summary>
    public double EstimateScalingFactor(Tensor activations)
    {
        CheckInput(activations);
        using var scope = NewDisposeScope();
        double meanNorm = activations.to_type(ScalarType.Float64).pow(2).sum(-1).sqrt().mean().item<double>();
        if (!(meanNorm > 0)) throw new ArgumentException("The activations are all zero; estimate the scaling factor on real activations.");
        ScalingFactor = Math.Sqrt(Cfg.DIn) / meanNorm;
        return ScalingFactor.Value;
    }

    /// <summary>
    /// SAELens' <c>fold_activation_norm_scaling_factor</c>: W_enc ×= s, W_dec /= s, b_dec /= s, then
    /// <see cref="ScalingFactor"/> = null and <c>normalize_activations</c> = none; the SAE then reads raw activations.
    /// </summary>
    public void FoldActivationNormScalingFactor()
    {
        if (ScalingFactor is not { } s) return;
        using (no_grad())
        {
            W_enc.mul_(s);
            W_dec.div_(s);
            b_dec.div_(s);
        }
        ScalingFactor = null;
        Cfg = Cfg with { NormalizeActivations = SaeNormalization.None };
    }

    /// <summary>
    /// True once b_dec holds its initial value from data (<see cref="InitializeBDec"/>) or from a file (<see cref="Load"/>);
    /// <see cref="SaeTrainingObjective"/> then leaves it alone.
    /// </summary>
    public bool BDecInitialized { get; private set; }

    /// <summary>
    /// Sets b_dec from a sample of training activations <c>[n, d_in]</c> as <see cref="SaeConfig.BDecInitMethod"/> says
    /// (SAELens' <c>b_dec_init_method</c>): zeros; the mean; or the geometric median (<see cref="GeometricMedian"/>, 100 Weiszfeld
    /// iterations as SAELens). The activations are scaled by <see cref="ScalingFactor"/> first (b_dec lives in the SAE's input space).
    /// SAELens uses its activation store's whole buffer; pass a few thousand rows for a stable estimate.
    /// </summary>
    public void InitializeBDec(Tensor activations)
    {
        ArgumentNullException.ThrowIfNull(activations);
        CheckInput(activations);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var x = activations.reshape(-1, Cfg.DIn).to_type(ScalarType.Float64);
        if (x.shape[0] == 0) throw new ArgumentException("InitializeBDec got no rows; pass a sample of training activations [n, d_in].", nameof(activations));
        if (ScalingFactor is { } s) x = x * s;
        var value = Cfg.BDecInitMethod switch
        {
            SaeBDecInit.Zeros => zeros(Cfg.DIn, dtype: ScalarType.Float64),
            SaeBDecInit.Mean => x.mean(new long[] { 0 }),
            _ => GeometricMedian(x),
        };
        b_dec.copy_(value.to_type(b_dec.dtype));
        BDecInitialized = true;
    }

    /// <summary>
    /// The geometric median of <paramref name="points"/> <c>[n, d]</c>: the point m minimizing Σᵢ ‖pᵢ − m‖. Weiszfeld's
    /// algorithm as SAELens' <c>compute_geometric_median</c>: start at the mean; repeat m ← Σ wᵢpᵢ / Σ wᵢ with
    /// wᵢ = 1 / max(‖pᵢ − m‖, <paramref name="eps"/>) until the objective improves by at most <paramref name="ftol"/> of itself
    /// or <paramref name="maxIter"/> iterations. Computed in float64; returns <c>[d]</c> in the points' dtype.
    /// </summary>
    public static Tensor GeometricMedian(Tensor points, int maxIter = 100, double eps = 1e-6, double ftol = 1e-20)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.dim() != 2 || points.shape[0] == 0)
            throw new ArgumentException($"GeometricMedian takes points [n, d] with n ≥ 1, got [{string.Join(", ", points.shape)}].", nameof(points));
        if (maxIter < 0 || !(eps > 0)) throw new ArgumentException("GeometricMedian needs maxIter ≥ 0 and eps > 0.");
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var p = points.to_type(ScalarType.Float64);
        var median = p.mean(new long[] { 0 });
        double Objective(Tensor m) => (p - m).pow(2).sum(1).sqrt().sum().item<double>();
        double obj = Objective(median);
        for (int it = 0; it < maxIter; it++)
        {
            var w = (p - median).pow(2).sum(1).sqrt().clamp_min(eps).reciprocal();
            median = (p * w.unsqueeze(1)).sum(new long[] { 0 }) / w.sum();   // not sum(0): a literal 0 binds to sum(ScalarType)
            double prev = obj;
            obj = Objective(median);
            if (Math.Abs(prev - obj) <= ftol * obj) break;
        }
        return median.to_type(points.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>BatchTopK: moves the global threshold towards the smallest positive activation of the batch
    /// (θ ← (1 − lr)·θ + lr·min positive, SAELens' <c>update_topk_threshold</c>).</summary>
    public void UpdateTopKThreshold(Tensor featureActs)
    {
        if (topk_threshold is null) return;
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var acts = featureActs.detach();
        var positive = acts.gt(0);
        if (!positive.any().item<bool>()) return;
        var minPositive = acts.masked_select(positive).min().to_type(ScalarType.Float64);
        topk_threshold.mul_(1 - Cfg.TopKThresholdLr).add_(minPositive * Cfg.TopKThresholdLr);
    }
}
