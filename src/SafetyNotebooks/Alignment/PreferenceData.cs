using SafetyNotebooks.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>One preference example as token ids (TRL's <c>prompt_ids</c>, <c>chosen_ids</c>, <c>rejected_ids</c>).</summary>
/// <param name="Prompt">The prompt's ids (at least one, e.g. a BOS token: the first completion token is predicted from it).</param>
/// <param name="Chosen">The preferred completion's ids (at least one; add the EOS yourself or through <see cref="PreferenceData.Tokenize"/>).</param>
/// <param name="Rejected">The dispreferred completion's ids (at least one).</param>
/// <param name="Margin">Optional margin for the reward model's Bradley–Terry loss (TRL's <c>margin</c> column).</param>
public sealed record PreferencePair(IReadOnlyList<long> Prompt, IReadOnlyList<long> Chosen, IReadOnlyList<long> Rejected, double? Margin = null);

/// <summary>One unpaired KTO example: a prompt, a completion and whether it is desirable (TRL's <c>label</c>).</summary>
public sealed record UnpairedExample(IReadOnlyList<long> Prompt, IReadOnlyList<long> Completion, bool Desirable);

/// <summary>A padded batch of prompt + completion rows.</summary>
/// <param name="Tokens">int64 <c>[rows, pos]</c>, padded with the pad id.</param>
/// <param name="AttentionMask">int64 <c>[rows, pos]</c>: 1 = real token, 0 = padding.</param>
/// <param name="CompletionMask">bool <c>[rows, pos]</c>, aligned with the tokens (TRL's <c>completion_mask</c>, the
/// library's target-mask convention): true on completion tokens, false on prompt tokens and padding.</param>
public sealed record CompletionBatch(Tensor Tokens, Tensor AttentionMask, Tensor CompletionMask) : IDisposable
{
    /// <summary>Disposes the tensors.</summary>
    public void Dispose() { Tokens.Dispose(); AttentionMask.Dispose(); CompletionMask.Dispose(); }
}

/// <summary>
/// A batch of preference pairs in TRL's concatenated layout: rows <c>0…B−1</c> are prompt + chosen, rows
/// <c>B…2B−1</c> prompt + rejected (so one forward pass scores both), padded together.
/// </summary>
/// <param name="Tokens">int64 <c>[2B, pos]</c>.</param>
/// <param name="AttentionMask">int64 <c>[2B, pos]</c>, 1 = real token.</param>
/// <param name="CompletionMask">bool <c>[2B, pos]</c>, true on completion tokens only (prompt and padding masked out).</param>
/// <param name="Margin">Optional float <c>[B]</c> margins for the reward model's loss.</param>
/// <param name="RefChosenLogProbs">Optional float <c>[B]</c> precomputed reference log-probs of the chosen completions
/// (TRL's <c>ref_chosen_logps</c>; see <see cref="DpoObjective.WithReferenceLogProbs"/>).</param>
/// <param name="RefRejectedLogProbs">Optional float <c>[B]</c>, the same for the rejected completions.</param>
public sealed record PreferenceBatch(Tensor Tokens, Tensor AttentionMask, Tensor CompletionMask, Tensor? Margin = null,
    Tensor? RefChosenLogProbs = null, Tensor? RefRejectedLogProbs = null) : IDisposable
{
    /// <summary>Number of pairs B.</summary>
    public long Pairs => Tokens.shape[0] / 2;

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        Tokens.Dispose(); AttentionMask.Dispose(); CompletionMask.Dispose();
        Margin?.Dispose(); RefChosenLogProbs?.Dispose(); RefRejectedLogProbs?.Dispose();
    }
}

/// <summary>
/// A batch of unpaired KTO examples, with TRL's mismatched KL rows: row i pairs prompt i with the completion of example
/// i − 1 (cycled, so row 0 takes the last completion), used only to estimate the KL term.
/// </summary>
/// <param name="Examples">Prompt + completion rows.</param>
/// <param name="Desirable">bool <c>[B]</c>, TRL's <c>label</c>.</param>
/// <param name="Kl">The mismatched prompt + completion rows (null when the KL term is not estimated).</param>
/// <param name="RefLogProbs">Optional float <c>[B]</c> precomputed reference log-probs (TRL's <c>ref_logps</c>).</param>
/// <param name="RefKlLogProbs">Optional float <c>[B]</c> precomputed reference log-probs of the KL rows (<c>ref_KL_logps</c>).</param>
public sealed record KtoBatch(CompletionBatch Examples, Tensor Desirable, CompletionBatch? Kl = null,
    Tensor? RefLogProbs = null, Tensor? RefKlLogProbs = null) : IDisposable
{
    /// <summary>Disposes the tensors.</summary>
    public void Dispose() { Examples.Dispose(); Desirable.Dispose(); Kl?.Dispose(); RefLogProbs?.Dispose(); RefKlLogProbs?.Dispose(); }
}

