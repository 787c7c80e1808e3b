using MathNet.Numerics.LinearRegression;

namespace SafetyNotebooks.Alignment;

/// <summary>Which of Gao et al.'s functional forms a <see cref="OveroptimizationFit"/> holds.</summary>
public enum OveroptimizationForm
{
    /// <summary>Best-of-n: R(d) = d·(α − β·d).</summary>
    BestOfN,
    /// <summary>Reinforcement learning: R(d) = d·(α − β·ln d).</summary>
    Rl,
}

/// <summary>
/// A least-squares fit of gold reward against the distance d = √KL(π‖π_ref) (<see cref="Overoptimization"/>).
/// </summary>
/// <param name="Form">The functional form.</param>
/// <param name="Alpha">α: the initial slope (reward gained per unit of d while d is small).</param>
/// <param name="Beta">β: how fast the gain bends down (β &gt; 0 means the curve peaks and falls).</param>
/// <param name="RSquared">1 − SS_res/SS_tot of the fit on its points (centered; 1 = exact).</param>
/// <param name="Points">How many points were fitted.</param>
public sealed record OveroptimizationFit(OveroptimizationForm Form, double Alpha, double Beta, double RSquared, int Points)
{
    /// <summary>The fitted reward gain at distance <paramref name="d"/> (0 at d = 0 for both forms).</summary>
    public double Predict(double d)
    {
        if (!(d >= 0)) throw new ArgumentOutOfRangeException(nameof(d), d, "d = √KL is a distance; pass d ≥ 0.");
        return Form == OveroptimizationForm.BestOfN ? d * (Alpha - Beta * d) : d == 0 ? 0 : d * (Alpha - Beta * Math.Log(d));
    }

    /// <summary>
    /// Where the fitted curve peaks: α/(2β) for best-of-n; e^(α/β − 1) for RL (where dR/dd = α − β·ln d − β = 0).
    /// Infinity when β ≤ 0 (the fitted gold reward never turns down).
    /// </summary>
    public double PeakDistance => Beta <= 0 ? double.PositiveInfinity
        : Form == OveroptimizationForm.BestOfN ? Alpha / (2 * Beta) : Math.Exp(Alpha / Beta - 1);

    /// <summary>The fitted reward gain at <see cref="PeakDistance"/>: α²/(4β) for best-of-n, β·e^(α/β − 1) for RL.</summary>
    public double PeakReward => Beta <= 0 ? double.PositiveInfinity
        : Form == OveroptimizationForm.BestOfN ? Alpha * Alpha / (4 * Beta) : Beta * Math.Exp(Alpha / Beta - 1);
}

/// <summary>
/// Reward-model overoptimization (Gao, Schulman and Hilton 2022, "Scaling Laws for Reward Model Overoptimization"): as a
/// policy is optimized harder against a proxy reward model, measured by the distance d = √KL(π‖π_ref), the proxy reward keeps
/// rising while the gold reward rises, peaks and falls. Gao et al. fit the gold reward gain (relative to π_ref) with
/// <list type="bullet">
/// <item>best-of-n: R(d) = d·(α_bon − β_bon·d), where KL_bon = ln n − (n − 1)/n (<see cref="BestOfN.KlBound"/>);</item>
/// <item>RL: R(d) = d·(α_RL − β_RL·ln d).</item>
/// </list>
/// Both are linear in (α, β), so they are fitted by ordinary least squares (MathNet.Numerics, QR) on the features
/// (d, −d²) and (d, −d·ln d), with no intercept: R(0) = 0, so pass rewards <b>minus π_ref's reward</b>.
/// </summary>
public static class Overoptimization
{
    /// <summary>d = √KL, Gao et al.'s distance from the initial policy. KL must be ≥ 0 (clamp a slightly negative estimate first).</summary>
    public static double Distance(double kl)
    {
        if (!(kl >= 0)) throw new ArgumentOutOfRangeException(nameof(kl), kl, $"KL is {kl}; d = √KL needs KL ≥ 0. A sample estimate (k1) can be slightly negative near π_ref: clamp it with Math.Max(0, kl).");
        return Math.Sqrt(kl);
    }

    /// <summary>Fits R(d) = d·(α − β·d) (best-of-n) to gold reward gains <paramref name="reward"/> at distances <paramref name="d"/>.</summary>
    public static OveroptimizationFit FitBestOfN(IReadOnlyList<double> d, IReadOnlyList<double> reward) =>
        Fit(OveroptimizationForm.BestOfN, d, reward);

    /// <summary>Fits R(d) = d·(α − β·ln d) (RL) to gold reward gains <paramref name="reward"/> at distances <paramref name="d"/> (d·ln d is taken as 0 at d = 0).</summary>
    public static OveroptimizationFit FitRl(IReadOnlyList<double> d, IReadOnlyList<double> reward) =>
        Fit(OveroptimizationForm.Rl, d, reward);

