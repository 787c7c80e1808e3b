using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>
/// Shape of a <see cref="ToyModel"/> (Elhage et al. 2022, <i>Toy Models of Superposition</i>; ARENA 1.3.1's <c>ToyModelConfig</c>).
/// </summary>
/// <param name="NFeatures">n: input features (ARENA's <c>n_features</c>).</param>
/// <param name="NHidden">m: hidden dimensions, usually fewer than n (ARENA's <c>d_hidden</c>).</param>
/// <param name="NInstances">Independent models trained side by side in one set of batched tensors (ARENA's <c>n_inst</c>),
/// each with its own feature probability, so one run sweeps sparsity.</param>
public sealed record ToyModelConfig(int NFeatures = 5, int NHidden = 2, int NInstances = 1)
{
    /// <summary>Throws a one-line error naming the field and the fix when a size is not positive.</summary>
    public void Validate()
    {
        if (NFeatures < 1) throw new ArgumentException($"ToyModelConfig.NFeatures is {NFeatures}; set it to 1 or more (the number of input features n).");
        if (NHidden < 1) throw new ArgumentException($"ToyModelConfig.NHidden is {NHidden}; set it to 1 or more (the hidden dimension m).");
        if (NInstances < 1) throw new ArgumentException($"ToyModelConfig.NInstances is {NInstances}; set it to 1 or more (models trained side by side).");
    }
}

/// <summary>
/// The toy model of superposition: n features compressed into m &lt; n dimensions and read back with the transpose,
/// <c>x̂ = ReLU(WᵀW x + b)</c>, for <see cref="ToyModelConfig.NInstances"/> independent models at once
/// (<c>W</c> is <c>[instances, m, n]</c>, <c>b_final</c> is <c>[instances, n]</c>).
/// <para>
/// Inputs are synthetic (<see cref="GenerateBatch"/>): each feature is present with probability p (its instance's
/// <see cref="FeatureProbability"/>, so sparsity S = 1 − p) and then uniform in [0, 1]. The loss
/// (<see cref="ToyModelObjective"/>) weights each feature's squared error by its <see cref="Importance"/>. Dense inputs
/// make the model keep the m most important features (orthogonal, as PCA would); sparse inputs let it pack more than m
/// features into the m dimensions, in superposition, tolerating their interference because two features are rarely
/// active together.
/// </para>
/// </summary>
public sealed class ToyModel : nn.Module<Tensor, Tensor>
{
    /// <summary>The embedding <c>[instances, m, n]</c>; column <c>W[i, :, f]</c> is feature f's direction in instance i.</summary>
    public readonly Parameter W;
    /// <summary>The output bias <c>[instances, n]</c>.</summary>
    public readonly Parameter b_final;

    /// <summary>
    /// Builds the model. <paramref name="featureProbability"/> is p per instance (<c>[instances]</c>) or per instance and
    /// feature (<c>[instances, n]</c>); <paramref name="importance"/> is per feature (<c>[n]</c>) or per instance and feature
    /// (<c>[instances, n]</c>). Defaults: p = 1 (dense) and importance 1. W is initialised from <paramref name="seed"/> as
    /// PyTorch's <c>xavier_normal_</c> on the <c>[instances, m, n]</c> tensor (std √(2 / (m·n + instances·n)), as in ARENA), b_final at 0.
    /// </summary>
    public ToyModel(ToyModelConfig config, Tensor? featureProbability = null, Tensor? importance = null, int seed = 42) : base("ToyModel")
    {
        TorchRuntime.EnsureLoaded();
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        int k = config.NInstances, n = config.NFeatures, m = config.NHidden;
        FeatureProbability = PerInstanceFeature(featureProbability, "featureProbability", vectorIsPerInstance: true, k, n);
        Importance = PerInstanceFeature(importance, "importance", vectorIsPerInstance: false, k, n);
        using (var pmin = FeatureProbability.min()) using (var pmax = FeatureProbability.max())
        {
            double lo = pmin.item<float>(), hi = pmax.item<float>();
            if (!(lo > 0 && hi <= 1))
                throw new ArgumentException($"featureProbability has values in [{lo}, {hi}]; every feature probability p must lie in (0, 1] (p = 1 − sparsity).");
        }
        using (var imin = Importance.min())
            if (!(imin.item<float>() >= 0)) throw new ArgumentException("importance has a negative (or NaN) entry; importances weight squared errors and must be ≥ 0.");
        var gen = new Generator((ulong)seed);
        // PyTorch's xavier_normal_ on the [instances, m, n] tensor, as ARENA initialises it: fan_in = m·n, fan_out = instances·n.
        // The small start lets the most useful features grow first (a larger per-instance Xavier start left dense instances
        // in a local optimum sharing two directions among four features).
        double std = Math.Sqrt(2.0 / ((double)m * n + (double)k * n));
        W = nn.Parameter(torch.randn(new long[] { k, m, n }, generator: gen) * std);
        b_final = nn.Parameter(torch.zeros(k, n));
        RegisterComponents();
    }