/// <summary>
/// Builds the padded batches the preference objectives read: prompt + completion rows with completion masks (TRL's
/// DPO, reward and KTO collators). Padding may be on either side; the objectives' log-probs do not depend on it.
/// </summary>
public static class PreferenceData
{
    /// <summary>
    /// Pads prompt + completion rows into one batch. <paramref name="paddingSide"/> Right (TRL's default for training)
    /// or Left. Each row's completion mask is true exactly on its completion tokens.
    /// </summary>
    public static CompletionBatch Pad(IReadOnlyList<(IReadOnlyList<long> Prompt, IReadOnlyList<long> Completion)> rows, long padTokenId,
        PaddingSide paddingSide = PaddingSide.Right)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0) throw new ArgumentException("PreferenceData.Pad needs at least one row; pass a non-empty list of (prompt, completion) pairs.", nameof(rows));
        for (int i = 0; i < rows.Count; i++)
        {
            if (rows[i].Prompt is null || rows[i].Prompt.Count == 0)
                throw new ArgumentException($"Row {i} has an empty prompt; give every prompt at least one token (e.g. the BOS id), since the first completion token is predicted from it.", nameof(rows));
            if (rows[i].Completion is null || rows[i].Completion.Count == 0)
                throw new ArgumentException($"Row {i} has an empty completion; drop the example (TRL drops rows with no completion) or give it at least one token (e.g. the EOS id).", nameof(rows));
        }
        int width = rows.Max(r => r.Prompt.Count + r.Completion.Count);
        var tokens = new long[rows.Count * width];
        var attention = new long[rows.Count * width];
        var completion = new bool[rows.Count * width];
        Array.Fill(tokens, padTokenId);
        for (int i = 0; i < rows.Count; i++)
        {
            var (prompt, comp) = rows[i];
            int len = prompt.Count + comp.Count;
            int start = i * width + (paddingSide == PaddingSide.Left ? width - len : 0);
            for (int j = 0; j < prompt.Count; j++) { tokens[start + j] = prompt[j]; attention[start + j] = 1; }
            for (int j = 0; j < comp.Count; j++)
            {
                int k = start + prompt.Count + j;
                tokens[k] = comp[j]; attention[k] = 1; completion[k] = true;
            }
        }
        return new CompletionBatch(torch.tensor(tokens, new long[] { rows.Count, width }),
            torch.tensor(attention, new long[] { rows.Count, width }),
            torch.tensor(completion, new long[] { rows.Count, width }));
    }

    /// <summary>
    /// Collates preference pairs into TRL's concatenated layout (chosen rows, then rejected rows), padded to one width.
    /// Margins are included when every pair has one.
    /// </summary>
    public static PreferenceBatch Collate(IReadOnlyList<PreferencePair> pairs, long padTokenId, PaddingSide paddingSide = PaddingSide.Right)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        if (pairs.Count == 0) throw new ArgumentException("PreferenceData.Collate needs at least one pair.", nameof(pairs));
        var rows = pairs.Select(p => (p.Prompt, p.Chosen)).Concat(pairs.Select(p => (p.Prompt, p.Rejected))).ToList();
        using var batch = Pad(rows, padTokenId, paddingSide);
        Tensor? margin = null;
        if (pairs.All(p => p.Margin is not null)) margin = torch.tensor(pairs.Select(p => (float)p.Margin!.Value).ToArray());
        else if (pairs.Any(p => p.Margin is not null))
            throw new ArgumentException("Some pairs have a Margin and some do not; give every pair a margin (0 for none) or none at all.", nameof(pairs));
        return new PreferenceBatch(batch.Tokens.alias(), batch.AttentionMask.alias(), batch.CompletionMask.alias(), margin);
    }

    /// <summary>
    /// Collates unpaired examples for KTO. With <paramref name="calculateKl"/> (TRL's default for <c>loss_type="kto"</c>)
    /// it also builds the mismatched KL rows: prompt i with completion i − 1, cycled (TRL's
    /// <c>KL_completion_ids = [completion_ids[-1]] + completion_ids[:-1]</c>). That needs at least 2 examples.
    /// </summary>
    public static KtoBatch CollateUnpaired(IReadOnlyList<UnpairedExample> examples, long padTokenId, PaddingSide paddingSide = PaddingSide.Right, bool calculateKl = true)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (examples.Count == 0) throw new ArgumentException("PreferenceData.CollateUnpaired needs at least one example.", nameof(examples));
        if (calculateKl && examples.Count < 2)
            throw new ArgumentException("KTO's KL estimate pairs each prompt with another example's completion, so a batch needs at least 2 examples; raise the batch size or pass calculateKl: false.", nameof(examples));
        var rows = examples.Select(e => (e.Prompt, e.Completion)).ToList();
        var main = Pad(rows, padTokenId, paddingSide);
        CompletionBatch? kl = null;
        if (calculateKl)
        {
            int n = examples.Count;
            kl = Pad(Enumerable.Range(0, n).Select(i => (examples[i].Prompt, examples[(i + n - 1) % n].Completion)).ToList(), padTokenId, paddingSide);
        }
        return new KtoBatch(main, torch.tensor(examples.Select(e => e.Desirable).ToArray()), kl);
    }

    /// <summary>
    /// Tokenizes one text preference example: the prompt (with BOS when <paramref name="prependBos"/> and the tokenizer has
    /// one) and each completion, with the EOS appended when <paramref name="addEos"/> (TRL appends the EOS to completions).
    /// </summary>
    public static PreferencePair Tokenize(ITokenizer tokenizer, string prompt, string chosen, string rejected, bool prependBos = true, bool addEos = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var p = new List<long>();
        if (prependBos && tokenizer.BosTokenId is int bos) p.Add(bos);
        p.AddRange(tokenizer.Encode(prompt).Select(t => (long)t));
        return new PreferencePair(p, Completion(tokenizer, chosen, addEos), Completion(tokenizer, rejected, addEos));
    }

    static List<long> Completion(ITokenizer tokenizer, string text, bool addEos)
    {
        var ids = tokenizer.Encode(text).Select(t => (long)t).ToList();
        if (addEos)
        {
            if (tokenizer.EosTokenId is not int eos)
                throw new ArgumentException("addEos is true but the tokenizer has no EOS token; pass addEos: false or use a tokenizer with an EosTokenId.", nameof(tokenizer));
            ids.Add(eos);
        }
        return ids;
    }
}
