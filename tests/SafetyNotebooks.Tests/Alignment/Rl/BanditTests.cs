using SafetyNotebooks.Alignment.Rl;

namespace SafetyNotebooks.Tests.Alignment.Rl;

public class BanditTests
{
    // Rewards 1, 3, 2 from arms 0, 1, 0 → Q = [1.5, 3], N = [2, 1], t = 4 next:
    //   U₀ = 1.5 + 2·√(ln 4 / 2) = 1.5 + 2·0.8325546 = 3.1651092,  U₁ = 3 + 2·√(ln 4) = 3 + 2·1.1774100 = 5.3548200,  U₂ = +∞ (never pulled).
    [Fact]
    public void Ucb_bounds_and_sample_averages_match_the_hand_worked_values()
    {
        var agent = new UcbAgent(3, c: 2);
        agent.Update(0, 1); agent.Update(1, 3); agent.Update(0, 2);
        Assert.Equal(new[] { 1.5, 3.0, 0.0 }, agent.Estimates);
        var u = agent.UpperBounds();
        Assert.Equal(3.1651092, u[0], 6);
        Assert.Equal(5.3548200, u[1], 6);
        Assert.True(double.IsPositiveInfinity(u[2]));
        Assert.Equal(2, agent.SelectArm());                  // the unpulled arm first
    }

    [Fact]
    public void Epsilon_zero_is_greedy_and_epsilon_one_explores_uniformly()
    {
        var greedy = new EpsilonGreedyAgent(3, 0.0, seed: 1);
        greedy.Update(0, 0.5); greedy.Update(1, 2.0); greedy.Update(2, 1.0);
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Equal(1, greedy.SelectArm()));
        var random = new EpsilonGreedyAgent(3, 1.0, seed: 1);
        random.Update(1, 10);
        var counts = new int[3];
        for (int i = 0; i < 3000; i++) counts[random.SelectArm()]++;
        Assert.All(counts, c => Assert.InRange(c, 900, 1100));  // ≈ 1000 each, whatever the estimates
    }

    // Sutton & Barto's 10-armed testbed (figure 2.4): over 1000 pulls UCB (c = 2) loses less than ε-greedy (ε = 0.1),
    // which keeps paying for 10% random pulls. Averaged over 20 seeded bandits so the comparison is not one draw's luck.
    [Fact]
    public void Ucb_has_lower_regret_than_epsilon_greedy_on_seeded_ten_armed_bandits_and_finds_the_best_arm()
    {
        double ucbRegret = 0, epsRegret = 0;
        int ucbFound = 0;
        for (int instance = 0; instance < 20; instance++)
        {
            var bandit = new MultiArmedBandit(10, armSeed: instance);
            var ucb = new UcbAgent(10, c: 2);
            var ucbRun = Bandits.Run(bandit, ucb, 1000, seed: 100 + instance);
            var epsRun = Bandits.Run(bandit, new EpsilonGreedyAgent(10, 0.1, seed: instance), 1000, seed: 100 + instance);
            ucbRegret += ucbRun.TotalRegret;
            epsRegret += epsRun.TotalRegret;
            if (Array.IndexOf(ucb.Counts.ToArray(), ucb.Counts.Max()) == bandit.OptimalArm) ucbFound++;
        }
        Assert.True(ucbRegret < epsRegret, $"UCB regret {ucbRegret / 20:0.0} vs ε-greedy {epsRegret / 20:0.0} (mean per bandit)");
        Assert.True(ucbFound >= 16, $"UCB pulled the optimal arm most on {ucbFound} of 20 bandits");
    }

    [Fact]
    public void Regret_is_the_gap_between_the_best_mean_and_the_pulled_means()
    {
        // Arm means 0, 1, 3: pulling arm 0 then arm 1 then arm 2 costs 3, then 2, then 0.
        var bandit = new MultiArmedBandit(new[] { 0.0, 1.0, 3.0 }, rewardStd: 0);
        var run = Bandits.Run(bandit, new FixedSequence(0, 1, 2), 3, seed: 0);
        Assert.Equal(new[] { 3.0, 5.0, 5.0 }, run.CumulativeRegret);
        Assert.Equal(new[] { 0.0, 1.0, 3.0 }, run.Rewards);
        Assert.Equal(new[] { false, false, true }, run.Optimal);
    }

    [Fact]
    public void Seeded_bandits_and_agents_repeat_exactly()
    {
        var a = Bandits.Run(new MultiArmedBandit(10, 3), new EpsilonGreedyAgent(10, 0.1, 4), 200, 5);
        var b = Bandits.Run(new MultiArmedBandit(10, 3), new EpsilonGreedyAgent(10, 0.1, 4), 200, 5);
        Assert.Equal(a.Arms, b.Arms);
        Assert.Equal(a.Rewards, b.Rewards);
    }

    sealed class FixedSequence(params int[] arms) : IBanditAgent
    {
        int _next;
        public int SelectArm() => arms[_next++];
        public void Update(int arm, double reward) { }
        public IReadOnlyList<double> Estimates => Array.Empty<double>();
    }
}
