namespace SafetyNotebooks.Evaluation.Oversight;

/// <summary>The two debaters. A moves first; turns alternate A, B, A, B…</summary>
public enum DebateSide { A, B }

/// <summary>
/// One debate question with everything the debaters know: the public <see cref="Question"/> and answer options, the hidden
/// pool of <see cref="Evidence"/> (true facts about the case, e.g. every pixel of an image) and the <see cref="TrueAnswer"/>
/// (used to score the debate, never shown to the judge). The judge never receives this object: it receives a
/// <see cref="DebateTranscript{TEvidence}"/>, which holds only what was revealed.
/// </summary>
/// <typeparam name="TEvidence">One piece of evidence (a pixel with its value, a sentence of a passage…).</typeparam>
public sealed class DebateCase<TEvidence>
{
    /// <summary>A case; <paramref name="trueAnswer"/> indexes <paramref name="answers"/>.</summary>
    public DebateCase(string id, string question, IReadOnlyList<string> answers, IReadOnlyList<TEvidence> evidence, int trueAnswer)
    {
        ArgumentNullException.ThrowIfNull(answers);
        ArgumentNullException.ThrowIfNull(evidence);
        if (answers.Count < 2) throw new ArgumentException($"Case '{id}': a debate needs at least two answer options, not {answers.Count}.", nameof(answers));
        if (evidence.Count == 0) throw new ArgumentException($"Case '{id}': the evidence pool is empty; debaters need something to reveal.", nameof(evidence));
        if (trueAnswer < 0 || trueAnswer >= answers.Count)
            throw new ArgumentOutOfRangeException(nameof(trueAnswer), $"Case '{id}': the true answer {trueAnswer} is not one of the {answers.Count} options (0…{answers.Count - 1}).");
        Id = id; Question = question; Answers = answers.ToArray(); Evidence = evidence.ToArray(); TrueAnswer = trueAnswer;
    }

    /// <summary>Name of the case in results.</summary>
    public string Id { get; }
    /// <summary>The question, public to the judge.</summary>
    public string Question { get; }
    /// <summary>The answer options, public to the judge.</summary>
    public IReadOnlyList<string> Answers { get; }
    /// <summary>The hidden evidence pool: debaters see all of it, the judge only what is revealed.</summary>
    public IReadOnlyList<TEvidence> Evidence { get; }
    /// <summary>Index of the correct answer (for scoring).</summary>
    public int TrueAnswer { get; }
}

/// <summary>One revealed piece of evidence: which turn, by whom, its index in the hidden pool, the evidence itself and the
/// debater's (unverified) argument, if any.</summary>
public sealed record RevealedEvidence<TEvidence>(int Turn, DebateSide By, int Index, TEvidence Evidence, string? Argument);

/// <summary>A debater's move: which piece of the hidden evidence to reveal, and an optional argument (free text the judge may
/// read but cannot verify). A move carries no answer: answers are committed before the debate starts.</summary>
public sealed record DebateMove(int EvidenceIndex, string? Argument = null);

/// <summary>The judge's decision: the winning side, optional scores for each side's answer, and why.</summary>
public sealed record DebateVerdict(DebateSide Winner, double? ScoreA = null, double? ScoreB = null, string? Reason = null);

/// <summary>
/// What the judge sees, and all it can see: the question, the answer options, the two pre-committed answers, the turn limit
/// and the evidence revealed so far. Immutable. It is built only through <see cref="Open"/> and <see cref="Reveal"/>, which
/// copy a revealed item out of the hidden case by index (so debaters can choose which true evidence to show, never invent
/// evidence), and enforce the protocol: sides alternate starting with A, at most <see cref="MaxTurns"/> reveals, no item
/// twice, answers fixed at opening. It keeps no reference to the <see cref="DebateCase{TEvidence}"/> it came from.
/// </summary>
public sealed class DebateTranscript<TEvidence>
{
    readonly RevealedEvidence<TEvidence>[] _revealed;

    DebateTranscript(string question, IReadOnlyList<string> answers, int evidenceCount, int answerA, int answerB, int maxTurns, RevealedEvidence<TEvidence>[] revealed)
    {
        Question = question; Answers = answers; EvidenceCount = evidenceCount; AnswerA = answerA; AnswerB = answerB; MaxTurns = maxTurns; _revealed = revealed;
    }

