namespace SafetyNotebooks.Alignment.Rl;

/// <summary>An agent for a k-armed bandit: picks an arm, then learns from the reward it got.</summary>
public interface IBanditAgent
{
    /// <summary>The arm to pull next.</summary>
    int SelectArm();
    /// <summary>Records that <paramref name="arm"/> paid <paramref name="reward"/>.</summary>
    void Update(int arm, double reward);
    /// <summary>The current estimate Q(a) of each arm's mean reward.</summary>
    IReadOnlyList<double> Estimates { get; }
}

/// <summary>Sample-average value estimates Q(a) and pull counts N(a), shared by the bandit agents (Sutton &amp; Barto §2.4).</summary>
public abstract class SampleAverageAgent : IBanditAgent
{
    /// <summary>Q(a): the average reward seen from each arm (or the initial value before its first pull).</summary>
    protected readonly double[] Q;
    /// <summary>N(a): how often each arm was pulled.</summary>
    protected readonly int[] N;

    /// <summary>Creates estimates for <paramref name="arms"/> arms, all starting at <paramref name="initialValue"/>.</summary>
    protected SampleAverageAgent(int arms, double initialValue)
    {
        if (arms < 1) throw new ArgumentOutOfRangeException(nameof(arms), $"{GetType().Name}: arms is {arms}; use the bandit's arm count (1 or more).");
        Q = Enumerable.Repeat(initialValue, arms).ToArray();
        N = new int[arms];
    }

    /// <summary>Total pulls so far (t).</summary>
    public int Steps { get; private set; }
    /// <inheritdoc/>
    public IReadOnlyList<double> Estimates => Q;
    /// <summary>Pull counts per arm.</summary>
    public IReadOnlyList<int> Counts => N;

    /// <inheritdoc/>
    public abstract int SelectArm();

    /// <summary>Incremental sample average: <c>Q(a) += (r − Q(a)) / N(a)</c>.</summary>
    public void Update(int arm, double reward)
    {
        if (arm < 0 || arm >= Q.Length) throw new ArgumentOutOfRangeException(nameof(arm), $"{GetType().Name}.Update: arm {arm} is out of range 0 … {Q.Length - 1}.");
        N[arm]++;
        Steps++;
        Q[arm] += (reward - Q[arm]) / N[arm];
    }

    /// <summary>The arm with the highest value, ties broken at random with <paramref name="rng"/> (null: the first).</summary>
    protected static int ArgMax(IReadOnlyList<double> values, Random? rng)
    {
        double best = values.Max();
        var ties = Enumerable.Range(0, values.Count).Where(i => values[i] == best).ToArray();
        return rng is null || ties.Length == 1 ? ties[0] : ties[rng.Next(ties.Length)];
    }
}

/// <summary>
/// ε-greedy (Sutton &amp; Barto §2.2): with probability ε pull a uniformly random arm (explore), otherwise the arm with the
/// highest estimate (exploit, ties at random). ε = 0 is the purely greedy agent.
/// </summary>
public sealed class EpsilonGreedyAgent : SampleAverageAgent
{
    readonly Random _rng;

    /// <summary>Creates the agent; <paramref name="seed"/> drives exploration and tie-breaking.</summary>
    public EpsilonGreedyAgent(int arms, double epsilon, int seed, double initialValue = 0) : base(arms, initialValue)
    {
        if (!(epsilon >= 0 && epsilon <= 1)) throw new ArgumentOutOfRangeException(nameof(epsilon), $"EpsilonGreedyAgent: epsilon is {epsilon}; use a probability in [0, 1] (e.g. 0.1).");
        Epsilon = epsilon;
        _rng = new Random(seed);
    }

    /// <summary>The exploration probability ε.</summary>
    public double Epsilon { get; }

    /// <inheritdoc/>
    public override int SelectArm() => _rng.NextDouble() < Epsilon ? _rng.Next(Q.Length) : ArgMax(Q, _rng);
}

