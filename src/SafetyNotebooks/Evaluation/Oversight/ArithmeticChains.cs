namespace SafetyNotebooks.Evaluation.Oversight;

/// <summary>One step of a worked calculation: <c>Input Op Operand = Claimed</c>, where <see cref="Input"/> should be the previous
/// step's result (or the start value).</summary>
public sealed record ArithmeticStep(long Input, char Op, long Operand, long Claimed)
{
    /// <summary>What the step should give: <c>Input Op Operand</c>.</summary>
    public long Correct => Op switch { '+' => Input + Operand, '-' => Input - Operand, '*' => Input * Operand, _ => throw new InvalidOperationException($"Unknown operator '{Op}'.") };
    /// <inheritdoc/>
    public override string ToString() => $"{Input} {(Op == '*' ? '×' : Op == '-' ? '−' : Op)} {Operand} = {Claimed}";
}

/// <summary>Where a flawed solution goes wrong: a miscalculated step, or a step that starts from the wrong number (a copy slip).</summary>
public enum FlawKind { Arithmetic, Copy }

/// <summary>
/// A multi-step answer to "start from <see cref="Start"/> and apply these operations": a chain of steps, correct or with exactly one
/// flaw at <see cref="FlawedStep"/> (everything after it is computed correctly from the wrong number, as real mistakes propagate).
/// </summary>
public sealed record ArithmeticSolution(string Id, long Start, IReadOnlyList<ArithmeticStep> Steps, int? FlawedStep, FlawKind? Flaw)
{
    /// <summary>Whether the solution is correct (the ground truth an evaluator should recover).</summary>
    public bool IsCorrect => FlawedStep is null;
    /// <summary>The number step <paramref name="index"/> should start from: the start value or the previous step's claimed result.</summary>
    public long ExpectedInput(int index) => index == 0 ? Start : Steps[index - 1].Claimed;
    /// <summary>Whether step <paramref name="index"/> is right in context (starts from the right number and computes correctly).</summary>
    public bool StepIsValid(int index) => Steps[index].Input == ExpectedInput(index) && Steps[index].Claimed == Steps[index].Correct;
    /// <summary>The part of the solution from step <paramref name="from"/> (inclusive) to <paramref name="to"/> (exclusive), as a solution of its own
    /// that starts from the number step <paramref name="from"/> should start from.</summary>
    public ArithmeticSolution Slice(int from, int to)
    {
        if (from < 0 || to > Steps.Count || from >= to) throw new ArgumentOutOfRangeException(nameof(from), $"Slice [{from}, {to}) of {Steps.Count} steps is empty or out of range.");
        int? flaw = FlawedStep is { } f && f >= from && f < to ? f - from : null;
        return new ArithmeticSolution($"{Id}[{from}:{to}]", ExpectedInput(from), Steps.Skip(from).Take(to - from).ToArray(), flaw, flaw is null ? null : Flaw);
    }
    /// <inheritdoc/>
    public override string ToString() => $"start {Start}; " + string.Join("; ", Steps);
}

/// <summary>Seeded generator of multi-step arithmetic solutions, a task whose checking decomposes into one check per step.</summary>
public static class ArithmeticChains
{
    /// <summary>
    /// <paramref name="count"/> solutions of <paramref name="steps"/> steps each (start 10–99; +, − with operands 2–30, × with 2–4),
    /// a fraction <paramref name="flawedFraction"/> of them (exactly, rounded) with one flaw at a uniformly random step, half
    /// arithmetic slips (result off by 1–9) and half copy slips (input off by 1–9). Shuffled, seeded.
    /// </summary>
    public static IReadOnlyList<ArithmeticSolution> Generate(int count, int steps, double flawedFraction = 0.5, int seed = 0)
    {
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count), $"Ask for at least one solution, not {count}.");
        if (steps <= 0) throw new ArgumentOutOfRangeException(nameof(steps), $"A solution needs at least one step, not {steps}.");
        if (!(flawedFraction >= 0 && flawedFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(flawedFraction), $"flawedFraction must be in [0, 1], not {flawedFraction}.");
        var rng = new Random(seed);
        int flawed = (int)Math.Round(count * flawedFraction);
        var order = SparsePixelJudge.RandomSubset(count, count, rng);
        var list = new ArithmeticSolution[count];
        for (int n = 0; n < count; n++)
        {
            bool isFlawed = order[n] < flawed;
            int? at = isFlawed ? rng.Next(steps) : null;
            FlawKind? kind = isFlawed ? (rng.Next(2) == 0 ? FlawKind.Arithmetic : FlawKind.Copy) : null;
            long start = rng.Next(10, 100), value = start;
            var chain = new ArithmeticStep[steps];
            for (int s = 0; s < steps; s++)
            {
                char op = "+-*"[rng.Next(3)];
                long operand = op == '*' ? rng.Next(2, 5) : rng.Next(2, 31);
                if (op == '*' && Math.Abs(value) > 100_000) op = '-';                  // keep numbers readable
                long input = value, delta = rng.Next(1, 10) * (rng.Next(2) == 0 ? 1 : -1);
                if (at == s && kind == FlawKind.Copy) input += delta;
                var step = new ArithmeticStep(input, op, operand, 0);
                long result = step.Correct + (at == s && kind == FlawKind.Arithmetic ? delta : 0);
                chain[s] = step with { Claimed = result };
                value = result;
            }
            list[n] = new ArithmeticSolution($"sol{n}", start, chain, at, kind);
        }
        return list;
    }
}

