using SafetyNotebooks.Models;
using SafetyNotebooks.Tokenization;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// Supervised fine-tuning data as TRL's <c>SFTTrainer</c> prepares it, as <see cref="TrainingBatch"/>es for
/// <see cref="SftObjective"/> (or <see cref="LanguageModelingObjective"/>): completion-only loss masking
/// (TRL's <c>completion_only_loss</c>: prompt tokens are context, not targets) and sequence packing.
/// </summary>
public static class Sft
{
    /// <summary>
    /// Pads prompt + completion examples into one batch. With <paramref name="completionOnly"/> (TRL's default for
    /// prompt-completion data) only completion tokens are targets; otherwise every real token after the first is.
    /// </summary>
    public static TrainingBatch Collate(IReadOnlyList<(IReadOnlyList<long> Prompt, IReadOnlyList<long> Completion)> examples, long padTokenId,
        bool completionOnly = true, PaddingSide paddingSide = PaddingSide.Right)
    {
        using var batch = PreferenceData.Pad(examples, padTokenId, paddingSide);
        var targets = completionOnly ? batch.CompletionMask.alias() : batch.AttentionMask.ne(0);
        return new TrainingBatch(batch.Tokens.alias(), targets, batch.AttentionMask.alias());
    }

    /// <summary>
    /// Packs examples into rows of exactly <paramref name="seqLength"/> tokens (TRL's <c>packing_strategy="wrapped"</c>):
    /// each example (prompt + completion, then <paramref name="eosTokenId"/> unless it already ends with it) is appended to
    /// one stream, which is cut into rows; the last row is right-padded (attention mask 0). Every token appears exactly
    /// once. Targets: the completion tokens and EOS (all tokens when <paramref name="completionOnly"/> is false), never
    /// the first token of an example (as TRL's padding-free collator sets <c>labels[position_ids == 0] = -100</c>) and
    /// never column 0 of a row (the mask convention).
    /// <para><b>Cross-contamination:</b> the <see cref="HookedTransformer"/> has no per-example position/attention reset
    /// (TRL resets them only with FlashAttention's padding-free path), so within a row a token attends to earlier examples
    /// and positions keep counting across the boundary. Losses never predict across a boundary, but the context does
    /// leak, as with TRL's <c>"wrapped"</c> strategy; use <see cref="Collate"/> when that matters.</para>
    /// </summary>
    public static TrainingBatch Pack(IReadOnlyList<(IReadOnlyList<long> Prompt, IReadOnlyList<long> Completion)> examples, int seqLength,
        long eosTokenId, long padTokenId, bool completionOnly = true)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (examples.Count == 0) throw new ArgumentException("Sft.Pack needs at least one example.", nameof(examples));
        if (seqLength < 2) throw new ArgumentOutOfRangeException(nameof(seqLength), seqLength, $"seqLength is {seqLength}; packed rows need at least 2 tokens (e.g. the model's NCtx).");
        var stream = new List<long>();
        var target = new List<bool>();
        for (int i = 0; i < examples.Count; i++)
        {
            var (prompt, completion) = examples[i];
            if ((prompt?.Count ?? 0) + (completion?.Count ?? 0) == 0)
                throw new ArgumentException($"Example {i} is empty; drop it or give it at least one token.", nameof(examples));
            int first = stream.Count;
            foreach (var t in prompt ?? Array.Empty<long>()) { stream.Add(t); target.Add(!completionOnly); }
            foreach (var t in completion ?? Array.Empty<long>()) { stream.Add(t); target.Add(true); }
            if (stream[^1] != eosTokenId) { stream.Add(eosTokenId); target.Add(true); }
            target[first] = false;                                         // never predicted from the previous example
        }
        int rows = (stream.Count + seqLength - 1) / seqLength;
        var tokens = new long[rows * seqLength];
        var attention = new long[rows * seqLength];
        var targets = new bool[rows * seqLength];
        Array.Fill(tokens, padTokenId);
        for (int k = 0; k < stream.Count; k++)
        {
            tokens[k] = stream[k];
            attention[k] = 1;
            targets[k] = target[k] && k % seqLength != 0;
        }
        var shape = new long[] { rows, seqLength };
        return new TrainingBatch(torch.tensor(tokens, shape), torch.tensor(targets, shape), torch.tensor(attention, shape));
    }
}

/// <summary>
/// The SFT objective: next-token cross-entropy averaged over the batch's target tokens (the completion tokens of
/// <see cref="Sft.Collate"/>/<see cref="Sft.Pack"/> batches), weighted by their number so gradient accumulation matches
/// one big batch, plus TRL's <c>mean_token_accuracy</c> (argmax accuracy over the target tokens).
/// </summary>
public sealed class SftObjective : ITrainingObjective<TrainingBatch>
{
    /// <summary>Creates the objective for <paramref name="model"/>.</summary>
    public SftObjective(HookedTransformer model) => Model = model ?? throw new ArgumentNullException(nameof(model));

    /// <summary>The model being fine-tuned.</summary>
    public HookedTransformer Model { get; }
    nn.Module ITrainingObjective<TrainingBatch>.Model => Model;

    /// <inheritdoc/>
    public ObjectiveOutput Compute(TrainingBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var logits = Model.forward(batch.Tokens, batch.AttentionMask);
        var targets = batch.AttentionMask is null
            ? torch.ones(batch.Tokens.shape, dtype: ScalarType.Bool, device: batch.Tokens.device)
            : LanguageModelLoss.TargetMaskFromAttentionMask(batch.AttentionMask);
        if (batch.TargetMask is not null) targets = targets.logical_and(batch.TargetMask.ne(0));
        var loss = LanguageModelLoss.Mean(logits, batch.Tokens, targets);
        var count = LanguageModelLoss.TargetCount(batch.Tokens, targets);
        var metrics = new Dictionary<string, Tensor>
        {
            ["mean_token_accuracy"] = LanguageModelLoss.AccuracyTensor(logits.detach(), batch.Tokens, targets).to_type(ScalarType.Float32),
        };
        return new ObjectiveOutput(loss, metrics, count);
    }
}
