using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment.Rl;

/// <summary>Acting with an <see cref="ActorCritic"/> on a batch of observations, shared by PPO, REINFORCE and evaluation.</summary>
public static class PolicySampling
{
    /// <summary>
    /// Runs the agent on flat observations <c>[n · obsSize]</c> without gradients and picks one action per row: sampled from
    /// the softmax of the logits with <paramref name="rng"/> (a seeded <see cref="Random"/>, so runs repeat exactly), or
    /// the most likely one when <paramref name="greedy"/>. Returns the actions, their log-probabilities and the values.
    /// </summary>
    public static (int[] Actions, float[] LogProbs, float[] Values) Act(ActorCritic agent, float[] observations, Random rng, bool greedy = false)
    {
        ArgumentNullException.ThrowIfNull(agent);
        ArgumentNullException.ThrowIfNull(observations);
        int d = agent.ObservationSize, k = agent.ActionCount;
        if (observations.Length % d != 0)
            throw new ArgumentException($"PolicySampling.Act: {observations.Length} observation values are not a whole number of rows of {d}; pass [n · {d}] values.", nameof(observations));
        int n = observations.Length / d;
        float[] logp, values;
        using (torch.no_grad())
        using (var scope = torch.NewDisposeScope())
        {
            var device = agent.parameters().First().device;
            var obs = torch.tensor(observations, new long[] { n, d }, device: device);
            var (logits, value) = agent.call(obs);
            logp = logits.log_softmax(-1).cpu().data<float>().ToArray();
            values = value.cpu().data<float>().ToArray();
        }
        var actions = new int[n];
        var chosen = new float[n];
        for (int i = 0; i < n; i++)
        {
            int a;
            if (greedy)
            {
                a = 0;
                for (int j = 1; j < k; j++) if (logp[i * k + j] > logp[i * k + a]) a = j;
            }
            else
            {
                double u = rng.NextDouble(), cumulative = 0;
                a = k - 1;
                for (int j = 0; j < k; j++)
                {
                    cumulative += Math.Exp(logp[i * k + j]);
                    if (u < cumulative) { a = j; break; }
                }
            }
            actions[i] = a;
            chosen[i] = logp[i * k + a];
        }
        return (actions, chosen, values);
    }

    /// <summary>
    /// Plays <paramref name="episodes"/> full episodes (one per copy of the environment, seeded <c>seed</c>, <c>seed + 1</c>, …)
    /// and returns their undiscounted returns. Greedy (argmax) actions by default; <paramref name="greedy"/> false samples
    /// from the policy with a <see cref="Random"/> seeded by <paramref name="seed"/>.
    /// </summary>
    public static double[] Evaluate(ActorCritic agent, Func<IEnvironment> envFactory, int episodes, int seed, bool greedy = true)
    {
        ArgumentNullException.ThrowIfNull(agent);
        if (episodes < 1) throw new ArgumentOutOfRangeException(nameof(episodes), $"Evaluate: episodes is {episodes}; use 1 or more (100 is the CartPole standard).");
        var env = new VectorEnv(envFactory, episodes);
        var obs = env.Reset(seed);
        var returns = new double?[episodes];
        var rng = new Random(seed);
        bool wasTraining = agent.training;
        agent.eval();
        try
        {
            for (int steps = 0; returns.Any(r => r is null); steps++)
            {
                if (steps >= 1_000_000) throw new InvalidOperationException("Evaluate: an episode ran for 1,000,000 steps without ending; give the environment a time limit (e.g. CartPole's maxEpisodeSteps).");
                var (actions, _, _) = Act(agent, obs, rng, greedy);
                var step = env.Step(actions);
                for (int i = 0; i < episodes; i++)
                    if (returns[i] is null && step.EpisodeReturns[i] is { } r) returns[i] = r;
                obs = step.Observations;
            }
        }
        finally { agent.train(wasTraining); }
        return returns.Select(r => r!.Value).ToArray();
    }
}
