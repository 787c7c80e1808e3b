using SafetyNotebooks.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>
/// Training hyper-parameters of an SAE that are not the trainer's (SAELens' training-config names in .NET casing).
/// The optimizer, learning rate, warmup/decay and clipping are <see cref="TrainerConfig"/>'s; see <see cref="SaeTrainingObjective.SaeLensTrainerConfig"/>.
/// </summary>
public sealed record SaeTrainingOptions
{
    /// <summary>Standard/gated: final L1 coefficient (<c>l1_coefficient</c>). Default 1.</summary>
    public double L1Coefficient { get; init; } = 1.0;
    /// <summary>Standard: the p of the sparsity norm (<c>lp_norm</c>). Default 1.</summary>
    public double LpNorm { get; init; } = 1.0;
    /// <summary>Standard/gated: updates over which the L1 coefficient rises linearly from 0 (<c>l1_warm_up_steps</c>). Default 0.</summary>
    public int L1WarmUpSteps { get; init; }
    /// <summary>JumpReLU: final L0 coefficient (<c>l0_coefficient</c>). Default 1.</summary>
    public double L0Coefficient { get; init; } = 1.0;
    /// <summary>JumpReLU: updates over which the L0 coefficient rises linearly from 0 (<c>l0_warm_up_steps</c>). Default 0.</summary>
    public int L0WarmUpSteps { get; init; }
    /// <summary>TopK/BatchTopK: weight of the AuxK loss on dead features (<c>aux_loss_coefficient</c>). Default 1.</summary>
    public double AuxLossCoefficient { get; init; } = 1.0;
    /// <summary>A feature is dead after this many updates without firing (<c>dead_feature_window</c>). Default 1000.</summary>
    public int DeadFeatureWindow { get; init; } = 1000;
    /// <summary>Feature densities are counted over windows of this many updates (<c>feature_sampling_window</c>). Default 2000.</summary>
    public int FeatureSamplingWindow { get; init; } = 2000;
    /// <summary>
    /// Rescale every decoder row to unit norm after each optimizer step. Null (default): on for TopK/BatchTopK SAEs that do not
    /// rescale by decoder norms (their selection would otherwise drift with the norms), off otherwise (standard and JumpReLU
    /// penalties already multiply by the norms, as current SAELens).
    /// </summary>
    public bool? NormalizeDecoder { get; init; }
    /// <summary>
    /// Standard/gated/JumpReLU: every this many updates, re-initialize dead features from inputs drawn with probability ∝ their
    /// squared reconstruction error (Anthropic's "Towards Monosemanticity" resampling; decoder row = the unit input, encoder column =
    /// the same times 0.2 × the mean live encoder norm, bias 0). 0 (default) = off. The optimizer's moments are not reset.
    /// </summary>
    public int ResampleDeadEvery { get; init; }
}

