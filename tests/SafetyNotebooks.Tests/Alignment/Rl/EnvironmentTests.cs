using SafetyNotebooks.Alignment.Rl;

namespace SafetyNotebooks.Tests.Alignment.Rl;

public class EnvironmentTests
{
    static void Near(double expected, double actual, double tol = 1e-12) =>
        Assert.True(Math.Abs(expected - actual) <= tol, $"expected {expected:R}, got {actual:R}");

    // From rest (x = ẋ = θ = θ̇ = 0), pushing right (F = +10), sin θ = 0, cos θ = 1, M = 1.1, m_p·l = 0.05:
    //   temp = F / M = 100/11
    //   θ̈ = (0 − 1·100/11) / (0.5·(4/3 − 0.1/1.1)) = −(100/11) / (41/66) = −600/41 ≈ −14.634
    //   ẍ = 100/11 − 0.05·(−600/41)/1.1 = 100/11 + 300/451 = 4400/451 ≈ 9.756
    // Euler: x' = x + τẋ = 0, ẋ' = τẍ = 0.02·4400/451, θ' = 0, θ̇' = 0.02·(−600/41).
    [Fact]
    public void Cartpole_one_step_from_rest_matches_the_hand_worked_equations()
    {
        var env = new CartPole();
        env.ResetTo(0, 0, 0, 0);
        var r = env.Step(1);
        var s = env.State;
        Near(0, s[0]);
        Near(0.02 * 4400.0 / 451.0, s[1]);
        Near(0, s[2]);
        Near(0.02 * -600.0 / 41.0, s[3]);
        Assert.Equal(1.0, r.Reward);
        Assert.False(r.Terminated);
        Assert.False(r.Truncated);
        Assert.Equal((float)(0.02 * 4400.0 / 451.0), r.Observation[1]);
    }

    // From (x, ẋ, θ, θ̇) = (0.1, 0.5, 0.05, −0.2) pushing left (F = −10), worked from the same equations:
    //   sin 0.05 = 0.0499791693, cos 0.05 = 0.9987502604
    //   temp = (−10 + 0.05·0.04·0.0499791693)/1.1 = −9.0908182197
    //   θ̈ = (9.8·0.0499791693 − 0.9987502604·(−9.0908182197)) / (0.5·(4/3 − 0.1·0.9975020…/1.1)) = 15.4013482690
    //   ẍ = −9.0908182197 − 0.05·15.4013482690·0.9987502604/1.1 = −9.7900046103
    // Euler uses the old velocities for the positions: x' = 0.1 + 0.02·0.5 = 0.11, θ' = 0.05 + 0.02·(−0.2) = 0.046,
    // ẋ' = 0.5 + 0.02·ẍ = 0.3041999078, θ̇' = −0.2 + 0.02·θ̈ = 0.1080269654.
    [Fact]
    public void Cartpole_one_step_from_a_tilted_moving_state_matches_the_equations_with_euler_integration()
    {
        var env = new CartPole();
        env.ResetTo(0.1, 0.5, 0.05, -0.2);
        env.Step(0);
        var s = env.State;
        Near(0.11, s[0], 1e-12);
        Near(0.30419990779330447, s[1], 1e-9);
        Near(0.046, s[2], 1e-12);
        Near(0.10802696538077283, s[3], 1e-9);
    }

    [Fact]
    public void Cartpole_terminates_past_2_4_in_x_or_12_degrees_in_theta_and_not_before()
    {
        var env = new CartPole();
        Assert.Equal(12 * Math.PI / 180, CartPole.ThetaThresholdRadians, 12);
        // x: 2.39 + 0.02·1.0 = 2.41 > 2.4 → terminated; 2.37 + 0.02 = 2.39 → not.
        env.ResetTo(2.39, 1.0, 0, 0);
        Assert.True(env.Step(1).Terminated);
        env.ResetTo(2.37, 1.0, 0, 0);
        Assert.False(env.Step(1).Terminated);
        env.ResetTo(-2.39, -1.0, 0, 0);
        Assert.True(env.Step(0).Terminated);
        // θ: 0.2090 + 0.02·0.1 = 0.2110 > 0.20944 → terminated; 0.2070 + 0.002 = 0.2090 → not.
        env.ResetTo(0, 0, 0.2090, 0.1);
        var fell = env.Step(1);
        Assert.True(fell.Terminated);
        Assert.Equal(1.0, fell.Reward);                       // the terminating step is rewarded too (Gymnasium)
        env.ResetTo(0, 0, 0.2070, 0.1);
        Assert.False(env.Step(1).Terminated);
        env.ResetTo(0, 0, -0.2090, -0.1);
        Assert.True(env.Step(0).Terminated);
    }

