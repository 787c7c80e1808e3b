namespace SafetyNotebooks.Alignment.Rl;

/// <summary>
/// The cart-pole balancing task of Barto, Sutton &amp; Anderson (1983), with Gymnasium's <c>CartPole-v1</c> constants and rules:
/// gravity 9.8, cart mass 1.0, pole mass 0.1, half pole length 0.5, force ±10 N, time step 0.02 s, explicit Euler integration;
/// reward +1 for every step (the terminating one too); terminated when |x| &gt; 2.4 or |θ| &gt; 12° (0.2095 rad);
/// truncated after <see cref="MaxEpisodeSteps"/> = 500 steps. The start state is uniform in (−0.05, 0.05)⁴.
/// Observation: <c>[x, ẋ, θ, θ̇]</c> (float32 copies of the float64 state). Action 0 pushes left, 1 pushes right.
/// <para>Equations (Florian 2007, "Correct equations for the dynamics of the cart-pole system", frictionless):
/// <c>temp = (F + m_p·l·θ̇²·sin θ)/M</c>, <c>θ̈ = (g·sin θ − cos θ·temp) / (l·(4/3 − m_p·cos²θ/M))</c>,
/// <c>ẍ = temp − m_p·l·θ̈·cos θ/M</c>, with <c>M = m_c + m_p</c>; then <c>x += τẋ, ẋ += τẍ, θ += τθ̇, θ̇ += τθ̈</c>
/// (positions move with the old velocities).</para>
/// </summary>
public sealed class CartPole : IEnvironment
{
    /// <summary>Gravity, m/s².</summary>
    public const double Gravity = 9.8;
    /// <summary>Cart mass, kg.</summary>
    public const double MassCart = 1.0;
    /// <summary>Pole mass, kg.</summary>
    public const double MassPole = 0.1;
    /// <summary>Half the pole's length, m (Gymnasium's <c>length</c>).</summary>
    public const double HalfLength = 0.5;
    /// <summary>Magnitude of the push, N.</summary>
    public const double ForceMagnitude = 10.0;
    /// <summary>Seconds between state updates.</summary>
    public const double Tau = 0.02;
    /// <summary>The episode terminates when |θ| exceeds 12° in radians (12·2π/360).</summary>
    public const double ThetaThresholdRadians = 12 * 2 * Math.PI / 360;
    /// <summary>The episode terminates when |x| exceeds 2.4.</summary>
    public const double XThreshold = 2.4;

    readonly double[] _state = new double[4];
    Random _rng = new(0);
    bool _started, _done;

    /// <summary>Creates the environment; <paramref name="maxEpisodeSteps"/> is the time limit (500 in <c>CartPole-v1</c>).</summary>
    public CartPole(int maxEpisodeSteps = 500)
    {
        if (maxEpisodeSteps < 1) throw new ArgumentOutOfRangeException(nameof(maxEpisodeSteps), $"CartPole: maxEpisodeSteps is {maxEpisodeSteps}; use 1 or more (CartPole-v1 uses 500).");
        MaxEpisodeSteps = maxEpisodeSteps;
    }

    /// <summary>The time limit: the step with this number is truncated (unless it terminated).</summary>
    public int MaxEpisodeSteps { get; }
    /// <summary>Steps taken in the current episode.</summary>
    public int ElapsedSteps { get; private set; }
    /// <summary>The float64 state <c>[x, ẋ, θ, θ̇]</c> (a copy).</summary>
    public double[] State => (double[])_state.Clone();

    /// <inheritdoc/>
    public int ObservationSize => 4;
    /// <inheritdoc/>
    public int ActionCount => 2;

    /// <inheritdoc/>
    public float[] Reset(int? seed = null)
    {
        if (seed is { } s) _rng = new Random(s);
        for (int i = 0; i < 4; i++) _state[i] = _rng.NextDouble() * 0.1 - 0.05;
        ElapsedSteps = 0;
        _started = true;
        _done = false;
        return Observation();
    }

    /// <summary>Places the system in a given state and starts an episode there (for tests and demonstrations).</summary>
    public float[] ResetTo(double x, double xDot, double theta, double thetaDot)
    {
        _state[0] = x; _state[1] = xDot; _state[2] = theta; _state[3] = thetaDot;
        ElapsedSteps = 0;
        _started = true;
        _done = false;
        return Observation();
    }

    /// <inheritdoc/>
    public StepResult Step(int action)
    {
        EnvironmentChecks.Action(this, action);
        EnvironmentChecks.Started(this, _started, _done);
        double x = _state[0], xDot = _state[1], theta = _state[2], thetaDot = _state[3];
        double force = action == 1 ? ForceMagnitude : -ForceMagnitude;
        double cos = Math.Cos(theta), sin = Math.Sin(theta);
        const double totalMass = MassCart + MassPole, poleMassLength = MassPole * HalfLength;
        double temp = (force + poleMassLength * thetaDot * thetaDot * sin) / totalMass;
        double thetaAcc = (Gravity * sin - cos * temp) / (HalfLength * (4.0 / 3.0 - MassPole * cos * cos / totalMass));
        double xAcc = temp - poleMassLength * thetaAcc * cos / totalMass;
        _state[0] = x + Tau * xDot;
        _state[1] = xDot + Tau * xAcc;
        _state[2] = theta + Tau * thetaDot;
        _state[3] = thetaDot + Tau * thetaAcc;
        ElapsedSteps++;
        bool terminated = _state[0] < -XThreshold || _state[0] > XThreshold
            || _state[2] < -ThetaThresholdRadians || _state[2] > ThetaThresholdRadians;
        bool truncated = ElapsedSteps >= MaxEpisodeSteps;
        _done = terminated || truncated;
        return new StepResult(Observation(), 1.0, terminated, truncated);
    }

    float[] Observation() => new[] { (float)_state[0], (float)_state[1], (float)_state[2], (float)_state[3] };
}
