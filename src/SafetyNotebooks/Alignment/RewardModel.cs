using SafetyNotebooks.Models;
using SafetyNotebooks.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// A scalar reward model: a <see cref="HookedTransformer"/> body and a linear <c>score</c> head (d_model → 1, no bias,
/// as Hugging Face's <c>AutoModelForSequenceClassification</c> with <c>num_labels=1</c>) reading the final residual at
/// each row's <b>last real token</b>, so left- and right-padded batches give every row the reward it gets alone.
/// The transformer's unembedding is not used.
/// </summary>
public sealed class RewardModel : nn.Module<Tensor, Tensor, Tensor>
{
    readonly HookedTransformer _transformer;
    readonly Linear _score;

    /// <summary>All submodules are registered explicitly; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Wraps <paramref name="transformer"/> (e.g. a copy of the SFT policy) and adds a fresh score head,
    /// initialized normal(0, <see cref="HookedTransformerConfig.EffectiveInitRange"/>) (seeded by <paramref name="seed"/> when given).</summary>
    public RewardModel(HookedTransformer transformer, long? seed = null) : base(nameof(RewardModel))
    {
        _transformer = transformer ?? throw new ArgumentNullException(nameof(transformer));
        var cfg = transformer.Cfg;
        _score = nn.Linear(cfg.DModel, 1, hasBias: false, dtype: cfg.DType);
        using (torch.no_grad())
        {
            var device = transformer.parameters().FirstOrDefault()?.device;
            if (seed is long s) torch.random.manual_seed(s);
            _score.weight!.normal_(0, cfg.EffectiveInitRange);
            if (device is not null) _score.to(device);
        }
        register_module("transformer", _transformer);
        register_module("score", _score);
    }

    /// <summary>The transformer body.</summary>
    public HookedTransformer Transformer => _transformer;
    /// <summary>The score head (weight [1, d_model]).</summary>
    public Linear Score => _score;

    /// <summary>Every parameter except the (unused) unembedding: what a reward-model objective trains.</summary>
    public IEnumerable<Parameter> TrainableParameters() =>
        named_parameters().Where(np => !np.name.StartsWith("transformer.unembed.", StringComparison.Ordinal) && np.parameter.requires_grad).Select(np => np.parameter);

    /// <summary>Rewards <c>[batch]</c> for int64 tokens <c>[batch, pos]</c> with an optional attention mask (1 = real; null = all real).</summary>
    public override Tensor forward(Tensor tokens, Tensor? attentionMask)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        using var scope = torch.NewDisposeScope();
        if (tokens.dim() == 1) tokens = tokens.unsqueeze(0);
        var residual = _transformer.FinalResidual(tokens, attentionMask);                   // [batch, pos, d_model]
        var last = LastRealTokenIndex(attentionMask ?? torch.ones(tokens.shape, dtype: ScalarType.Int64, device: tokens.device));
        var picked = residual.gather(1, last.view(-1, 1, 1).expand(-1, 1, residual.shape[2])).squeeze(1);   // [batch, d_model]
        return _score.forward(picked).squeeze(-1).MoveToOuterDisposeScope();
    }

    /// <summary>Rewards for an unpadded batch.</summary>
    public Tensor forward(Tensor tokens) => forward(tokens, null);

    /// <summary>
    /// The column of each row's last real token <c>[batch]</c> (int64) from an attention mask (1 = real), for left or
    /// right padding alike. A row without real tokens is an error.
    /// </summary>
    public static Tensor LastRealTokenIndex(Tensor attentionMask)
    {
        ArgumentNullException.ThrowIfNull(attentionMask);
        if (attentionMask.dim() != 2)
            throw new ArgumentException($"attentionMask must be [batch, pos], got [{string.Join(", ", attentionMask.shape)}]; pass the batch's AttentionMask.", nameof(attentionMask));
        using var scope = torch.NewDisposeScope();
        var real = attentionMask.ne(0);
        if (!real.any(1).all().item<bool>())
            throw new ArgumentException("A row of the attention mask has no real token, so it has no reward; drop empty rows before scoring.", nameof(attentionMask));
        var positions = torch.arange(attentionMask.shape[1], dtype: ScalarType.Int64, device: attentionMask.device).unsqueeze(0);
        return torch.where(real, positions, torch.full_like(positions, -1)).amax(new long[] { 1 }).MoveToOuterDisposeScope();
    }
}

