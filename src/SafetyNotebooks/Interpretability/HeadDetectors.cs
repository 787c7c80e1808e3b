using SafetyNotebooks.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>How <see cref="HeadDetectors.DetectHead(ActivationCache, Tensor, Tensor, IEnumerable{ValueTuple{int, int}}?, bool, bool, HeadErrorMeasure, TextWriter?)"/> compares a pattern with a detection pattern (TransformerLens' <c>error_measure</c>).</summary>
public enum HeadErrorMeasure
{
    /// <summary><c>Σ (A ⊙ D) / Σ A</c>: the fraction of the head's attention that falls on the detection pattern's 1s (TransformerLens' default, "mul").</summary>
    Mul,
    /// <summary><c>1 − round(Σ |A − D| / n, 3)</c>: 1 for a perfect match, down to −1 (TransformerLens' "abs").</summary>
    Abs,
}

/// <summary>
/// Head detectors: one score per attention head, [n_layers, n_heads].
/// <para>
/// <b>ARENA 1.2 definition</b> (<see cref="PreviousTokenScore"/>, <see cref="DuplicateTokenScore"/>, <see cref="InductionScore"/>):
/// the mean attention on one offset diagonal of the pattern, averaged over the batch and the queries that have that key.
/// On a repeated random sequence <c>[bos] t₁…t_s t₁…t_s</c> (seqLen s, 2s + 1 positions): previous-token = mean of
/// <c>A[q, q−1]</c> over q ≥ 1; duplicate-token = mean of <c>A[q, q−s]</c> over the second-half queries q = s+1…2s;
/// induction = mean of <c>A[q, q−s+1]</c> over q = s+1…2s (ARENA averages the whole diagonal, which adds the two first-half
/// queries q = s−1, s; pass <c>secondHalfOnly: false</c> for that).
/// </para>
/// <para>
/// <b>TransformerLens' <c>head_detector</c></b> (<see cref="DetectHead(ActivationCache, Tensor, Tensor, IEnumerable{ValueTuple{int, int}}?, bool, bool, HeadErrorMeasure, TextWriter?)"/>):
/// builds a 0/1 detection pattern D from the <b>tokens</b> (previous token: the sub-diagonal; duplicate token: earlier positions
/// holding the same token; induction: those shifted one key to the right) and scores <c>Σ(A ⊙ D) / Σ A</c> over the whole
/// pattern (<see cref="HeadErrorMeasure.Mul"/>). It differs from ARENA's: the denominator counts every query, including those
/// with no 1 in their row (query 0 for previous-token; every first-occurrence query for duplicate/induction), so a perfect
/// previous-token head scores (n−1)/n, not 1; and it works on any text, not only repeated random tokens. Both are implemented.
/// </para>
/// </summary>
public static class HeadDetectors
{
    static Tensor AsBatched(Tensor pattern, string what)
    {
        if (pattern.dim() == 3) pattern = pattern.unsqueeze(0);
        if (pattern.dim() != 4 || pattern.shape[^1] != pattern.shape[^2])
            throw new ArgumentException($"{what} needs an attention pattern [batch, head, query_pos, key_pos] (or [head, q, k]) with q = k; got [{string.Join(", ", pattern.shape)}].", nameof(pattern));
        return pattern;
    }

    /// <summary>
    /// Mean of <c>pattern[..., q, q + offset]</c> over the batch and the queries q ≥ <paramref name="firstQuery"/> (and q + offset ≥ 0):
    /// one score per head, [head]. <paramref name="pattern"/> is [batch, head, q, k] or [head, q, k].
    /// </summary>
    /// <param name="pattern">Attention pattern.</param>
    /// <param name="offset">Key offset from the query, ≤ 0 (−1 = the previous position).</param>
    /// <param name="firstQuery">First query position counted.</param>
    public static Tensor OffsetDiagonalScore(Tensor pattern, int offset, int firstQuery = 0)
    {
        var p = AsBatched(pattern, nameof(OffsetDiagonalScore));
        long n = p.shape[^1];
        if (offset > 0 || -offset >= n)
            throw new ArgumentOutOfRangeException(nameof(offset), $"OffsetDiagonalScore: offset {offset} must be in [{-(n - 1)}, 0] for {n} positions (a causal pattern has no keys after the query).");
        using var scope = NewDisposeScope();
        var stripe = diagonal(p, offset, -2, -1);                          // [batch, head, n + offset]; entry i is query i - offset
        int skip = Math.Max(0, firstQuery + offset);                      // entries whose query is before firstQuery
        if (skip >= stripe.shape[^1])
            throw new ArgumentOutOfRangeException(nameof(firstQuery), $"OffsetDiagonalScore: no query ≥ {firstQuery} has a key at offset {offset} among {n} positions.");
        return stripe[TensorIndex.Ellipsis, TensorIndex.Slice(skip, null)].mean(new long[] { 0, 2 }).MoveToOuterDisposeScope();
    }

    /// <summary>ARENA's previous-token score per head: mean of <c>A[q, q−1]</c> over the batch and every query q ≥ 1. [head].</summary>
    public static Tensor PreviousTokenScore(Tensor pattern) => OffsetDiagonalScore(pattern, -1, 1);

    /// <summary>
    /// Duplicate-token score per head on a repeated sequence (<c>[bos]</c> + seqLen tokens + the same again): mean of
    /// <c>A[q, q−seqLen]</c> (the earlier copy of the current token) over the second-half queries q = seqLen+1 … 2·seqLen. [head].
    /// </summary>
    public static Tensor DuplicateTokenScore(Tensor pattern, int seqLen)
    {
        CheckRepeated(pattern, seqLen, nameof(DuplicateTokenScore));
        return OffsetDiagonalScore(pattern, -seqLen, seqLen + 1);
    }

    /// <summary>
    /// Induction score per head on a repeated sequence: mean of <c>A[q, q−seqLen+1]</c> (the token after the earlier copy) over
    /// the second-half queries q = seqLen+1 … 2·seqLen; with <paramref name="secondHalfOnly"/> false, over the whole diagonal as
    /// ARENA (also q = seqLen−1, seqLen). [head].
    /// </summary>
    public static Tensor InductionScore(Tensor pattern, int seqLen, bool secondHalfOnly = true)
    {
        CheckRepeated(pattern, seqLen, nameof(InductionScore));
        return OffsetDiagonalScore(pattern, -(seqLen - 1), secondHalfOnly ? seqLen + 1 : 0);
    }

    static void CheckRepeated(Tensor pattern, int seqLen, string what)
    {
        if (seqLen < 2 || pattern.shape[^1] < 2 * seqLen + 1)
            throw new ArgumentException($"{what}: a repeated sequence of seqLen {seqLen} has 2·seqLen + 1 = {2 * seqLen + 1} positions (with bos), but the pattern has {pattern.shape[^1]}; pass the seqLen used to build the sequence (≥ 2).", nameof(seqLen));
    }

    /// <summary>
    /// Applies a per-layer score (pattern [batch, head, q, k] → [head]) to every layer's cached pattern: [n_layers, n_heads].
    /// </summary>
    /// <param name="cache">A cache with <c>hook_pattern</c> of every layer.</param>
    /// <param name="score">E.g. <see cref="PreviousTokenScore"/>, or <c>p => HeadDetectors.InductionScore(p, seqLen)</c>.</param>
    public static Tensor Scores(ActivationCache cache, Func<Tensor, Tensor> score)
    {
        ArgumentNullException.ThrowIfNull(cache);
        using var scope = NewDisposeScope();
        var rows = Enumerable.Range(0, cache.Model.Cfg.NLayers).Select(l => score(cache["pattern", l]).to_type(ScalarType.Float32).cpu()).ToArray();
        return stack(rows).MoveToOuterDisposeScope();
    }

    // ---- TransformerLens' head_detector ------------------------------------------------------------------------------

    /// <summary>TransformerLens' previous-token detection pattern for n positions: 1 at [q, q−1], else 0. [n, n].</summary>
    public static Tensor PreviousTokenDetectionPattern(int n)
    {
        using var scope = NewDisposeScope();
        var d = zeros(n, n);
        if (n > 1) d[TensorIndex.Slice(1, null), TensorIndex.Slice(null, -1)] = eye(n - 1);
        return d.MoveToOuterDisposeScope();
    }

    /// <summary>TransformerLens' duplicate-token detection pattern: 1 at [q, k] for k &lt; q with tokens[k] = tokens[q]. [n, n].</summary>
    /// <param name="tokens">One sequence, [pos] (or [1, pos]).</param>
    public static Tensor DuplicateTokenDetectionPattern(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var t = tokens.reshape(-1).to_type(ScalarType.Int64).cpu();
        var eq = t.unsqueeze(1).eq(t.unsqueeze(0)).to_type(ScalarType.Float32);    // [q, k]
        return eq.tril(-1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// TransformerLens' induction detection pattern: the duplicate-token pattern shifted one key to the right (attend to the token
    /// after an earlier copy of the current one), first column 0, lower triangular. [n, n].
    /// </summary>
    public static Tensor InductionDetectionPattern(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var dup = DuplicateTokenDetectionPattern(tokens);
        long n = dup.shape[0];
        var shifted = zeros(n, n);
        if (n > 1) shifted[TensorIndex.Colon, TensorIndex.Slice(1, null)] = dup[TensorIndex.Colon, TensorIndex.Slice(null, -1)];
        return shifted.tril().MoveToOuterDisposeScope();
    }

    /// <summary>The named detection pattern: "previous_token_head", "duplicate_token_head" or "induction_head".</summary>
    public static Tensor DetectionPattern(string headName, Tensor tokens) => headName switch
    {
        "previous_token_head" => PreviousTokenDetectionPattern((int)tokens.reshape(-1).shape[0]),
        "duplicate_token_head" => DuplicateTokenDetectionPattern(tokens),
        "induction_head" => InductionDetectionPattern(tokens),
        _ => throw new ArgumentException($"Unknown head name '{headName}': use \"previous_token_head\", \"duplicate_token_head\" or \"induction_head\", or pass a detection pattern tensor.", nameof(headName)),
    };

    /// <summary>
    /// TransformerLens' <c>compute_head_attention_similarity_score</c> for one head's pattern [n, n] against a detection pattern [n, n].
    /// Mul: <c>Σ(A' ⊙ D) / Σ A'</c> with A' = A after the exclusions; Abs: <c>1 − round(Σ|A − D|' / n, 3)</c>.
    /// </summary>
    public static double SimilarityScore(Tensor pattern, Tensor detectionPattern, bool excludeBos = false, bool excludeCurrentToken = false,
        HeadErrorMeasure errorMeasure = HeadErrorMeasure.Mul)
    {
        if (pattern.dim() != 2 || pattern.shape[0] != pattern.shape[1])
            throw new ArgumentException($"SimilarityScore: the attention pattern must be square [n, n]; got [{string.Join(", ", pattern.shape)}].", nameof(pattern));
        using var scope = NewDisposeScope();
        var a = pattern.detach().to_type(ScalarType.Float64).cpu();
        var d = detectionPattern.to_type(ScalarType.Float64).cpu();
        long n = a.shape[0];
        var keep = ones(n, n, dtype: ScalarType.Float64);
        if (excludeBos) keep[TensorIndex.Colon, 0] = 0.0;
        if (excludeCurrentToken) keep = keep * (1 - eye(n, dtype: ScalarType.Float64));
        if (errorMeasure == HeadErrorMeasure.Mul)
        {
            var ak = a * keep;
            return ((ak * d).sum() / ak.sum()).item<double>();
        }
        var diff = (a - d).abs() * keep;
        return 1 - Math.Round(diff.sum().item<double>() / n, 3, MidpointRounding.ToEven);
    }

    /// <summary>
    /// TransformerLens' <c>detect_head</c> on a cache: scores every head's pattern against <paramref name="detectionPattern"/>
    /// ([pos, pos], lower triangular, built with e.g. <see cref="PreviousTokenDetectionPattern"/> or by hand for a custom head type).
    /// Heads not in <paramref name="heads"/> get −1. [n_layers, n_heads]. For a batch the scores are averaged over the sequences
    /// (TransformerLens does this for a list of prompts), each with the same detection pattern; use the string overload for
    /// token-dependent patterns.
    /// </summary>
    /// <param name="cache">A cache with <c>hook_pattern</c> of every layer ([batch, head, q, k], or without batch).</param>
    /// <param name="tokens">The tokens the cache was run on, [pos] or [batch, pos] (checked against the pattern size).</param>
    /// <param name="detectionPattern">The pattern to look for, [pos, pos].</param>
    /// <param name="heads">(layer, head) pairs to score; null scores all.</param>
    /// <param name="excludeBos">Ignore attention to position 0.</param>
    /// <param name="excludeCurrentToken">Ignore attention to the query's own position.</param>
    /// <param name="errorMeasure">Mul (default) or Abs.</param>
    /// <param name="warnings">Where a warning about a non-0/1 pattern with Mul goes (null: <see cref="Console.Error"/>).</param>
    public static Tensor DetectHead(ActivationCache cache, Tensor tokens, Tensor detectionPattern, IEnumerable<(int Layer, int Head)>? heads = null,
        bool excludeBos = false, bool excludeCurrentToken = false, HeadErrorMeasure errorMeasure = HeadErrorMeasure.Mul, TextWriter? warnings = null)
        => DetectCore(cache, tokens, _ => detectionPattern, heads, excludeBos, excludeCurrentToken, errorMeasure, warnings);

    /// <summary>
    /// TransformerLens' <c>detect_head</c> with a named head type ("previous_token_head", "duplicate_token_head", "induction_head"):
    /// the detection pattern is built from each sequence's tokens and the scores are averaged over the batch. [n_layers, n_heads].
    /// </summary>
    public static Tensor DetectHead(ActivationCache cache, Tensor tokens, string headName, IEnumerable<(int Layer, int Head)>? heads = null,
        bool excludeBos = false, bool excludeCurrentToken = false, HeadErrorMeasure errorMeasure = HeadErrorMeasure.Mul)
    {
        DetectionPattern(headName, tokens.reshape(-1)[..1]);    // validates the name before any work
        return DetectCore(cache, tokens, row => DetectionPattern(headName, row), heads, excludeBos, excludeCurrentToken, errorMeasure, null);
    }

    static Tensor DetectCore(ActivationCache cache, Tensor tokens, Func<Tensor, Tensor> patternFor, IEnumerable<(int Layer, int Head)>? heads,
        bool excludeBos, bool excludeCurrentToken, HeadErrorMeasure errorMeasure, TextWriter? warnings)
    {
        ArgumentNullException.ThrowIfNull(cache);
        var cfg = cache.Model.Cfg;
        using var scope = NewDisposeScope();
        var rows = tokens.dim() == 1 ? tokens.unsqueeze(0) : tokens;
        long n = rows.shape[1];
        var selected = heads?.ToHashSet() ?? (from l in Enumerable.Range(0, cfg.NLayers) from h in Enumerable.Range(0, cfg.NHeads) select (l, h)).ToHashSet();
        foreach (var (l, h) in selected)
            if (l < 0 || l >= cfg.NLayers || h < 0 || h >= cfg.NHeads)
                throw new ArgumentOutOfRangeException(nameof(heads), $"DetectHead: head ({l}, {h}) does not exist; layers are 0..{cfg.NLayers - 1}, heads 0..{cfg.NHeads - 1}.");
        var scores = new double[cfg.NLayers, cfg.NHeads];
        for (int l = 0; l < cfg.NLayers; l++) for (int h = 0; h < cfg.NHeads; h++) scores[l, h] = -1;
        bool warned = false;
        for (int b = 0; b < rows.shape[0]; b++)
        {
            var d = patternFor(rows[b]).to_type(ScalarType.Float64).cpu();
            if (d.dim() != 2 || d.shape[0] != n || d.shape[1] != n || (d - d.tril()).abs().sum().item<double>() != 0)
                throw new ArgumentException($"DetectHead: the detection pattern must be a lower-triangular [{n}, {n}] matrix for a sequence of {n} tokens; got [{string.Join(", ", d.shape)}]" +
                    ((d.dim() == 2 && d.shape[0] == n && d.shape[1] == n) ? " with entries above the diagonal (a causal head cannot attend to later keys)." : "."));
            if (errorMeasure == HeadErrorMeasure.Mul && !warned && (d.ne(0) & d.ne(1)).any().item<bool>())
            {
                (warnings ?? Console.Error).WriteLine("DetectHead: the detection pattern has values other than 0 and 1 with HeadErrorMeasure.Mul; scores are then weighted sums, not fractions (use Abs to match graded targets).");
                warned = true;
            }
            for (int l = 0; l < cfg.NLayers; l++)
            {
                var layerPattern = cache["pattern", l];
                var p = cache.HasBatchDim ? layerPattern[b] : layerPattern;       // [head, q, k]
                if (p.shape[^1] != n)
                    throw new ArgumentException($"DetectHead: tokens have {n} positions but the cached pattern has {p.shape[^1]}; pass the tokens the cache was run on.", nameof(tokens));
                for (int h = 0; h < cfg.NHeads; h++)
                {
                    if (!selected.Contains((l, h))) continue;
                    double s = SimilarityScore(p[h], d, excludeBos, excludeCurrentToken, errorMeasure);
                    scores[l, h] = (b == 0 ? 0 : scores[l, h]) + s / rows.shape[0];
                }
            }
        }
        var flat = new float[cfg.NLayers * cfg.NHeads];
        for (int l = 0; l < cfg.NLayers; l++) for (int h = 0; h < cfg.NHeads; h++) flat[l * cfg.NHeads + h] = (float)scores[l, h];
        return tensor(flat, new long[] { cfg.NLayers, cfg.NHeads }).MoveToOuterDisposeScope();
    }
}