    // featureProbability as a vector is one p per instance; importance as a vector is one weight per feature.
    static Tensor PerInstanceFeature(Tensor? t, string name, bool vectorIsPerInstance, int k, int n)
    {
        if (t is null) return torch.ones(k, n);
        var f = t.detach().to_type(ScalarType.Float32).cpu();
        if (f.dim() == 0) return f.expand(k, n).contiguous();
        if (f.dim() == 1 && vectorIsPerInstance && f.shape[0] == k) return f.unsqueeze(1).expand(k, n).contiguous();
        if (f.dim() == 1 && !vectorIsPerInstance && f.shape[0] == n) return f.unsqueeze(0).expand(k, n).contiguous();
        if (f.dim() == 2 && f.shape[0] == k && f.shape[1] == n) return f.contiguous();
        throw new ArgumentException($"{name} has shape [{string.Join(", ", f.shape)}]; pass " + (vectorIsPerInstance ? $"[instances] = [{k}]" : $"[features] = [{n}]") + $", [instances, features] = [{k}, {n}] or a scalar.");
    }

    /// <summary>The sizes.</summary>
    public ToyModelConfig Config { get; }
    /// <summary>Probability p that each feature is present, <c>[instances, n]</c> (sparsity S = 1 − p).</summary>
    public Tensor FeatureProbability { get; }
    /// <summary>Weight of each feature's squared error in the loss, <c>[instances, n]</c>.</summary>
    public Tensor Importance { get; }

    /// <summary>x <c>[batch, instances, n]</c> → x̂ = ReLU(WᵀW x + b_final), same shape.</summary>
    public override Tensor forward(Tensor x)
    {
        CheckInput(x);
        using var scope = torch.NewDisposeScope();
        var h = torch.einsum("imn,bin->bim", W, x);                // [batch, instances, m]
        var back = torch.einsum("imn,bim->bin", W, h);             // [batch, instances, n]
        return torch.nn.functional.relu(back + b_final).MoveToOuterDisposeScope();
    }

    /// <summary>The hidden activations h = W x, <c>[batch, instances, m]</c>.</summary>
    public Tensor Hidden(Tensor x)
    {
        CheckInput(x);
        return torch.einsum("imn,bin->bim", W, x);
    }

    void CheckInput(Tensor x)
    {
        if (x.dim() != 3 || x.shape[1] != Config.NInstances || x.shape[2] != Config.NFeatures)
            throw new ArgumentException($"ToyModel input has shape [{string.Join(", ", x.shape)}]; pass [batch, instances, features] = [batch, {Config.NInstances}, {Config.NFeatures}] (e.g. from GenerateBatch).");
    }