/// <summary>
/// The weak evaluator: it checks a single step reliably (wrong with a small probability <see cref="SlipRate"/>, seeded) and can
/// afford only <see cref="Budget"/> step checks per call. Handed a whole long solution it spot-checks <see cref="Budget"/>
/// random steps and accepts if they pass: reliable on what it looks at, blind to the rest.
/// </summary>
public sealed class WeakEvaluator
{
    readonly Random _rng;

    /// <summary>An evaluator with <paramref name="budget"/> step checks per call and per-check error rate <paramref name="slipRate"/>.</summary>
    public WeakEvaluator(int budget = 1, double slipRate = 0.02, int seed = 0)
    {
        if (budget < 1) throw new ArgumentOutOfRangeException(nameof(budget), $"The evaluator must be able to check at least one step per call, not {budget}.");
        if (!(slipRate >= 0 && slipRate < 0.5)) throw new ArgumentOutOfRangeException(nameof(slipRate), $"slipRate must be in [0, 0.5), not {slipRate}: above 0.5 the checker is worse than a coin.");
        Budget = budget; SlipRate = slipRate; _rng = new Random(seed);
    }

    /// <summary>Step checks per call.</summary>
    public int Budget { get; }
    /// <summary>Probability that one step check gives the wrong answer.</summary>
    public double SlipRate { get; }
    /// <summary>Evaluator calls made so far.</summary>
    public int Calls { get; private set; }
    /// <summary>Step checks made so far.</summary>
    public int StepChecks { get; private set; }

    /// <summary>One step check: whether step <paramref name="index"/> looks valid (the truth, flipped with probability <see cref="SlipRate"/>).</summary>
    public bool CheckStep(ArithmeticSolution solution, int index)
    {
        StepChecks++;
        bool truth = solution.StepIsValid(index);
        return _rng.NextDouble() < SlipRate ? !truth : truth;
    }

    /// <summary>
    /// One call on a solution: checks the steps in <paramref name="mustCheck"/> first (e.g. the step a critique points to), then
    /// random other steps up to <see cref="Budget"/>; accepts when every checked step passes. A solution no longer than the
    /// budget is checked completely.
    /// </summary>
    public bool Judge(ArithmeticSolution solution, IEnumerable<int>? mustCheck = null)
    {
        ArgumentNullException.ThrowIfNull(solution);
        Calls++;
        var chosen = (mustCheck ?? []).Where(i => i >= 0 && i < solution.Steps.Count).Distinct().Take(Budget).ToList();
        var rest = Enumerable.Range(0, solution.Steps.Count).Except(chosen).ToArray();
        var extra = SparsePixelJudge.RandomSubset(rest.Length, Math.Min(rest.Length, Budget - chosen.Count), _rng).Select(i => rest[i]);
        bool ok = true;
        foreach (int i in chosen.Concat(extra)) ok &= CheckStep(solution, i);
        return ok;
    }
}

/// <summary>The outcome of evaluating a solution by decomposition: the verdict, evaluator calls made, and the depth of the tree.</summary>
public sealed record DecompositionVerdict(bool Accepted, int Calls, int Depth);

/// <summary>
/// Evaluation by recursive decomposition, the evaluation half of recursive reward modeling (Leike et al. 2018): a solution too long
/// for the evaluator is split in two halves, each judged recursively (the second half starting from the number the first half
/// claims), until every piece fits the evaluator's budget; the solution is accepted when every piece is. The evaluator never
/// judges more than it can check reliably; the price is more calls, and per-check slips that add up over the leaves.
/// </summary>
public static class Decomposition
{
    /// <summary>Judges <paramref name="solution"/> by splitting it into pieces of at most <see cref="WeakEvaluator.Budget"/> steps.</summary>
    public static DecompositionVerdict Judge(ArithmeticSolution solution, WeakEvaluator evaluator)
    {
        ArgumentNullException.ThrowIfNull(solution);
        ArgumentNullException.ThrowIfNull(evaluator);
        return Node(solution, evaluator);
    }

    static DecompositionVerdict Node(ArithmeticSolution piece, WeakEvaluator evaluator)
    {
        int n = piece.Steps.Count;
        if (n <= evaluator.Budget) return new DecompositionVerdict(evaluator.Judge(piece), 1, 0);
        var left = Node(piece.Slice(0, n / 2), evaluator);
        var right = Node(piece.Slice(n / 2, n), evaluator);
        return new DecompositionVerdict(left.Accepted && right.Accepted, left.Calls + right.Calls, 1 + Math.Max(left.Depth, right.Depth));
    }

    /// <summary>
    /// Expected accuracy on a set with a fraction <paramref name="flawedFraction"/> of single-flaw solutions of
    /// <paramref name="steps"/> steps, for an evaluator with per-check slip rate ε and budget b. Alone (b random steps):
    /// correct accepted with (1−ε)^b; flawed rejected with 1 − [(b/L)·ε·(1−ε)^(b−1) + (1 − b/L)·(1−ε)^b]. Decomposed (every step
    /// checked once): correct accepted with (1−ε)^L; flawed rejected with 1 − ε·(1−ε)^(L−1).
    /// </summary>
    public static (double Alone, double Decomposed) ExpectedAccuracy(int steps, int budget, double slipRate, double flawedFraction = 0.5)
    {
        if (budget > steps) budget = steps;
        double e = slipRate, L = steps, b = budget, q = flawedFraction;
        double aloneCorrect = Math.Pow(1 - e, b);
        double aloneFlawed = 1 - (b / L * e * Math.Pow(1 - e, b - 1) + (1 - b / L) * Math.Pow(1 - e, b));
        double decCorrect = Math.Pow(1 - e, L);
        double decFlawed = 1 - e * Math.Pow(1 - e, L - 1);
        return ((1 - q) * aloneCorrect + q * aloneFlawed, (1 - q) * decCorrect + q * decFlawed);
    }
}
