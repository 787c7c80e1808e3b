namespace SafetyNotebooks.Evaluation.Oversight;

/// <summary>A critique of a solution: the step it claims is wrong (null = "no flaw found") and its text.</summary>
public sealed record Critique(int? PointsTo, string Text);

/// <summary>A helper model that writes critiques (Saunders et al. 2022, "Self-critiquing models for assisting human evaluators").</summary>
public interface ICritic
{
    /// <summary>A critique of <paramref name="solution"/>.</summary>
    Task<Critique> CritiqueAsync(ArithmeticSolution solution, CancellationToken cancellationToken = default);
}

/// <summary>
/// A stronger but imperfect helper: it checks every step (each check wrong with probability <paramref name="slipRate"/>, seeded)
/// and points to the first step that fails its check. It can point to a correct step (a false alarm) or miss a flaw.
/// </summary>
public sealed class CheckingCritic(double slipRate = 0.05, int seed = 0) : ICritic
{
    readonly WeakEvaluator _checker = new(budget: 1, slipRate: slipRate, seed: seed);

    /// <inheritdoc/>
    public Task<Critique> CritiqueAsync(ArithmeticSolution solution, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(solution);
        for (int i = 0; i < solution.Steps.Count; i++)
            if (!_checker.CheckStep(solution, i))
                return Task.FromResult(new Critique(i, $"Step {i + 1} is wrong: {solution.Steps[i]} (expected to start from {solution.ExpectedInput(i)})."));
        return Task.FromResult(new Critique(null, "No flaw found."));
    }
}

/// <summary>A misleading helper: always claims a uniformly random step is wrong (seeded), whatever the solution. What a judge
/// that trusts critiques without checking them is exposed to.</summary>
public sealed class MisleadingCritic(int seed = 0) : ICritic
{
    readonly Random _rng = new(seed);

    /// <inheritdoc/>
    public Task<Critique> CritiqueAsync(ArithmeticSolution solution, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(solution);
        int i = _rng.Next(solution.Steps.Count);
        return Task.FromResult(new Critique(i, $"Step {i + 1} is wrong."));
    }
}

/// <summary>How a judge uses a critique.</summary>
public enum CritiqueUse
{
    /// <summary>No critique: the weak evaluator spot-checks on its own.</summary>
    None,
    /// <summary>The judge spends its check on the step the critique points to, and rejects only if that check (or another) fails.</summary>
    Verify,
    /// <summary>The judge rejects whenever a critique claims a flaw, without checking it.</summary>
    Trust,
}

/// <summary>AI-assisted evaluation: a weak evaluator judging solutions with or without a helper's critiques.</summary>
public static class AssistedEvaluation
{
    /// <summary>
    /// The judge's verdict (accept = believes the solution correct) for each solution: with <see cref="CritiqueUse.None"/> the
    /// evaluator alone; with <see cref="CritiqueUse.Verify"/> it checks the step the critique points to first; with
    /// <see cref="CritiqueUse.Trust"/> it rejects whenever the critique names a step. Returns whether each verdict was right.
    /// </summary>
    public static async Task<bool[]> JudgeCorrectAsync(IReadOnlyList<ArithmeticSolution> solutions, WeakEvaluator evaluator, ICritic? critic, CritiqueUse use,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(solutions);
        ArgumentNullException.ThrowIfNull(evaluator);
        if (use != CritiqueUse.None && critic is null) throw new ArgumentException($"CritiqueUse.{use} needs a critic; pass one or use CritiqueUse.None.", nameof(critic));
        var correct = new bool[solutions.Count];
        for (int n = 0; n < solutions.Count; n++)
        {
            var s = solutions[n];
            bool accepted;
            if (use == CritiqueUse.None) accepted = evaluator.Judge(s);
            else
            {
                var c = await critic!.CritiqueAsync(s, cancellationToken).ConfigureAwait(false);
                accepted = use == CritiqueUse.Trust ? c.PointsTo is null : evaluator.Judge(s, c.PointsTo is { } i ? [i] : null);
            }
            correct[n] = accepted == s.IsCorrect;
        }
        return correct;
    }
}