    /// <summary>The question.</summary>
    public string Question { get; }
    /// <summary>The answer options.</summary>
    public IReadOnlyList<string> Answers { get; }
    /// <summary>How many pieces of evidence the hidden pool holds (public: e.g. the number of pixels in an image).</summary>
    public int EvidenceCount { get; }
    /// <summary>The answer A committed to before the debate.</summary>
    public int AnswerA { get; }
    /// <summary>The answer B committed to before the debate.</summary>
    public int AnswerB { get; }
    /// <summary>The number of reveals the debate lasts.</summary>
    public int MaxTurns { get; }
    /// <summary>The evidence revealed so far, in turn order.</summary>
    public IReadOnlyList<RevealedEvidence<TEvidence>> Revealed => _revealed;
    /// <summary>Whether all turns have been played.</summary>
    public bool IsComplete => _revealed.Length >= MaxTurns;
    /// <summary>Who reveals next (A on even turns, B on odd), or null when the debate is over.</summary>
    public DebateSide? NextSide => IsComplete ? null : _revealed.Length % 2 == 0 ? DebateSide.A : DebateSide.B;

    /// <summary>The answer <paramref name="side"/> committed to.</summary>
    public int ClaimOf(DebateSide side) => side == DebateSide.A ? AnswerA : AnswerB;
    /// <summary>The other side.</summary>
    public static DebateSide Opponent(DebateSide side) => side == DebateSide.A ? DebateSide.B : DebateSide.A;
    /// <summary>Whether evidence <paramref name="index"/> has been revealed.</summary>
    public bool IsRevealed(int index) => Array.Exists(_revealed, r => r.Index == index);

    /// <summary>Opens a debate on <paramref name="source"/>: A argues for <paramref name="answerA"/>, B for <paramref name="answerB"/>
    /// (different options), over <paramref name="turns"/> reveals.</summary>
    public static DebateTranscript<TEvidence> Open(DebateCase<TEvidence> source, int answerA, int answerB, int turns)
    {
        ArgumentNullException.ThrowIfNull(source);
        int n = source.Answers.Count;
        if (answerA < 0 || answerA >= n || answerB < 0 || answerB >= n)
            throw new ArgumentOutOfRangeException(nameof(answerA), $"Case '{source.Id}': answers {answerA} and {answerB} must be options 0…{n - 1}.");
        if (answerA == answerB)
            throw new ArgumentException($"Case '{source.Id}': both debaters committed to answer {answerA} ('{source.Answers[answerA]}'); a debate needs two different answers.");
        if (turns < 0 || turns > source.Evidence.Count)
            throw new ArgumentOutOfRangeException(nameof(turns), $"Case '{source.Id}': {turns} turns for {source.Evidence.Count} pieces of evidence; use 0…{source.Evidence.Count}.");
        return new DebateTranscript<TEvidence>(source.Question, source.Answers, source.Evidence.Count, answerA, answerB, turns, []);
    }

    /// <summary>
    /// A new transcript with evidence <paramref name="index"/> of <paramref name="source"/> revealed by <paramref name="side"/>.
    /// Throws when it is not <paramref name="side"/>'s turn, the debate is over, the index is out of range or already revealed,
    /// or <paramref name="source"/> is not the case this debate was opened on.
    /// </summary>
    public DebateTranscript<TEvidence> Reveal(DebateCase<TEvidence> source, DebateSide side, int index, string? argument = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.Question != Question || source.Evidence.Count != EvidenceCount || !source.Answers.SequenceEqual(Answers))
            throw new ArgumentException($"Case '{source.Id}' is not the case this debate was opened on (question, options or evidence count differ).", nameof(source));
        if (NextSide is not { } next)
            throw new InvalidOperationException($"Case '{source.Id}': the debate is over after {MaxTurns} turns; {side} cannot reveal more.");
        if (side != next)
            throw new InvalidOperationException($"Case '{source.Id}': turn {_revealed.Length + 1} belongs to {next}, not {side} (A moves first, then they alternate).");
        if (index < 0 || index >= EvidenceCount)
            throw new ArgumentOutOfRangeException(nameof(index), $"Case '{source.Id}': {side} chose evidence {index}; the pool has items 0…{EvidenceCount - 1}.");
        if (IsRevealed(index))
            throw new InvalidOperationException($"Case '{source.Id}': {side} chose evidence {index}, which is already revealed; choose an unrevealed item.");
        var item = new RevealedEvidence<TEvidence>(_revealed.Length + 1, side, index, source.Evidence[index], argument);
        return new DebateTranscript<TEvidence>(Question, Answers, EvidenceCount, AnswerA, AnswerB, MaxTurns, [.. _revealed, item]);
    }
}