/// <summary>
/// Trains a <see cref="SparseAutoencoder"/> with the library's <see cref="Trainer{TBatch}"/>; a batch is activations
/// <c>[n, d_in]</c>. Loss = SAELens' <c>mse_loss</c> (squared error summed over d_in, mean over rows) + the architecture's terms:
/// standard <c>l1_loss</c> = c·mean‖f(x)·‖W_dec‖‖ₚ; gated <c>l1_loss</c> on ReLU(π_gate) plus <c>auxiliary_reconstruction_loss</c>
/// through the gate path; JumpReLU <c>l0_loss</c> = c·mean Σ H(pre − θ) with the rectangle pseudo-derivative; TopK/BatchTopK
/// <c>auxiliary_reconstruction_loss</c> (AuxK: the top d_in/2 dead latents reconstruct the residual). Coefficients warm up linearly
/// from 0 (SAELens' <c>CoefficientScheduler</c>). Dead features are tracked as SAELens (<c>n_forward_passes_since_fired</c>).
/// Metrics, logged every update in SAELens' wandb keys: <c>losses/mse_loss</c>, <c>losses/l1_loss</c> (or <c>l0_loss</c>,
/// <c>auxiliary_reconstruction_loss</c>), <c>metrics/l0</c>, <c>metrics/explained_variance</c>,
/// <c>metrics/explained_variance_legacy</c>, <c>sparsity/dead_features</c>, <c>sparsity/mean_passes_since_fired</c>,
/// <c>details/l1_coefficient</c> (or <c>l0</c>), <c>metrics/topk_threshold</c> (BatchTopK).
/// <code>
/// var objective = new SaeTrainingObjective(sae, new SaeTrainingOptions { L1Coefficient = 5, L1WarmUpSteps = 100 });
/// var trainer = new Trainer&lt;Tensor&gt;(objective, SaeTrainingObjective.SaeLensTrainerConfig(maxSteps: 2000, learningRate: 3e-4));
/// trainer.Train((step, rng) =&gt; NextActivations(rng));   // [batch, d_in]
/// </code>
/// </summary>
public sealed class SaeTrainingObjective : ITrainingObjective<Tensor>
{
    readonly Tensor _sinceFired;
    Tensor _actFreq;
    long _samplesInWindow;
    Tensor? _lastBatch;

    /// <summary>Creates the objective for <paramref name="sae"/>.</summary>
    public SaeTrainingObjective(SparseAutoencoder sae, SaeTrainingOptions? options = null)
    {
        Sae = sae ?? throw new ArgumentNullException(nameof(sae));
        Options = options ?? new SaeTrainingOptions();
        if (Options.DeadFeatureWindow < 1) throw new ArgumentException($"SaeTrainingOptions.DeadFeatureWindow is {Options.DeadFeatureWindow}; set it to 1 or more updates.");
        if (Options.FeatureSamplingWindow < 1) throw new ArgumentException($"SaeTrainingOptions.FeatureSamplingWindow is {Options.FeatureSamplingWindow}; set it to 1 or more updates.");
        if (Options.L1WarmUpSteps < 0 || Options.L0WarmUpSteps < 0) throw new ArgumentException("SaeTrainingOptions warm-up steps must be 0 or more.");
        if (!(Options.LpNorm > 0)) throw new ArgumentException($"SaeTrainingOptions.LpNorm is {Options.LpNorm}; set a positive p (1 for L1).");
        _sinceFired = zeros(sae.Cfg.DSae, dtype: ScalarType.Float32, device: sae.W_enc.device).DetachFromDisposeScope();
        _actFreq = zeros(sae.Cfg.DSae, dtype: ScalarType.Float32, device: sae.W_enc.device).DetachFromDisposeScope();
    }

    /// <summary>The SAE being trained.</summary>
    public SparseAutoencoder Sae { get; }
    /// <summary>The options.</summary>
    public SaeTrainingOptions Options { get; }
    /// <inheritdoc/>
    public nn.Module Model => Sae;
    /// <summary>Optimizer updates seen (counted in <see cref="AfterOptimizerStep"/>); drives the coefficient warm-ups.</summary>
    public int Step { get; private set; }

    /// <summary>Whether the decoder rows are renormalized after each step (<see cref="SaeTrainingOptions.NormalizeDecoder"/> or the architecture's default).</summary>
    public bool NormalizesDecoder => Options.NormalizeDecoder ??
        (Sae.Cfg.Architecture is SaeArchitecture.TopK or SaeArchitecture.BatchTopK && !Sae.Cfg.RescaleActsByDecoderNorm);