    static OveroptimizationFit Fit(OveroptimizationForm form, IReadOnlyList<double> d, IReadOnlyList<double> reward)
    {
        ArgumentNullException.ThrowIfNull(d);
        ArgumentNullException.ThrowIfNull(reward);
        string name = form == OveroptimizationForm.BestOfN ? "FitBestOfN" : "FitRl";
        if (d.Count != reward.Count)
            throw new ArgumentException($"{name} got {d.Count} distances but {reward.Count} rewards; pass one reward per distance.", nameof(reward));
        for (int i = 0; i < d.Count; i++)
        {
            if (!(d[i] >= 0) || double.IsInfinity(d[i]))
                throw new ArgumentException($"{name}: d[{i}] is {d[i]}; distances d = √KL must be finite and ≥ 0.", nameof(d));
            if (!double.IsFinite(reward[i]))
                throw new ArgumentException($"{name}: reward[{i}] is {reward[i]}; rewards must be finite numbers.", nameof(reward));
        }
        // Both features vanish at d = 0 and their ratio (−d, or −ln d) is injective for d > 0: two distinct positive
        // distances make the design matrix full rank.
        if (d.Where(x => x > 0).Distinct().Count() < 2)
            throw new ArgumentException($"{name} needs at least 2 distinct distances d > 0 to determine α and β (points at d = 0 carry no information); got {d.Count} point(s).", nameof(d));

        var x = new double[d.Count][];
        for (int i = 0; i < d.Count; i++)
            x[i] = form == OveroptimizationForm.BestOfN
                ? new[] { d[i], -d[i] * d[i] }
                : new[] { d[i], d[i] == 0 ? 0.0 : -d[i] * Math.Log(d[i]) };
        var y = reward.ToArray();
        var coef = MultipleRegression.QR(x, y, intercept: false);
        double mean = y.Average(), ssTot = 0, ssRes = 0;
        for (int i = 0; i < y.Length; i++)
        {
            double e = y[i] - (coef[0] * x[i][0] + coef[1] * x[i][1]);
            ssRes += e * e;
            ssTot += (y[i] - mean) * (y[i] - mean);
        }
        double r2 = ssTot == 0 ? (ssRes == 0 ? 1.0 : 0.0) : 1 - ssRes / ssTot;
        return new OveroptimizationFit(form, coef[0], coef[1], r2, y.Length);
    }

    /// <summary>
    /// The expected gold and proxy reward of best-of-<paramref name="n"/> selection by the proxy, computed exactly for n
    /// draws (with replacement) from a pool of completions sampled once from π_ref: sort the pool by proxy score; the
    /// winner is the k-th lowest distinct proxy value with probability (F_k)ⁿ − (F_(k−1))ⁿ, F = fraction of the pool at or
    /// below it (tied proxy scores share their mean gold). One pool of M samples then gives a smooth curve for every
    /// n ≪ M without sampling n·batch completions per point (Gao et al. likewise estimate best-of-n from a fixed pool).
    /// </summary>
    /// <param name="proxy">The proxy reward of each pooled completion.</param>
    /// <param name="gold">The gold reward of the same completions.</param>
    /// <param name="n">Samples per best-of-n draw (≥ 1).</param>
    public static (double Gold, double Proxy) BestOfNExpectation(IReadOnlyList<double> proxy, IReadOnlyList<double> gold, int n)
    {
        ArgumentNullException.ThrowIfNull(proxy);
        ArgumentNullException.ThrowIfNull(gold);
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, $"n is {n}; best-of-n needs n ≥ 1 samples.");
        if (proxy.Count != gold.Count) throw new ArgumentException($"The pool has {proxy.Count} proxy scores but {gold.Count} gold scores; pass one of each per completion.", nameof(gold));
        if (proxy.Count == 0) throw new ArgumentException("The pool is empty; sample some completions from π_ref first.", nameof(proxy));
        if (proxy.Any(p => !double.IsFinite(p)) || gold.Any(g => !double.IsFinite(g)))
            throw new ArgumentException("The pool's proxy and gold scores must be finite numbers.", nameof(proxy));
        int m = proxy.Count;
        var order = Enumerable.Range(0, m).OrderBy(i => proxy[i]).ToArray();
        double expGold = 0, expProxy = 0, below = 0;
        for (int start = 0; start < m;)
        {
            int end = start;
            double goldSum = 0;
            while (end < m && proxy[order[end]] == proxy[order[start]]) goldSum += gold[order[end++]];
            double p = Math.Pow((double)end / m, n) - Math.Pow(below, n);
            expGold += p * goldSum / (end - start);
            expProxy += p * proxy[order[start]];
            below = (double)end / m;
            start = end;
        }
        return (expGold, expProxy);
    }
}