    [Fact]
    public void Cartpole_truncates_at_the_time_limit_which_defaults_to_500_steps()
    {
        Assert.Equal(500, new CartPole().MaxEpisodeSteps);
        var env = new CartPole(maxEpisodeSteps: 3);
        env.ResetTo(0, 0, 0, 0);
        Assert.False(env.Step(1).Done);
        Assert.False(env.Step(0).Done);
        var last = env.Step(1);
        Assert.True(last.Truncated);
        Assert.False(last.Terminated);
        var error = Assert.Throws<InvalidOperationException>(() => env.Step(0));
        Assert.Contains("call Reset()", error.Message);
    }

    [Fact]
    public void Cartpole_reset_with_a_seed_is_reproducible_and_starts_within_0_05()
    {
        var a = new CartPole().Reset(7);
        var b = new CartPole().Reset(7);
        var c = new CartPole().Reset(8);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.All(a.Concat(c), v => Assert.InRange(v, -0.05f, 0.05f));
    }

    [Fact]
    public void Environments_reject_bad_actions_and_steps_before_reset_with_a_clear_error()
    {
        var env = new CartPole();
        var early = Assert.Throws<InvalidOperationException>(() => env.Step(0));
        Assert.Contains("Reset(seed)", early.Message);
        env.Reset(1);
        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => env.Step(2));
        Assert.Contains("actions are 0 … 1", bad.Message);
    }

    [Fact]
    public void Vector_env_seeds_copy_i_with_seed_plus_i_and_resets_finished_episodes_at_once()
    {
        var env = new VectorEnv(() => new CartPole(), 3);
        var obs = env.Reset(5);
        Assert.Equal(new CartPole().Reset(6), obs[4..8]);   // copy 1 got seed 5 + 1

        // Probe 3: two-step episodes [0] → [1] → end, reward 0 then 1.
        var probes = new VectorEnv(() => new Probe3(), 2);
        Assert.Equal(new[] { 0f, 0f }, probes.Reset(0));
        var s1 = probes.Step(new[] { 0, 0 });
        Assert.Equal(new[] { 1f, 1f }, s1.Observations);
        Assert.All(s1.EpisodeReturns, r => Assert.Null(r));
        var s2 = probes.Step(new[] { 0, 0 });
        Assert.True(s2.Terminated[0] && s2.Terminated[1]);
        Assert.Equal(new[] { 0f, 0f }, s2.Observations);      // already reset: the new episode's first observation
        Assert.Equal(new[] { 0f }, s2.FinalObservations[0]);   // the observation the terminal step returned (Probe 3's is [0])
        Assert.Null(s1.FinalObservations[0]);
        Assert.Equal(1.0, s2.EpisodeReturns[1]);
        Assert.Equal(2, s2.EpisodeLengths[0]);
    }

    [Fact]
    public void Probe_environments_pay_the_documented_rewards()
    {
        var p1 = new Probe1(); p1.Reset(0);
        Assert.Equal(1.0, p1.Step(0).Reward);
        var p2 = new Probe2();
        for (int seed = 0; seed < 6; seed++)
        {
            var o = p2.Reset(seed)[0];
            Assert.True(o is 1f or -1f);
            Assert.Equal(o, p2.Step(0).Reward);
        }
        var p4 = new Probe4();
        p4.Reset(0); Assert.Equal(-1.0, p4.Step(0).Reward);
        p4.Reset(0); Assert.Equal(1.0, p4.Step(1).Reward);
        var p5 = new Probe5();
        for (int seed = 0; seed < 6; seed++)
        {
            var o = p5.Reset(seed)[0];
            Assert.Equal(1.0, p5.Step(o > 0 ? 1 : 0).Reward);
            p5.Reset(seed);
            Assert.Equal(-1.0, p5.Step(o > 0 ? 0 : 1).Reward);
        }
    }
}
