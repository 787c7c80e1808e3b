using SafetyNotebooks.Alignment.Rl;
using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment.Rl;

/// <summary>PPO on the probe environments: each learns the value or policy worked out by hand, in a short seeded run.</summary>
public class PpoTests
{
    public PpoTests() => TorchRuntime.EnsureLoaded();

    // Small rollouts (4 envs × 16 steps = 64 samples, 2 minibatches, 4 epochs) and a higher constant rate than CartPole's.
    static PpoAgentConfig Probe(long steps, int seed = 1) => new()
    {
        TotalTimesteps = steps, NumEnvs = 4, NumSteps = 16, NumMinibatches = 2, UpdateEpochs = 4,
        LearningRate = 1e-2, AnnealLr = false, Seed = seed, ShowProgress = false, HiddenSize = 16,
    };

    static float[] Values(Ppo ppo, params float[] observations)
    {
        using var noGrad = torch.no_grad();
        return ppo.Agent.GetValue(torch.tensor(observations, new long[] { observations.Length, 1 })).data<float>().ToArray();
    }

    static float[] ProbabilityOfAction1(Ppo ppo, params float[] observations)
    {
        using var noGrad = torch.no_grad();
        var p = ppo.Agent.GetLogits(torch.tensor(observations, new long[] { observations.Length, 1 })).softmax(-1);
        return p[.., 1].data<float>().ToArray();
    }

    [Fact]
    public void Probe1_value_converges_to_the_constant_reward_1()
    {
        var ppo = new Ppo(() => new Probe1(), Probe(64 * 40));
        ppo.Train();
        Assert.Equal(1.0, Values(ppo, 0f)[0], 1);
    }

    [Fact]
    public void Probe2_value_follows_the_observation_plus_or_minus_1()
    {
        var ppo = new Ppo(() => new Probe2(), Probe(64 * 60));
        ppo.Train();
        var v = Values(ppo, -1f, 1f);
        Assert.InRange(v[0], -1.1, -0.9);
        Assert.InRange(v[1], 0.9, 1.1);
    }

    // Two steps: reward 0 then 1. V([1]) = 1 and V([0]) = 0 + γ·V([1]) = γ = 0.99 — and 0.99 is not 1: to tell them apart
    // the test uses γ = 0.5, so V([0]) = 0.5 exactly when discounting and the episode boundary are right.
    [Fact]
    public void Probe3_values_are_the_discounted_returns_gamma_and_1()
    {
        var ppo = new Ppo(() => new Probe3(), Probe(64 * 80) with { Gamma = 0.5 });
        ppo.Train();
        var v = Values(ppo, 0f, 1f);
        Assert.InRange(v[0], 0.4, 0.6);
        Assert.InRange(v[1], 0.9, 1.1);
    }

    [Fact]
    public void Probe4_policy_learns_the_rewarded_action()
    {
        var ppo = new Ppo(() => new Probe4(), Probe(64 * 40));
        ppo.Train();
        Assert.True(ProbabilityOfAction1(ppo, 0f)[0] > 0.95, $"π(1 | [0]) = {ProbabilityOfAction1(ppo, 0f)[0]}");
        Assert.Equal(1.0, Values(ppo, 0f)[0], 0.2);
    }

    [Fact]
    public void Probe5_policy_matches_the_action_to_the_observation()
    {
        var ppo = new Ppo(() => new Probe5(), Probe(64 * 60));
        ppo.Train();
        var p1 = ProbabilityOfAction1(ppo, -1f, 1f);
        Assert.True(p1[0] < 0.05 && p1[1] > 0.95, $"π(1 | −1) = {p1[0]}, π(1 | +1) = {p1[1]}");
    }

    // Every episode is one step from [0] paying 1, cut off by a time limit (truncated, not terminated) back in [0].
    // CleanRL's rule (truncation = termination) learns V = 1. Bootstrapping the cut-off adds γ·V([0]): V = 1 + γ·V,
    // so V = 1/(1 − γ) = 2 with γ = 0.5.
    [Theory]
    [InlineData(false, 1.0)]
    [InlineData(true, 2.0)]
    public void Bootstrapping_truncated_episodes_adds_the_discounted_value_of_the_cut_off_state(bool bootstrap, double expected)
    {
        var ppo = new Ppo(() => new AlwaysTruncated(), Probe(64 * 80) with { Gamma = 0.5, BootstrapTruncated = bootstrap, ClipVLoss = false });
        ppo.Train();
        Assert.InRange(Values(ppo, 0f)[0], expected - 0.15, expected + 0.15);
    }