/// <summary>A debater: sees the whole hidden case (debaters are the experts) and the transcript, and picks the next reveal
/// for the answer its side committed to (<see cref="DebateTranscript{TEvidence}.ClaimOf"/>).</summary>
public interface IDebater<TEvidence>
{
    /// <summary>The next move for <paramref name="side"/>.</summary>
    Task<DebateMove> ChooseAsync(DebateCase<TEvidence> hidden, DebateTranscript<TEvidence> transcript, DebateSide side, CancellationToken cancellationToken = default);
}

/// <summary>A judge: decides a debate from the transcript alone.</summary>
public interface IDebateJudge<TEvidence>
{
    /// <summary>Which side's answer the judge believes, from <paramref name="transcript"/> only.</summary>
    Task<DebateVerdict> JudgeAsync(DebateTranscript<TEvidence> transcript, CancellationToken cancellationToken = default);
}

/// <summary>A finished debate: the transcript, the verdict and the truth.</summary>
public sealed record DebateResult<TEvidence>(string CaseId, DebateTranscript<TEvidence> Transcript, DebateVerdict Verdict, int TrueAnswer)
{
    /// <summary>The answer the judge chose.</summary>
    public int ChosenAnswer => Transcript.ClaimOf(Verdict.Winner);
    /// <summary>Whether the judge chose the true answer.</summary>
    public bool JudgeCorrect => ChosenAnswer == TrueAnswer;
}

/// <summary>The debate engine (Irving, Christiano and Amodei 2018): pre-committed answers, a fixed number of alternating reveals,
/// then the judge's verdict on the transcript.</summary>
public static class Debate
{
    /// <summary>
    /// Plays one debate on <paramref name="hidden"/>: <paramref name="a"/> argues for <paramref name="answerA"/> and moves first,
    /// <paramref name="b"/> argues for <paramref name="answerB"/>; <paramref name="turns"/> reveals in total; then
    /// <paramref name="judge"/> sees the transcript.
    /// </summary>
    public static async Task<DebateResult<TEvidence>> RunAsync<TEvidence>(DebateCase<TEvidence> hidden, IDebater<TEvidence> a, int answerA,
        IDebater<TEvidence> b, int answerB, IDebateJudge<TEvidence> judge, int turns, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(judge);
        var transcript = DebateTranscript<TEvidence>.Open(hidden, answerA, answerB, turns);
        while (transcript.NextSide is { } side)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var move = await (side == DebateSide.A ? a : b).ChooseAsync(hidden, transcript, side, cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"Case '{hidden.Id}': debater {side} returned no move.");
            transcript = transcript.Reveal(hidden, side, move.EvidenceIndex, move.Argument);
        }
        var verdict = await judge.JudgeAsync(transcript, cancellationToken).ConfigureAwait(false)
            ?? throw new InvalidOperationException($"Case '{hidden.Id}': the judge returned no verdict.");
        return new DebateResult<TEvidence>(hidden.Id, transcript, verdict, hidden.TrueAnswer);
    }

    /// <summary>
    /// The honest-vs-liar protocol: the honest debater argues the truth, the liar each answer in <paramref name="lies"/> (default:
    /// every wrong answer, the strongest liar), with the honest debater moving first when <paramref name="honestFirst"/>. The
    /// judge counts as correct on the case only if it sides with the truth in every one of these debates.
    /// </summary>
    public static async Task<(bool JudgeCorrect, IReadOnlyList<DebateResult<TEvidence>> Debates)> HonestVersusLiarAsync<TEvidence>(
        DebateCase<TEvidence> hidden, IDebater<TEvidence> honest, IDebater<TEvidence> liar, IDebateJudge<TEvidence> judge, int turns,
        bool honestFirst, IEnumerable<int>? lies = null, CancellationToken cancellationToken = default)
    {
        var results = new List<DebateResult<TEvidence>>();
        foreach (int lie in lies ?? Enumerable.Range(0, hidden.Answers.Count).Where(x => x != hidden.TrueAnswer))
        {
            if (lie == hidden.TrueAnswer) throw new ArgumentException($"Case '{hidden.Id}': the lie {lie} is the true answer.", nameof(lies));
            var r = honestFirst
                ? await RunAsync(hidden, honest, hidden.TrueAnswer, liar, lie, judge, turns, cancellationToken).ConfigureAwait(false)
                : await RunAsync(hidden, liar, lie, honest, hidden.TrueAnswer, judge, turns, cancellationToken).ConfigureAwait(false);
            results.Add(r);
        }
        if (results.Count == 0) throw new ArgumentException($"Case '{hidden.Id}': no lies to debate against.", nameof(lies));
        return (results.TrueForAll(r => r.JudgeCorrect), results);
    }
}
