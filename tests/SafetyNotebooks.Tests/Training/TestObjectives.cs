using SafetyNotebooks.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Training;

/// <summary>A preference pair batch: features of the chosen and the rejected response, <c>[batch, d]</c> each.</summary>
sealed record PreferenceBatch(Tensor Chosen, Tensor Rejected);

/// <summary>
/// Pairwise reward-model objective (Bradley–Terry, as TRL's RewardTrainer): loss = mean −log σ(r(chosen) − r(rejected)),
/// with TRL's <c>rewards/chosen</c>, <c>rewards/rejected</c>, <c>rewards/accuracies</c>, <c>rewards/margins</c>.
/// </summary>
sealed class RewardModelObjective : ITrainingObjective<PreferenceBatch>
{
    public RewardModelObjective(nn.Module<Tensor, Tensor> rewardModel) => RewardModel = rewardModel;
    public nn.Module<Tensor, Tensor> RewardModel { get; }
    public nn.Module Model => RewardModel;

    public ObjectiveOutput Compute(PreferenceBatch batch)
    {
        var rc = RewardModel.call(batch.Chosen).squeeze(-1);
        var rr = RewardModel.call(batch.Rejected).squeeze(-1);
        var margin = rc - rr;
        var loss = nn.functional.softplus(-margin).mean();   // = −log σ(margin), in a form the meta device also runs
        return new ObjectiveOutput(loss, new Dictionary<string, Tensor>
        {
            ["rewards/chosen"] = rc.mean(),
            ["rewards/rejected"] = rr.mean(),
            ["rewards/accuracies"] = margin.gt(0).to_type(ScalarType.Float32).mean(),
            ["rewards/margins"] = margin.mean(),
        }, Weight: torch.tensor((float)batch.Chosen.shape[0], device: batch.Chosen.device));
    }
}

/// <summary>Activations <c>[batch, d]</c> and binary labels <c>[batch]</c> (0/1 floats).</summary>
sealed record ProbeBatch(Tensor Activations, Tensor Labels);

/// <summary>Linear probe: logistic regression (binary cross-entropy with logits), metric <c>accuracy</c>.</summary>
sealed class LinearProbeObjective : ITrainingObjective<ProbeBatch>
{
    public LinearProbeObjective(Linear probe) => Probe = probe;
    public Linear Probe { get; }
    public nn.Module Model => Probe;

    public ObjectiveOutput Compute(ProbeBatch batch)
    {
        var logits = Probe.call(batch.Activations).squeeze(-1);
        var loss = (nn.functional.softplus(logits) - batch.Labels * logits).mean();   // binary cross-entropy with logits: log(1 + eᶻ) − y·z
        var accuracy = logits.gt(0).to_type(ScalarType.Float32).eq(batch.Labels).to_type(ScalarType.Float32).mean();
        return new ObjectiveOutput(loss, new Dictionary<string, Tensor> { ["accuracy"] = accuracy },
            Weight: torch.tensor((float)batch.Labels.shape[0], device: batch.Labels.device));
    }
}

/// <summary>Counts its post-step hook calls and renormalizes a weight to unit norm there (like an SAE decoder).</summary>
sealed class NormalizingProbeObjective : ITrainingObjective<ProbeBatch>
{
    readonly LinearProbeObjective _inner;
    public int HookCalls;
    public NormalizingProbeObjective(Linear probe) => _inner = new LinearProbeObjective(probe);
    public nn.Module Model => _inner.Model;
    public ObjectiveOutput Compute(ProbeBatch batch) => _inner.Compute(batch);
    public void AfterOptimizerStep()
    {
        HookCalls++;
        var w = _inner.Probe.weight!;
        w.div_(w.norm());
    }
}
