namespace SafetyNotebooks.Alignment.Rl;

/// <summary>
/// The k-armed Gaussian bandit (Sutton &amp; Barto, <i>Reinforcement Learning</i>, 2nd ed., §2.3, the "10-armed testbed"):
/// arm a pays a reward drawn from N(q*(a), σ²). The arm means q*(a) are drawn once from N(0, 1) with
/// the constructor's arm seed (or given). Each episode is a single pull: the observation is the constant <c>[0]</c> and every
/// step terminates, so the bandit also runs in a <see cref="VectorEnv"/>. Reward noise comes from the generator that
/// <see cref="Reset"/> seeds.
/// </summary>
public sealed class MultiArmedBandit : IEnvironment
{
    readonly double[] _means;
    Random _rng = new(0);
    bool _started, _done;

    /// <summary>A bandit with <paramref name="arms"/> arms whose means are drawn from N(0, 1) with <paramref name="armSeed"/>.</summary>
    public MultiArmedBandit(int arms, int armSeed, double rewardStd = 1.0)
        : this(DrawMeans(arms, armSeed), rewardStd) { }

    /// <summary>A bandit with the given arm means.</summary>
    public MultiArmedBandit(IReadOnlyList<double> armMeans, double rewardStd = 1.0)
    {
        ArgumentNullException.ThrowIfNull(armMeans);
        if (armMeans.Count < 1) throw new ArgumentException("MultiArmedBandit needs at least one arm; pass one mean per arm.", nameof(armMeans));
        if (!(rewardStd >= 0)) throw new ArgumentOutOfRangeException(nameof(rewardStd), $"MultiArmedBandit: rewardStd is {rewardStd}; use 0 (deterministic) or more.");
        _means = armMeans.ToArray();
        RewardStd = rewardStd;
    }

    static double[] DrawMeans(int arms, int seed)
    {
        if (arms < 1) throw new ArgumentOutOfRangeException(nameof(arms), $"MultiArmedBandit: arms is {arms}; use 1 or more.");
        var rng = new Random(seed);
        return Enumerable.Range(0, arms).Select(_ => Gaussian(rng)).ToArray();
    }

    /// <summary>A standard normal draw (Box–Muller), so results depend only on <see cref="Random"/>'s documented stream.</summary>
    internal static double Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>The true arm means q*(a).</summary>
    public IReadOnlyList<double> ArmMeans => _means;
    /// <summary>The reward noise's standard deviation σ.</summary>
    public double RewardStd { get; }
    /// <summary>The arm with the highest mean (the first one on ties).</summary>
    public int OptimalArm => Array.IndexOf(_means, _means.Max());

    /// <inheritdoc/>
    public int ObservationSize => 1;
    /// <inheritdoc/>
    public int ActionCount => _means.Length;

    /// <inheritdoc/>
    public float[] Reset(int? seed = null)
    {
        if (seed is { } s) _rng = new Random(s);
        _started = true;
        _done = false;
        return new[] { 0f };
    }

    /// <summary>Pulls arm <paramref name="action"/>: reward ~ N(q*(action), σ²); the episode terminates.</summary>
    public StepResult Step(int action)
    {
        EnvironmentChecks.Action(this, action);
        EnvironmentChecks.Started(this, _started, _done);
        _done = true;
        return new StepResult(new[] { 0f }, _means[action] + RewardStd * Gaussian(_rng), true, false);
    }

    /// <summary>Pulls an arm without the episode bookkeeping (what the bandit agents use): reward ~ N(q*(arm), σ²).</summary>
    public double Pull(int arm)
    {
        EnvironmentChecks.Action(this, arm);
        return _means[arm] + RewardStd * Gaussian(_rng);
    }
}
