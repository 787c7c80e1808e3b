namespace SafetyNotebooks.Alignment.Rl;

/// <summary>What one environment step returns (Gymnasium's <c>obs, reward, terminated, truncated</c>).</summary>
/// <param name="Observation">The next observation (length <see cref="IEnvironment.ObservationSize"/>).</param>
/// <param name="Reward">The reward for the step just taken.</param>
/// <param name="Terminated">The episode reached a terminal state (the pole fell, the bandit pull is over): no future reward.</param>
/// <param name="Truncated">The episode was cut off by a time limit in a non-terminal state: the future still had value.</param>
public readonly record struct StepResult(float[] Observation, double Reward, bool Terminated, bool Truncated)
{
    /// <summary>The episode is over for either reason; the next call must be <see cref="IEnvironment.Reset"/>.</summary>
    public bool Done => Terminated || Truncated;
}

/// <summary>
/// A discrete-action environment, in Gymnasium's API: <see cref="Reset"/> starts an episode, <see cref="Step"/> advances it.
/// Each environment owns a random generator: <c>Reset(seed)</c> reseeds it, <c>Reset(null)</c> continues its stream
/// (as Gymnasium's <c>np_random</c>), so a seeded run is reproducible across episodes. Wrap several in a
/// <see cref="VectorEnv"/> to step them in lockstep.
/// </summary>
public interface IEnvironment
{
    /// <summary>Length of an observation vector.</summary>
    int ObservationSize { get; }
    /// <summary>Number of discrete actions; actions are 0 … <c>ActionCount − 1</c>.</summary>
    int ActionCount { get; }
    /// <summary>Starts a new episode and returns its first observation; a seed reseeds the environment's generator.</summary>
    float[] Reset(int? seed = null);
    /// <summary>Takes <paramref name="action"/>; throws when the action is out of range or the episode is over (call <see cref="Reset"/>).</summary>
    StepResult Step(int action);
}

/// <summary>Argument checks shared by the environments.</summary>
static class EnvironmentChecks
{
    public static void Action(IEnvironment env, int action)
    {
        if (action < 0 || action >= env.ActionCount)
            throw new ArgumentOutOfRangeException(nameof(action), $"{env.GetType().Name}: action {action} is out of range; actions are 0 … {env.ActionCount - 1}.");
    }

    public static void Started(IEnvironment env, bool started, bool done)
    {
        if (!started) throw new InvalidOperationException($"{env.GetType().Name}.Step was called before Reset; call Reset(seed) first.");
        if (done) throw new InvalidOperationException($"{env.GetType().Name}.Step was called after the episode ended; call Reset() to start the next episode.");
    }
}