    /// <summary>
    /// A <see cref="TrainerConfig"/> with SAELens' training defaults: Adam (β 0.9, 0.999) without weight decay, constant
    /// learning rate after <paramref name="warmupSteps"/> (SAELens' default scheduler; pass <see cref="LrSchedulerType"/> to decay),
    /// gradient clipping at norm 1.
    /// </summary>
    public static TrainerConfig SaeLensTrainerConfig(int maxSteps, double learningRate = 3e-4, int warmupSteps = 0,
        LrSchedulerType schedule = LrSchedulerType.Constant, int batchSize = 4096) => new()
    {
        MaxSteps = maxSteps,
        LearningRate = learningRate,
        WarmupSteps = warmupSteps,
        LrSchedulerType = schedule,
        Optimizer = TrainerOptimizer.Adam,
        WeightDecay = 0,
        AdamBeta1 = 0.9,
        AdamBeta2 = 0.999,
        MaxGradNorm = 1.0,
        BatchSize = batchSize,
        EvalEvery = 0,
    };

    /// <summary>SAELens' <c>CoefficientScheduler</c>: <c>final · min(step, warm) / warm</c> at update <paramref name="step"/> (0 at the first update), <c>final</c> without warm-up.</summary>
    public static double WarmedUp(double final, int warmUpSteps, int step) =>
        warmUpSteps > 0 ? final * Math.Min(step, warmUpSteps) / warmUpSteps : final;

    /// <summary>The L1 coefficient used at the current update.</summary>
    public double L1Coefficient => WarmedUp(Options.L1Coefficient, Options.L1WarmUpSteps, Step);
    /// <summary>The L0 coefficient used at the current update.</summary>
    public double L0Coefficient => WarmedUp(Options.L0Coefficient, Options.L0WarmUpSteps, Step);

    /// <summary>Updates since each feature last fired <c>[d_sae]</c> (SAELens' <c>n_forward_passes_since_fired</c>).</summary>
    public Tensor StepsSinceFired => _sinceFired;

    /// <summary>Dead features: not fired for more than <see cref="SaeTrainingOptions.DeadFeatureWindow"/> updates (bool <c>[d_sae]</c>).</summary>
    public Tensor DeadFeatures() => _sinceFired.gt(Options.DeadFeatureWindow);

    /// <summary>Fraction of training rows each feature fired on in the current sampling window <c>[d_sae]</c> (SAELens' <c>feature_sparsity</c>).</summary>
    public Tensor FeatureDensity() => _samplesInWindow == 0 ? zeros_like(_actFreq) : _actFreq / _samplesInWindow;

