using Microsoft.Data.Analysis;
using SafetyNotebooks.Statistics;

namespace SafetyNotebooks.Evaluation.Oversight;

/// <summary>
/// A judge's accuracy under two conditions on the same items (e.g. without and with debate): each accuracy with its Wilson
/// interval, the difference (treatment − baseline) with Newcombe's interval and with a paired bootstrap interval, and McNemar's
/// exact test on the pairs. Newcombe's interval treats the two accuracies as independent samples: when the outcomes are
/// positively correlated across conditions (the usual case) it is wider than a paired interval, when they are negatively
/// correlated it is too narrow. <see cref="PairedDifference"/> resamples items, keeping each item's pair of outcomes together.
/// </summary>
public sealed record AccuracyComparison(string Baseline, Interval BaselineAccuracy, string Treatment, Interval TreatmentAccuracy,
    Interval Difference, Interval PairedDifference, TestResult McNemar, int Items)
{
    /// <summary>Compares <paramref name="treatmentCorrect"/> with <paramref name="baselineCorrect"/> (one entry per item, same order).</summary>
    public static AccuracyComparison Of(string baseline, IReadOnlyList<bool> baselineCorrect, string treatment, IReadOnlyList<bool> treatmentCorrect, double level = 0.95)
    {
        ArgumentNullException.ThrowIfNull(baselineCorrect);
        ArgumentNullException.ThrowIfNull(treatmentCorrect);
        if (baselineCorrect.Count != treatmentCorrect.Count)
            throw new ArgumentException($"'{baseline}' has {baselineCorrect.Count} outcomes and '{treatment}' {treatmentCorrect.Count}: compare the two conditions on the same items.");
        if (baselineCorrect.Count == 0) throw new ArgumentException("No items to compare.", nameof(baselineCorrect));
        int n = baselineCorrect.Count, b = baselineCorrect.Count(x => x), t = treatmentCorrect.Count(x => x);
        var deltas = Enumerable.Range(0, n).Select(i => (treatmentCorrect[i] ? 1.0 : 0) - (baselineCorrect[i] ? 1.0 : 0)).ToArray();
        var paired = n < 2 ? new Interval(deltas.Average(), deltas[0], deltas[0], level, "bootstrap-percentile")
            : Bootstrap.Percentile(deltas, d => d.Average(), resamples: 2000, level: level, seed: 0);
        return new AccuracyComparison(baseline, Rates.Wilson(b, n, level), treatment, Rates.Wilson(t, n, level),
            Rates.Difference(t, n, b, n, level), paired, HypothesisTests.McNemar(treatmentCorrect, baselineCorrect), n);
    }

    /// <summary>Whether both intervals of the difference (Newcombe's and the paired bootstrap) lie entirely above 0.</summary>
    public bool TreatmentHelps => Difference.Lower > 0 && PairedDifference.Lower > 0;

    /// <summary>One row per condition plus the two intervals of the difference: <c>condition</c>, <c>accuracy</c>, <c>lower</c>, <c>upper</c>, <c>n</c>.</summary>
    public DataFrame ToDataFrame()
    {
        var rows = new[] { (Baseline, BaselineAccuracy), (Treatment, TreatmentAccuracy), ($"difference, Newcombe; McNemar p = {McNemar.PValue:0.####}", Difference),
            ("difference, paired bootstrap", PairedDifference) };
        return new DataFrame(new StringDataFrameColumn("condition", rows.Select(r => r.Item1)),
            new DoubleDataFrameColumn("accuracy", rows.Select(r => r.Item2.Estimate)), new DoubleDataFrameColumn("lower", rows.Select(r => r.Item2.Lower)),
            new DoubleDataFrameColumn("upper", rows.Select(r => r.Item2.Upper)), new Int32DataFrameColumn("n", rows.Select(_ => Items)));
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Baseline}: {BaselineAccuracy}; {Treatment}: {TreatmentAccuracy}; difference {Difference}, paired {PairedDifference}; {McNemar}";
}

/// <summary>Runs the honest-vs-liar debate on many cases and compares the judge's accuracy with its accuracy without debate.</summary>
public static class DebateExperiment
{
    /// <summary>
    /// For each case, <see cref="Debate.HonestVersusLiarAsync"/> (the honest debater moves first on even-numbered cases, second on
    /// odd ones, so neither order is favoured); the judge is correct with debate when it sides with the truth against every lie.
    /// <paramref name="withoutDebate"/> is the same judge's correctness on the same cases without debate.
    /// </summary>
    public static async Task<(AccuracyComparison Comparison, bool[] WithDebate, IReadOnlyList<DebateResult<TEvidence>> Debates)> RunAsync<TEvidence>(
        IReadOnlyList<DebateCase<TEvidence>> cases, IReadOnlyList<bool> withoutDebate, IDebater<TEvidence> honest, IDebater<TEvidence> liar,
        IDebateJudge<TEvidence> judge, int turns, Func<DebateCase<TEvidence>, IEnumerable<int>>? lies = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cases);
        ArgumentNullException.ThrowIfNull(withoutDebate);
        if (cases.Count != withoutDebate.Count) throw new ArgumentException($"{cases.Count} cases but {withoutDebate.Count} no-debate outcomes: give one per case.");
        var with = new bool[cases.Count];
        var debates = new List<DebateResult<TEvidence>>();
        for (int i = 0; i < cases.Count; i++)
        {
            var (correct, played) = await Debate.HonestVersusLiarAsync(cases[i], honest, liar, judge, turns, honestFirst: i % 2 == 0, lies?.Invoke(cases[i]), cancellationToken).ConfigureAwait(false);
            with[i] = correct;
            debates.AddRange(played);
        }
        return (AccuracyComparison.Of($"judge alone ({turns} random items)", withoutDebate, $"judge after debate ({turns} debated items)", with), with, debates);
    }
}
