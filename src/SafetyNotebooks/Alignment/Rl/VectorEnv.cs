namespace SafetyNotebooks.Alignment.Rl;

/// <summary>One lockstep step of a <see cref="VectorEnv"/>: every array has one entry per environment.</summary>
/// <param name="Observations">Next observations, flat <c>[numEnvs · obsSize]</c> (row i = environment i). An environment whose
/// episode just ended has already been reset: its row is the new episode's first observation.</param>
/// <param name="Rewards">Rewards of the step.</param>
/// <param name="Terminated">Episode ended in a terminal state.</param>
/// <param name="Truncated">Episode cut off by a time limit.</param>
/// <param name="FinalObservations">For environments whose episode ended at this step, the last observation of that
/// episode (Gymnasium's <c>final_observation</c>); null elsewhere.</param>
/// <param name="EpisodeReturns">For environments whose episode ended, its undiscounted return (Gymnasium's
/// <c>RecordEpisodeStatistics</c> <c>episode["r"]</c>); null elsewhere.</param>
/// <param name="EpisodeLengths">For environments whose episode ended, its length in steps; null elsewhere.</param>
public sealed record VectorStep(float[] Observations, double[] Rewards, bool[] Terminated, bool[] Truncated,
    float[]?[] FinalObservations, double?[] EpisodeReturns, int?[] EpisodeLengths)
{
    /// <summary>Whether environment <paramref name="i"/>'s episode ended at this step (terminated or truncated).</summary>
    public bool Done(int i) => Terminated[i] || Truncated[i];
}

/// <summary>
/// Several copies of an environment stepped in lockstep (Gymnasium's <c>SyncVectorEnv</c> with same-step autoreset, the
/// semantics CleanRL's <c>ppo.py</c> was written for): <see cref="Reset"/> seeds copy i with <c>seed + i</c>; when a copy's
/// episode ends, <see cref="Step"/> resets it at once and returns the new first observation, with the final one in
/// <see cref="VectorStep.FinalObservations"/>. Episode returns and lengths are recorded as they finish.
/// </summary>
public sealed class VectorEnv
{
    readonly IEnvironment[] _envs;
    readonly double[] _returns;
    readonly int[] _lengths;
    bool _started;

    /// <summary>Builds <paramref name="numEnvs"/> environments with <paramref name="factory"/>.</summary>
    public VectorEnv(Func<IEnvironment> factory, int numEnvs)
    {
        ArgumentNullException.ThrowIfNull(factory);
        if (numEnvs < 1) throw new ArgumentOutOfRangeException(nameof(numEnvs), $"VectorEnv: numEnvs is {numEnvs}; use 1 or more.");
        _envs = Enumerable.Range(0, numEnvs).Select(_ => factory() ?? throw new ArgumentException("VectorEnv: the factory returned null; return a new environment.", nameof(factory))).ToArray();
        ObservationSize = _envs[0].ObservationSize;
        ActionCount = _envs[0].ActionCount;
        if (_envs.Any(e => e.ObservationSize != ObservationSize || e.ActionCount != ActionCount))
            throw new ArgumentException("VectorEnv: the factory made environments with different observation sizes or action counts; make copies of one environment.", nameof(factory));
        _returns = new double[numEnvs];
        _lengths = new int[numEnvs];
    }

    /// <summary>Number of environments.</summary>
    public int NumEnvs => _envs.Length;
    /// <summary>Length of one environment's observation.</summary>
    public int ObservationSize { get; }
    /// <summary>Number of discrete actions.</summary>
    public int ActionCount { get; }
    /// <summary>The environments (for inspection).</summary>
    public IReadOnlyList<IEnvironment> Environments => _envs;

    /// <summary>
    /// Resets every environment, copy i with seed <c>seed + i</c> (Gymnasium's rule), or with a null seed continuing each
    /// copy's own generator; returns flat <c>[numEnvs · obsSize]</c>.
    /// </summary>
    public float[] Reset(int? seed)
    {
        var obs = new float[NumEnvs * ObservationSize];
        for (int i = 0; i < NumEnvs; i++)
        {
            Array.Copy(_envs[i].Reset(seed + i), 0, obs, i * ObservationSize, ObservationSize);
            _returns[i] = 0;
            _lengths[i] = 0;
        }
        _started = true;
        return obs;
    }

    /// <summary>Steps environment i with <c>actions[i]</c>, resetting those whose episode ended.</summary>
    public VectorStep Step(IReadOnlyList<int> actions)
    {
        ArgumentNullException.ThrowIfNull(actions);
        if (!_started) throw new InvalidOperationException("VectorEnv.Step was called before Reset; call Reset(seed) first.");
        if (actions.Count != NumEnvs) throw new ArgumentException($"VectorEnv.Step needs one action per environment ({NumEnvs}), got {actions.Count}.", nameof(actions));
        int n = NumEnvs, d = ObservationSize;
        var obs = new float[n * d];
        var rewards = new double[n];
        var terminated = new bool[n];
        var truncated = new bool[n];
        var final = new float[]?[n];
        var epReturns = new double?[n];
        var epLengths = new int?[n];
        for (int i = 0; i < n; i++)
        {
            var r = _envs[i].Step(actions[i]);
            rewards[i] = r.Reward;
            terminated[i] = r.Terminated;
            truncated[i] = r.Truncated;
            _returns[i] += r.Reward;
            _lengths[i]++;
            var o = r.Observation;
            if (r.Done)
            {
                final[i] = r.Observation;
                epReturns[i] = _returns[i];
                epLengths[i] = _lengths[i];
                _returns[i] = 0;
                _lengths[i] = 0;
                o = _envs[i].Reset();
            }
            Array.Copy(o, 0, obs, i * d, d);
        }
        return new VectorStep(obs, rewards, terminated, truncated, final, epReturns, epLengths);
    }
}