/// <summary>
/// Upper-confidence-bound action selection (Sutton &amp; Barto §2.7, after Auer et al. 2002's UCB1):
/// <c>Aₜ = argmaxₐ [Q(a) + c·√(ln t / N(a))]</c>, pulling every arm once first (an unpulled arm is maximizing).
/// Optimism in the face of uncertainty: arms pulled rarely get a bonus, so exploration fades as the estimates firm up.
/// </summary>
public sealed class UcbAgent : SampleAverageAgent
{
    /// <summary>Creates the agent with exploration weight <paramref name="c"/> (2 in Sutton &amp; Barto's figure 2.4; UCB1 uses √2).</summary>
    public UcbAgent(int arms, double c = 2.0) : base(arms, 0)
    {
        if (!(c >= 0)) throw new ArgumentOutOfRangeException(nameof(c), $"UcbAgent: c is {c}; use 0 or more (e.g. 2).");
        C = c;
    }

    /// <summary>The exploration weight c.</summary>
    public double C { get; }

    /// <summary>The upper confidence bound of each arm at the next step t = <see cref="SampleAverageAgent.Steps"/> + 1 (+∞ for unpulled arms).</summary>
    public double[] UpperBounds()
    {
        double lnT = Math.Log(Steps + 1);
        return Enumerable.Range(0, Q.Length).Select(a => N[a] == 0 ? double.PositiveInfinity : Q[a] + C * Math.Sqrt(lnT / N[a])).ToArray();
    }

    /// <inheritdoc/>
    public override int SelectArm() => ArgMax(UpperBounds(), null);
}

/// <summary>A bandit run's trace, one entry per pull.</summary>
/// <param name="Arms">The arm pulled at each step.</param>
/// <param name="Rewards">The reward received.</param>
/// <param name="CumulativeRegret">Σ (q*(best) − q*(Aₜ)) so far: the expected reward lost to not always pulling the best arm (pseudo-regret).</param>
/// <param name="Optimal">Whether the pull was the optimal arm.</param>
public sealed record BanditRun(int[] Arms, double[] Rewards, double[] CumulativeRegret, bool[] Optimal)
{
    /// <summary>Total regret after the last pull.</summary>
    public double TotalRegret => CumulativeRegret.Length == 0 ? 0 : CumulativeRegret[^1];
    /// <summary>Fraction of the last <paramref name="window"/> pulls that chose the optimal arm.</summary>
    public double OptimalFraction(int window) => Optimal.TakeLast(Math.Max(1, window)).Average(o => o ? 1.0 : 0.0);
}

/// <summary>Runs bandit agents.</summary>
public static class Bandits
{
    /// <summary>
    /// Lets <paramref name="agent"/> pull <paramref name="bandit"/>'s arms <paramref name="steps"/> times (the bandit's reward
    /// noise seeded with <paramref name="seed"/>) and records arms, rewards, cumulative regret and optimal pulls.
    /// </summary>
    public static BanditRun Run(MultiArmedBandit bandit, IBanditAgent agent, int steps, int seed)
    {
        ArgumentNullException.ThrowIfNull(bandit);
        ArgumentNullException.ThrowIfNull(agent);
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), $"Bandits.Run: steps is {steps}; use 0 or more.");
        bandit.Reset(seed);
        int best = bandit.OptimalArm;
        double bestMean = bandit.ArmMeans[best], regret = 0;
        var arms = new int[steps];
        var rewards = new double[steps];
        var cumulative = new double[steps];
        var optimal = new bool[steps];
        for (int t = 0; t < steps; t++)
        {
            int a = agent.SelectArm();
            double r = bandit.Pull(a);
            agent.Update(a, r);
            regret += bestMean - bandit.ArmMeans[a];
            (arms[t], rewards[t], cumulative[t], optimal[t]) = (a, r, regret, bandit.ArmMeans[a] == bestMean);
        }
        return new BanditRun(arms, rewards, cumulative, optimal);
    }
}