    /// <inheritdoc/>
    public ObjectiveOutput Compute(Tensor batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var cfg = Sae.Cfg;
        if (batch.dim() != 2 || batch.shape[1] != cfg.DIn)
            throw new ArgumentException($"An SAE training batch is activations [n, d_in = {cfg.DIn}], got [{string.Join(", ", batch.shape)}]; flatten [batch, pos, d] with reshape(-1, d).", nameof(batch));
        bool training = Sae.training && is_grad_enabled();
        long n = batch.shape[0];
        var x = batch.dtype == cfg.DType ? batch : batch.to_type(cfg.DType);
        if (training && cfg.BDecInitMethod != SaeBDecInit.Zeros && !Sae.BDecInitialized)
            Sae.InitializeBDec(x);                                              // b_dec_init_method on the first batch, unless set from a sample before
        var sae_in = Sae.ScalingFactor is { } s ? x * s : x;                    // SAELens compares in the scaled space
        Tensor? dead = null;
        if (cfg.Architecture is SaeArchitecture.TopK or SaeArchitecture.BatchTopK)
            dead = DeadFeatures();                                              // before this step's update, as SAELens

        var enc = Sae.EncodeWithHiddenPre(x, hiddenPreNeeded: cfg.Architecture != SaeArchitecture.Standard);
        var acts = enc.FeatureActs;
        var sae_out = Sae.DecodeScaled(acts);
        var mse = nn.functional.mse_loss(sae_out, sae_in, nn.Reduction.Sum) / n;
        var metrics = new Dictionary<string, Tensor> { ["losses/mse_loss"] = mse.detach() };
        Tensor loss = mse;

        switch (cfg.Architecture)
        {
            case SaeArchitecture.Standard:
            {
                double c = L1Coefficient;
                var norms = Sae.DecoderNorms();
                Tensor sparsity = Options.LpNorm == 1.0
                    ? acts.sum(new long[] { 0 }).dot(norms) / n                                // acts ≥ 0: Σ_i |f_i|·‖d_i‖ summed over rows, / n
                    : (acts * norms).abs().pow(Options.LpNorm).sum(-1).pow(1.0 / Options.LpNorm).mean();
                var l1 = sparsity * c;
                loss = loss + l1;
                metrics["losses/l1_loss"] = l1.detach();
                metrics["details/l1_coefficient"] = tensor(c);
                break;
            }
            case SaeArchitecture.Gated:
            {
                double c = L1Coefficient;
                var piGateAct = nn.functional.relu(enc.GatePre!);
                var l1 = (piGateAct.sum(new long[] { 0 }).dot(Sae.DecoderNorms()) / n) * c;
                var viaGate = addmm(Sae.b_dec, piGateAct, Sae.W_dec, 1, 1);
                var aux = nn.functional.mse_loss(viaGate, sae_in, nn.Reduction.Sum) / n;
                loss = loss + l1 + aux;
                metrics["losses/l1_loss"] = l1.detach();
                metrics["losses/auxiliary_reconstruction_loss"] = aux.detach();
                metrics["details/l1_coefficient"] = tensor(c);
                break;
            }
            case SaeArchitecture.JumpReLU:
            {
                double c = L0Coefficient;
                var l0 = SparseAutoencoder.Step(enc.HiddenPre, Sae.threshold!, cfg.JumpReLUBandwidth).sum(-1).mean() * c;
                loss = loss + l0;
                metrics["losses/l0_loss"] = l0.detach();
                metrics["details/l0_coefficient"] = tensor(c);
                break;
            }
            default:
            {
                var aux = AuxKLoss(sae_in, sae_out, enc.HiddenPre, dead!, Options.AuxLossCoefficient);
                loss = loss + aux;
                metrics["losses/auxiliary_reconstruction_loss"] = aux.detach();
                break;
            }
        }

        using (no_grad())
        {
            // One pass over [n, d_sae] for both the per-feature counts and L0 (mean over rows of Σ_features = Σ counts / n).
            var counts = acts.detach().ne(0).sum(0, type: ScalarType.Float32);
            metrics["metrics/l0"] = counts.sum() / n;
            var perTokenL2 = (sae_out.detach() - sae_in).pow(2).sum(-1);
            var totalVariance = (sae_in - sae_in.mean(new long[] { 0 })).pow(2).sum(-1);
            metrics["metrics/explained_variance"] = 1 - perTokenL2.mean() / totalVariance.mean();
            metrics["metrics/explained_variance_legacy"] = (1 - perTokenL2 / totalVariance).mean();
            if (training)
            {
                if ((Step + 1) % Options.FeatureSamplingWindow == 0) { _actFreq.zero_(); _samplesInWindow = 0; }
                _sinceFired.add_(1).masked_fill_(counts.gt(0), 0);
                _actFreq.add_(counts);
                _samplesInWindow += n;
                if (cfg.Architecture == SaeArchitecture.BatchTopK) Sae.UpdateTopKThreshold(acts);
                if (Options.ResampleDeadEvery > 0) _lastBatch = x;
            }
            var deadNow = DeadFeatures();
            metrics["sparsity/dead_features"] = deadNow.sum(type: ScalarType.Float32);
            metrics["sparsity/mean_passes_since_fired"] = _sinceFired.mean();
            if (cfg.Architecture == SaeArchitecture.BatchTopK) metrics["metrics/topk_threshold"] = Sae.topk_threshold!.clone();
        }
        return new ObjectiveOutput(loss, metrics, tensor((double)n, dtype: ScalarType.Float64));
    }

