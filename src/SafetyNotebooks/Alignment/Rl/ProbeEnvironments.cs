namespace SafetyNotebooks.Alignment.Rl;

/// <summary>
/// Probe environments (Andy Jones, "Debugging RL, Without the Agonizing Pain", 2021, as used by ARENA's PPO chapter and
/// CleanRL debugging): tiny tasks whose right answer is known, each exercising one more part of an agent. When PPO fails
/// on CartPole, the first probe it fails on points at the bug.
/// <list type="table">
/// <item><term><see cref="Probe1"/></term><description>one observation [0], one action, reward +1, one step: the value net must learn V = 1 (value loss/optimizer).</description></item>
/// <item><term><see cref="Probe2"/></term><description>observation ±1 at random, reward = observation: V(s) = s (the value net must read its input).</description></item>
/// <item><term><see cref="Probe3"/></term><description>two steps, observations [0] then [1], reward 0 then +1: V([0]) = γ, V([1]) = 1 (discounting, GAE, done handling).</description></item>
/// <item><term><see cref="Probe4"/></term><description>observation [0], two actions, reward −1 for action 0 and +1 for action 1: the policy must pick 1 (policy gradient, advantages).</description></item>
/// <item><term><see cref="Probe5"/></term><description>observation ±1 at random, two actions, reward +1 when the action matches the sign (1 for +1, 0 for −1), −1 otherwise (the policy must read its input).</description></item>
/// </list>
/// </summary>
public abstract class ProbeEnvironment : IEnvironment
{
    bool _started, _done;
    /// <summary>The environment's generator (reseeded by <see cref="Reset"/> with a seed).</summary>
    protected Random Rng { get; private set; } = new(0);
    /// <summary>The current observation.</summary>
    protected float[] Current { get; set; } = new[] { 0f };

    /// <inheritdoc/>
    public int ObservationSize => 1;
    /// <inheritdoc/>
    public abstract int ActionCount { get; }

    /// <inheritdoc/>
    public float[] Reset(int? seed = null)
    {
        if (seed is { } s) Rng = new Random(s);
        _started = true;
        _done = false;
        Current = new[] { First() };
        return (float[])Current.Clone();
    }

    /// <inheritdoc/>
    public StepResult Step(int action)
    {
        EnvironmentChecks.Action(this, action);
        EnvironmentChecks.Started(this, _started, _done);
        var (next, reward, terminated) = Transition(Current[0], action);
        _done = terminated;
        Current = new[] { next };
        return new StepResult((float[])Current.Clone(), reward, terminated, false);
    }

    /// <summary>The first observation of an episode.</summary>
    protected abstract float First();
    /// <summary>The next observation, reward and termination for <paramref name="action"/> taken at <paramref name="obs"/>.</summary>
    protected abstract (float Next, double Reward, bool Terminated) Transition(float obs, int action);

    /// <summary>±1 with equal probability.</summary>
    protected float Sign() => Rng.Next(2) == 0 ? -1f : 1f;
}

/// <summary>Probe 1: observation [0], one action, reward +1, one step. Expected value V([0]) = 1.</summary>
public sealed class Probe1 : ProbeEnvironment
{
    /// <inheritdoc/>
    public override int ActionCount => 1;
    /// <inheritdoc/>
    protected override float First() => 0f;
    /// <inheritdoc/>
    protected override (float, double, bool) Transition(float obs, int action) => (0f, 1.0, true);
}

/// <summary>Probe 2: observation ±1 at random, one action, reward = observation, one step. Expected V([s]) = s.</summary>
public sealed class Probe2 : ProbeEnvironment
{
    /// <inheritdoc/>
    public override int ActionCount => 1;
    /// <inheritdoc/>
    protected override float First() => Sign();
    /// <inheritdoc/>
    protected override (float, double, bool) Transition(float obs, int action) => (0f, obs, true);
}

/// <summary>Probe 3: two steps, observation [0] then [1], reward 0 then +1. Expected V([0]) = γ, V([1]) = 1.</summary>
public sealed class Probe3 : ProbeEnvironment
{
    /// <inheritdoc/>
    public override int ActionCount => 1;
    /// <inheritdoc/>
    protected override float First() => 0f;
    /// <inheritdoc/>
    protected override (float, double, bool) Transition(float obs, int action) => obs == 0f ? (1f, 0.0, false) : (0f, 1.0, true);
}

/// <summary>Probe 4: observation [0], two actions, reward −1 for action 0 and +1 for action 1, one step. Best action 1, V = 1 under it.</summary>
public sealed class Probe4 : ProbeEnvironment
{
    /// <inheritdoc/>
    public override int ActionCount => 2;
    /// <inheritdoc/>
    protected override float First() => 0f;
    /// <inheritdoc/>
    protected override (float, double, bool) Transition(float obs, int action) => (0f, action == 1 ? 1.0 : -1.0, true);
}

/// <summary>Probe 5: observation ±1 at random, two actions, reward +1 when the action matches (1 for +1, 0 for −1), else −1. Best action depends on the observation.</summary>
public sealed class Probe5 : ProbeEnvironment
{
    /// <inheritdoc/>
    public override int ActionCount => 2;
    /// <inheritdoc/>
    protected override float First() => Sign();
    /// <inheritdoc/>
    protected override (float, double, bool) Transition(float obs, int action) => (0f, action == (obs > 0 ? 1 : 0) ? 1.0 : -1.0, true);
}
