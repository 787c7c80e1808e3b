using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment.Rl;

/// <summary>
/// CleanRL's <c>Agent</c> for discrete actions: two separate MLPs of the same shape, an actor giving action logits and a
/// critic giving the state value, each <c>obs → 64 → tanh → 64 → tanh → out</c>. Weights are orthogonal with gain √2
/// (hidden layers), 0.01 (actor output, so the first policy is nearly uniform) and 1 (critic output); biases 0
/// (CleanRL's <c>layer_init</c>). Forward: observations <c>[batch, obsSize]</c> → (logits <c>[batch, actions]</c>, value <c>[batch]</c>).
/// </summary>
public sealed class ActorCritic : nn.Module<Tensor, (Tensor Logits, Tensor Value)>
{
    readonly Sequential actor;
    readonly Sequential critic;

    /// <summary>Builds the networks; with a <paramref name="seed"/>, torch's generator is seeded first so the weights are reproducible.</summary>
    public ActorCritic(int observationSize, int actionCount, int hiddenSize = 64, int? seed = null) : base(nameof(ActorCritic))
    {
        if (observationSize < 1 || actionCount < 1 || hiddenSize < 1)
            throw new ArgumentOutOfRangeException(nameof(observationSize), $"ActorCritic: observationSize {observationSize}, actionCount {actionCount} and hiddenSize {hiddenSize} must all be 1 or more; take the first two from the environment.");
        Runtime.TorchRuntime.EnsureLoaded();
        if (seed is { } s) torch.random.manual_seed(s);
        ObservationSize = observationSize;
        ActionCount = actionCount;
        HiddenSize = hiddenSize;
        critic = Mlp(observationSize, hiddenSize, 1, 1.0);
        actor = Mlp(observationSize, hiddenSize, actionCount, 0.01);
        RegisterComponents();
    }

    static Sequential Mlp(int input, int hidden, int output, double outGain)
    {
        var l1 = Init(nn.Linear(input, hidden), Math.Sqrt(2));
        var l2 = Init(nn.Linear(hidden, hidden), Math.Sqrt(2));
        var l3 = Init(nn.Linear(hidden, output), outGain);
        return nn.Sequential(("0", l1), ("1", nn.Tanh()), ("2", l2), ("3", nn.Tanh()), ("4", l3));
    }

    static Linear Init(Linear layer, double gain)
    {
        using var noGrad = torch.no_grad();
        nn.init.orthogonal_(layer.weight, gain);
        nn.init.constant_(layer.bias!, 0);
        return layer;
    }

    /// <summary>Observation length.</summary>
    public int ObservationSize { get; }
    /// <summary>Number of discrete actions.</summary>
    public int ActionCount { get; }
    /// <summary>Width of the hidden layers.</summary>
    public int HiddenSize { get; }

    /// <summary>Action logits <c>[batch, actions]</c> and state values <c>[batch]</c>.</summary>
    public override (Tensor Logits, Tensor Value) forward(Tensor observations)
    {
        if (observations.dim() != 2 || observations.shape[1] != ObservationSize)
            throw new ArgumentException($"ActorCritic expects observations [batch, {ObservationSize}], got [{string.Join(", ", observations.shape)}]; stack one row per environment.", nameof(observations));
        return (actor.call(observations), critic.call(observations).squeeze(-1));
    }

    /// <summary>The critic alone: state values <c>[batch]</c> (CleanRL's <c>get_value</c>).</summary>
    public Tensor GetValue(Tensor observations) => critic.call(observations).squeeze(-1);

    /// <summary>The actor alone: action logits <c>[batch, actions]</c>.</summary>
    public Tensor GetLogits(Tensor observations) => actor.call(observations);
}