    /// <summary>
    /// SAELens' TopK auxiliary loss (AuxK, Gao et al. 2024 App. B.1, without variance normalization): the k_aux = min(d_in/2,
    /// #dead) dead latents with the largest pre-activations reconstruct the residual <c>sae_in − sae_out</c> (detached) through the
    /// decoder; the loss is <c>coef · min(#dead/(d_in/2), 1) · mean ‖decode(aux acts) − residual‖²</c>, 0 when nothing is dead.
    /// </summary>
    public Tensor AuxKLoss(Tensor sae_in, Tensor sae_out, Tensor hiddenPre, Tensor deadMask, double coefficient)
    {
        long numDead = deadMask.sum().item<long>();
        if (numDead == 0) return zeros(Array.Empty<long>(), dtype: sae_out.dtype, device: sae_out.device);
        var residual = (sae_in - sae_out).detach();
        long kAux = sae_in.shape[^1] / 2;
        double scale = Math.Min((double)numDead / kAux, 1.0);
        kAux = Math.Min(kAux, numDead);
        var auxLatents = where(deadMask.unsqueeze(0), hiddenPre, tensor(double.NegativeInfinity, dtype: hiddenPre.dtype, device: hiddenPre.device));
        var (values, indices) = auxLatents.topk((int)kAux, dim: -1, largest: true, sorted: false);
        var auxActs = zeros_like(hiddenPre).scatter(-1, indices, values);
        var recons = Sae.DecodeScaled(auxActs);
        return (recons - residual).pow(2).sum(-1).mean() * (coefficient * scale);
    }

    /// <inheritdoc/>
    public void AfterOptimizerStep()
    {
        Step++;
        if (NormalizesDecoder)
        {
            using var norms = Sae.W_dec.pow(2).sum(1, keepdim: true).sqrt_().clamp_min_(1e-12);
            Sae.W_dec.div_(norms);
        }
        if (Options.ResampleDeadEvery > 0 && Step % Options.ResampleDeadEvery == 0 && _lastBatch is { } batch &&
            Sae.Cfg.Architecture is not (SaeArchitecture.TopK or SaeArchitecture.BatchTopK))
            ResampleDeadFeatures(batch);
        _lastBatch = null;
    }

    /// <summary>
    /// Re-initializes the dead features from rows of <paramref name="activations"/> <c>[n, d_in]</c> drawn with probability ∝
    /// squared reconstruction error (see <see cref="SaeTrainingOptions.ResampleDeadEvery"/>); returns how many were resampled.
    /// </summary>
    public int ResampleDeadFeatures(Tensor activations)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var dead = DeadFeatures();
        var deadIdx = dead.nonzero().flatten();
        int count = (int)deadIdx.numel();
        if (count == 0) return 0;
        var x = activations.to_type(Sae.Cfg.DType);
        bool was = Sae.training;
        Sae.eval();
        Tensor err;
        try { err = (Sae.Decode(Sae.Encode(x)) - x).pow(2).sum(-1); }
        finally { Sae.train(was); }
        var probs = err.to_type(ScalarType.Float64);
        if (!(probs.sum().item<double>() > 0)) probs = ones_like(probs);
        var rows = multinomial(probs, count, replacement: true);
        var dirs = x.index_select(0, rows);
        dirs = dirs / dirs.pow(2).sum(-1, keepdim: true).sqrt().clamp_min(1e-12);      // [count, d_in]
        var alive = dead.logical_not();
        double encNorm = alive.any().item<bool>()
            ? Sae.W_enc.pow(2).sum(new long[] { 0 }).sqrt().masked_select(alive).mean().item<double>() : 1.0;
        Sae.W_dec.index_copy_(0, deadIdx, dirs);
        Sae.W_enc.index_copy_(1, deadIdx, (dirs * (0.2 * encNorm)).t());
        if (Sae.b_enc is { } be) be.index_fill_(0, deadIdx, 0);
        if (Sae.b_gate is { } bg) bg.index_fill_(0, deadIdx, 0);
        if (Sae.b_mag is { } bm) bm.index_fill_(0, deadIdx, 0);
        _sinceFired.index_fill_(0, deadIdx, 0);
        return count;
    }
}