    /// <summary>
    /// Synthetic inputs <c>[batch, instances, n]</c>: each feature is present with its probability p and then uniform in
    /// [0, 1], else 0 (ARENA's <c>generate_batch</c>). Draws from <paramref name="generator"/>, or torch's global generator
    /// (seeded by the <see cref="Trainer{TBatch}"/> at the start of training).
    /// </summary>
    public Tensor GenerateBatch(int batch, Generator? generator = null)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), $"GenerateBatch batch is {batch}; ask for 1 or more rows.");
        using var scope = torch.NewDisposeScope();
        var shape = new long[] { batch, Config.NInstances, Config.NFeatures };
        var device = W.device;
        var values = torch.rand(shape, generator: generator).to(device);
        var present = torch.rand(shape, generator: generator).to(device) < FeatureProbability.to(device);
        return torch.where(present, values, torch.zeros_like(values)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The importance-weighted MSE of ARENA 1.3.1: per instance the mean over batch and features of
    /// <c>importance · (x − x̂)²</c>, summed over instances (instances are independent, so each gets its own gradient).
    /// </summary>
    public Tensor Loss(Tensor x, Tensor xHat) => PerInstanceLoss(x, xHat).sum();

    /// <summary>The loss of each instance, <c>[instances]</c>: mean over batch and features of <c>importance · (x − x̂)²</c>.</summary>
    public Tensor PerInstanceLoss(Tensor x, Tensor xHat)
    {
        using var scope = torch.NewDisposeScope();
        var err = Importance.to(x.device) * (x - xHat).pow(2);      // [batch, instances, n]
        return err.mean(new long[] { 0, 2 }).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Trains a <see cref="ToyModel"/> through <see cref="Trainer{TBatch}"/>: a batch is the input <c>[batch, instances, n]</c>
/// (e.g. <see cref="ToyModel.GenerateBatch"/>); the loss is <see cref="ToyModel.Loss"/>, with each instance's loss
/// reported as the metric <c>loss/instance_{i}</c>.
/// <code>
/// var model = new ToyModel(new ToyModelConfig(5, 2, NInstances: 8), featureProbability: probs);
/// var trainer = new Trainer&lt;Tensor&gt;(new ToyModelObjective(model), new TrainerConfig { MaxSteps = 3000, BatchSize = 1024, WeightDecay = 0 });
/// trainer.Train((step, rng) =&gt; model.GenerateBatch(1024));
/// </code>
/// </summary>
public sealed class ToyModelObjective : ITrainingObjective<Tensor>
{
    /// <summary>Wraps the model.</summary>
    public ToyModelObjective(ToyModel model) => Model = model ?? throw new ArgumentNullException(nameof(model));

    /// <summary>The toy model.</summary>
    public ToyModel Model { get; }
    nn.Module ITrainingObjective<Tensor>.Model => Model;

    /// <summary>Report each instance's loss as a metric (<c>loss/instance_{i}</c>). Default false (one read per instance per step).</summary>
    public bool ReportPerInstanceLoss { get; init; }

    /// <inheritdoc/>
    public ObjectiveOutput Compute(Tensor batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var perInstance = Model.PerInstanceLoss(batch, Model.call(batch));
        Dictionary<string, Tensor>? metrics = null;
        if (ReportPerInstanceLoss)
        {
            metrics = new Dictionary<string, Tensor>();
            for (int i = 0; i < Model.Config.NInstances; i++) metrics[$"loss/instance_{i}"] = perInstance[i].detach();
        }
        return new ObjectiveOutput(perInstance.sum(), metrics, Weight: torch.tensor((double)batch.shape[0]));
    }
}

/// <summary>
/// Analyses of a toy model's embedding <c>W</c> (<c>[instances, m, n]</c>, or <c>[m, n]</c> for one instance; feature i
/// is column <c>W_i</c>), as in Elhage et al. 2022. All return float64 CPU tensors with a leading instance dimension.
/// </summary>
public static class Superposition
{
    const double Eps = 1e-12;

    static Tensor As3D(Tensor w, string what)
    {
        if (w.dim() == 2) return w.detach().to_type(ScalarType.Float64).cpu().unsqueeze(0);
        if (w.dim() == 3) return w.detach().to_type(ScalarType.Float64).cpu();
        throw new ArgumentException($"{what} needs W of shape [instances, m, n] or [m, n] (features as columns); got [{string.Join(", ", w.shape)}].");
    }

    /// <summary>WᵀW, <c>[instances, n, n]</c>: entry (i, j) is W_i·W_j. The diagonal holds the squared feature norms; off-diagonal
    /// entries are interference between features.</summary>
    public static Tensor Gram(Tensor w)
    {
        using var scope = torch.NewDisposeScope();
        var x = As3D(w, nameof(Gram));
        return torch.einsum("imf,img->ifg", x, x).MoveToOuterDisposeScope();
    }

    /// <summary>‖W_i‖, <c>[instances, n]</c>: about 1 for a represented feature, about 0 for an ignored one.</summary>
    public static Tensor FeatureNorms(Tensor w)
    {
        using var scope = torch.NewDisposeScope();
        return As3D(w, nameof(FeatureNorms)).norm(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The superposition measure of each feature, Σ_{j≠i} (Ŵ_i·W_j)², <c>[instances, n]</c>, where Ŵ_i = W_i/‖W_i‖ (0 for a
    /// zero column): how much of the other features projects onto feature i's direction. 0 when W_i is orthogonal to every
    /// other column.
    /// </summary>
    public static Tensor SuperpositionMeasure(Tensor w)
    {
        using var scope = torch.NewDisposeScope();
        var x = As3D(w, nameof(SuperpositionMeasure));
        var proj = Projections(x);                                                 // [inst, i, j] = Ŵ_i·W_j
        var sq = proj.pow(2);
        var diag = sq.diagonal(0, 1, 2);                                           // (Ŵ_i·W_i)² = ‖W_i‖²
        return (sq.sum(2) - diag).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Feature dimensionality D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)² (the sum includes j = i), <c>[instances, n]</c>: the fraction of a
    /// hidden dimension feature i gets. 1 for a feature with its own orthogonal dimension, 1/2 for each of an antipodal pair,
    /// 2/5 for each of a pentagon's five features, 0 for an unrepresented (zero) feature.
    /// </summary>
    public static Tensor FeatureDimensionality(Tensor w)
    {
        using var scope = torch.NewDisposeScope();
        var x = As3D(w, nameof(FeatureDimensionality));
        var normSq = x.pow(2).sum(1);                                              // [inst, n]
        var denom = Projections(x).pow(2).sum(2);                                  // [inst, n]
        return torch.where(normSq > Eps, normSq / denom.clamp_min(Eps), torch.zeros_like(normSq)).MoveToOuterDisposeScope();
    }

    /// <summary>Dimensions per feature of each instance, m / ‖W‖_F², <c>[instances]</c> (Elhage et al.'s "dimensions per feature";
    /// its inverse counts the features the model effectively represents).</summary>
    public static Tensor DimensionsPerFeature(Tensor w)
    {
        using var scope = torch.NewDisposeScope();
        var x = As3D(w, nameof(DimensionsPerFeature));
        return ((double)x.shape[1] / x.pow(2).sum(new long[] { 1, 2 }).clamp_min(Eps)).MoveToOuterDisposeScope();
    }

    /// <summary>How many features each instance represents: columns with ‖W_i‖ above <paramref name="threshold"/> (default 0.5).</summary>
    public static int[] RepresentedFeatureCounts(Tensor w, double threshold = 0.5)
    {
        using var norms = FeatureNorms(w);
        int k = (int)norms.shape[0], n = (int)norms.shape[1];
        var v = norms.data<double>().ToArray();
        return Enumerable.Range(0, k).Select(i => Enumerable.Range(0, n).Count(f => v[i * n + f] > threshold)).ToArray();
    }

    /// <summary>
    /// Angles (degrees, in [0, 360)) of the 2-D columns of one instance's W (needs m = 2), sorted ascending, for the features
    /// with ‖W_i‖ above <paramref name="minNorm"/>. Five equally spaced angles (72° apart) are a pentagon.
    /// </summary>
    public static double[] SortedAngles2D(Tensor w, int instance = 0, double minNorm = 0.5)
    {
        var x = As3D(w, nameof(SortedAngles2D));
        using (x)
        {
            if (x.shape[1] != 2) throw new ArgumentException($"SortedAngles2D needs m = 2 hidden dimensions; W has m = {x.shape[1]}.");
            if (instance < 0 || instance >= x.shape[0]) throw new ArgumentOutOfRangeException(nameof(instance), $"instance {instance} is outside 0..{x.shape[0] - 1}.");
            int n = (int)x.shape[2];
            var a = x[instance].contiguous().data<double>().ToArray();           // row 0: x coords, row 1: y coords
            return Enumerable.Range(0, n)
                .Where(f => Math.Sqrt(a[f] * a[f] + a[n + f] * a[n + f]) > minNorm)
                .Select(f => (Math.Atan2(a[n + f], a[f]) * 180 / Math.PI + 360) % 360)
                .OrderBy(d => d).ToArray();
        }
    }

    /// <summary>Gaps (degrees) between consecutive sorted angles, including the wrap-around gap; all 72° for a regular pentagon.</summary>
    public static double[] AngleGaps(IReadOnlyList<double> sortedAngles)
    {
        if (sortedAngles.Count == 0) return Array.Empty<double>();
        return Enumerable.Range(0, sortedAngles.Count)
            .Select(i => i + 1 < sortedAngles.Count ? sortedAngles[i + 1] - sortedAngles[i] : sortedAngles[0] + 360 - sortedAngles[i])
            .ToArray();
    }

    // [inst, i, j] = Ŵ_i · W_j
    static Tensor Projections(Tensor x)
    {
        var norms = x.norm(1, keepdim: true).clamp_min(Eps);                       // [inst, 1, n]
        var unit = x / norms;
        return torch.einsum("imf,img->ifg", unit, x);
    }
}