    sealed class AlwaysTruncated : IEnvironment
    {
        public int ObservationSize => 1;
        public int ActionCount => 1;
        public float[] Reset(int? seed = null) => new[] { 0f };
        public StepResult Step(int action) => new(new[] { 0f }, 1.0, Terminated: false, Truncated: true);
    }

    [Fact]
    public void Ppo_with_the_same_seed_repeats_exactly_and_another_seed_differs()
    {
        static (double[] Returns, double[] Losses) Run(int seed)
        {
            var ppo = new Ppo(() => new CartPole(), new PpoAgentConfig { TotalTimesteps = 4 * 64 * 3, NumSteps = 64, Seed = seed, ShowProgress = false });
            ppo.Train();
            return (ppo.Episodes.Select(e => e.Return).ToArray(), ppo.Trainer.LossHistory.ToArray());
        }
        var a = Run(3);
        var b = Run(3);
        var c = Run(4);
        Assert.Equal(a.Returns, b.Returns);
        Assert.Equal(a.Losses, b.Losses);
        Assert.NotEqual(a.Losses, c.Losses);
    }

    [Fact]
    public void Ppo_runs_every_gradient_step_through_the_library_trainer()
    {
        var cfg = Probe(64 * 3);
        var ppo = new Ppo(() => new Probe1(), cfg);
        ppo.Train();
        Assert.Equal(3 * cfg.UpdateEpochs * cfg.NumMinibatches, ppo.Trainer.Records.Count);
        Assert.Equal(3, ppo.Iterations.Count);
        Assert.Equal(64 * 3, ppo.GlobalStep);
        Assert.Contains("losses/clipfrac", ppo.Trainer.Records[^1].Metrics!.Keys);
    }

    [Fact]
    public void Ppo_refuses_a_rollout_that_does_not_split_into_minibatches()
    {
        var error = Assert.Throws<ArgumentException>(() => new Ppo(() => new CartPole(), new PpoAgentConfig { NumEnvs = 3, NumSteps = 10, NumMinibatches = 4 }));
        Assert.Contains("not divisible by NumMinibatches = 4", error.Message);
    }

    [Fact]
    public void Reinforce_with_a_value_baseline_learns_probe4s_rewarded_action()
    {
        var reinforce = new Reinforce(() => new Probe4(), new ReinforceConfig { EpisodesPerBatch = 16, Iterations = 60, LearningRate = 1e-2, ShowProgress = false, HiddenSize = 16 });
        reinforce.Train();
        using var noGrad = torch.no_grad();
        var p = reinforce.Agent.GetLogits(torch.zeros(1, 1)).softmax(-1)[0, 1].item<float>();
        Assert.True(p > 0.9, $"π(1 | [0]) = {p}");
        Assert.True(reinforce.MeanReturns[^1] > 0.7, $"last batch mean return {reinforce.MeanReturns[^1]}");
    }

    [Fact]
    public void Reinforce_returns_to_go_are_the_discounted_sums_to_the_episode_end()
    {
        // Probe 3 pays 0 then 1: with γ = 0.5 the returns-to-go are [0.5, 1] in every episode, whatever the policy.
        var reinforce = new Reinforce(() => new Probe3(), new ReinforceConfig { EpisodesPerBatch = 3, Iterations = 1, Gamma = 0.5, ShowProgress = false });
        var batch = reinforce.CollectEpisodes(seed: 0);
        Assert.Equal(new[] { 0.5f, 1f, 0.5f, 1f, 0.5f, 1f }, batch.Returns.data<float>().ToArray());
        Assert.Equal(new[] { 0f, 1f, 0f, 1f, 0f, 1f }, batch.Observations.data<float>().ToArray());
    }
}