/// <summary>Hyper-parameters of <see cref="RewardModelObjective"/> (TRL's <c>RewardConfig</c>).</summary>
public sealed record RewardModelConfig
{
    /// <summary>TRL's <c>center_rewards_coefficient</c>: adds <c>c · mean((r_c + r_r)²)</c> to push rewards towards mean zero (recommended 0.01). Null = off.</summary>
    public double? CenterRewardsCoefficient { get; init; }
}

/// <summary>
/// Bradley–Terry reward-model training as TRL's <c>RewardTrainer</c> on <see cref="PreferenceBatch"/>es (chosen rows
/// then rejected rows; prompt + completion, the completion mask unused): loss <see cref="PreferenceLosses.BradleyTerry"/>
/// with the batch's margins when present. Metrics: <c>accuracy</c>, <c>margin</c>, <c>min_reward</c>,
/// <c>mean_reward</c>, <c>max_reward</c>.
/// </summary>
public sealed class RewardModelObjective : ITrainingObjective<PreferenceBatch>
{
    /// <summary>Creates the objective.</summary>
    public RewardModelObjective(RewardModel model, RewardModelConfig? config = null)
    {
        RewardModel = model ?? throw new ArgumentNullException(nameof(model));
        Config = config ?? new RewardModelConfig();
        if (Config.CenterRewardsCoefficient is double c && !(c >= 0))
            throw new ArgumentOutOfRangeException(nameof(config), c, $"RewardModelConfig.CenterRewardsCoefficient is {c}; use null (off) or a value ≥ 0 (TRL recommends 0.01).");
    }

    /// <summary>The reward model being trained.</summary>
    public RewardModel RewardModel { get; }
    /// <summary>The hyper-parameters.</summary>
    public RewardModelConfig Config { get; }

    nn.Module ITrainingObjective<PreferenceBatch>.Model => RewardModel;

    /// <inheritdoc/>
    public IEnumerable<Parameter> TrainableParameters() => RewardModel.TrainableParameters();

    /// <inheritdoc/>
    public ObjectiveOutput Compute(PreferenceBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        long rows = batch.Tokens.shape[0];
        if (batch.Tokens.dim() != 2 || rows % 2 != 0 || rows == 0)
            throw new ArgumentException($"A PreferenceBatch needs tokens [2B, pos] (B chosen rows, then B rejected rows), got [{string.Join(", ", batch.Tokens.shape)}]; build it with PreferenceData.Collate.", nameof(batch));
        long b = rows / 2;
        var rewards = RewardModel.forward(batch.Tokens, batch.AttentionMask);
        var chosen = rewards.narrow(0, 0, b);
        var rejected = rewards.narrow(0, b, b);
        var loss = PreferenceLosses.BradleyTerry(chosen, rejected, batch.Margin?.to(rewards.device), Config.CenterRewardsCoefficient);
        var r = rewards.detach();
        var metrics = new Dictionary<string, Tensor>
        {
            ["min_reward"] = r.min(),
            ["mean_reward"] = r.mean(),
            ["max_reward"] = r.max(),
            ["accuracy"] = chosen.detach().gt(rejected.detach()).to_type(ScalarType.Float32).mean(),
            ["margin"] = (chosen.detach() - rejected.detach()).mean(),
        };
        return new ObjectiveOutput(loss, metrics, torch.tensor((float)b, device: loss.device));
    }
}
