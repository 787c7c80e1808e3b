namespace SafetyNotebooks.Evaluation.Oversight;

/// <summary>
/// A one-step search debater: for every unrevealed item it asks a judge model (an <see cref="ITranscriptScorer{TEvidence}"/>)
/// what it would believe after that reveal, and reveals the item with the largest margin of its own answer's score over the
/// opponent's. Irving et al. used Monte Carlo tree search; greedy search is its one-ply version. The same class plays the
/// honest debater and the liar: what differs is only the answer committed to.
/// </summary>
public sealed class GreedyDebater<TEvidence>(ITranscriptScorer<TEvidence> scorer) : IDebater<TEvidence>
{
    readonly ITranscriptScorer<TEvidence> _scorer = scorer ?? throw new ArgumentNullException(nameof(scorer));

    /// <summary>The index with the largest margin among unrevealed items (the lowest index on ties), or −1 when all are revealed.</summary>
    public static int BestUnrevealed(IReadOnlyList<double> margins, IReadOnlyList<bool> revealed)
    {
        ArgumentNullException.ThrowIfNull(margins);
        ArgumentNullException.ThrowIfNull(revealed);
        if (margins.Count != revealed.Count) throw new ArgumentException($"{margins.Count} margins for {revealed.Count} items: give one margin per item.");
        int best = -1;
        for (int i = 0; i < margins.Count; i++)
            if (!revealed[i] && (best < 0 || margins[i] > margins[best])) best = i;
        return best;
    }

    /// <inheritdoc/>
    public Task<DebateMove> ChooseAsync(DebateCase<TEvidence> hidden, DebateTranscript<TEvidence> transcript, DebateSide side, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(transcript);
        int own = transcript.ClaimOf(side), other = transcript.ClaimOf(DebateTranscript<TEvidence>.Opponent(side));
        var candidates = Enumerable.Range(0, transcript.EvidenceCount).Where(i => !transcript.IsRevealed(i)).ToArray();
        var scores = _scorer.Score(candidates.Select(i => transcript.Reveal(hidden, side, i)).ToArray());
        var margins = new double[transcript.EvidenceCount];
        var revealed = new bool[transcript.EvidenceCount];
        for (int i = 0; i < revealed.Length; i++) revealed[i] = transcript.IsRevealed(i);
        for (int n = 0; n < candidates.Length; n++) margins[candidates[n]] = scores[n][own] - scores[n][other];
        int pick = BestUnrevealed(margins, revealed);
        return Task.FromResult(new DebateMove(pick, $"reveal {pick}: margin {margins[pick]:0.00} for {own} over {other}"));
    }
}

/// <summary>A debater that reveals a uniformly random unrevealed item (seeded): a debate without argument, the control.</summary>
public sealed class RandomDebater<TEvidence>(int seed) : IDebater<TEvidence>
{
    readonly Random _rng = new(seed);

    /// <inheritdoc/>
    public Task<DebateMove> ChooseAsync(DebateCase<TEvidence> hidden, DebateTranscript<TEvidence> transcript, DebateSide side, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transcript);
        var free = Enumerable.Range(0, transcript.EvidenceCount).Where(i => !transcript.IsRevealed(i)).ToArray();
        return Task.FromResult(new DebateMove(free[_rng.Next(free.Length)]));
    }
}
