using SafetyNotebooks.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training;

/// <summary>One language-modeling batch.</summary>
/// <param name="Tokens">int64 <c>[batch, pos]</c>.</param>
/// <param name="TargetMask">Optional bool/0-1 <c>[batch, pos]</c> marking target tokens (see <see cref="LanguageModelLoss"/>); null = every position 1.. counts.</param>
/// <param name="AttentionMask">Optional 1/0 <c>[batch, pos]</c> for padded batches (1 = real token): the model attends only to real
/// tokens (needs a <see cref="HookedTransformer"/>) and predictions from or of padding are not targets.</param>
public sealed record TrainingBatch(Tensor Tokens, Tensor? TargetMask = null, Tensor? AttentionMask = null);

/// <summary>Computes a scalar loss from a model's logits <c>[batch, pos, vocab]</c>, the batch tokens and the optional target mask.</summary>
public delegate Tensor TrainingLoss(Tensor logits, Tensor tokens, Tensor? targetMask);

/// <summary>
/// Next-token prediction for any causal LM (a <c>Module&lt;Tensor, Tensor&gt;</c> mapping int64 tokens <c>[batch, pos]</c>
/// to logits <c>[batch, pos, vocab]</c>): loss = <see cref="LanguageModelLoss.Mean"/> over the target positions, weighted
/// by their number, so gradient accumulation averages over tokens exactly as one big batch would.
/// </summary>
public sealed class LanguageModelingObjective : ITrainingObjective<TrainingBatch>
{
    /// <summary>Creates the objective; <paramref name="loss"/> defaults to <see cref="LanguageModelLoss.Mean"/>.</summary>
    public LanguageModelingObjective(nn.Module<Tensor, Tensor> model, TrainingLoss? loss = null)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Loss = loss ?? ((logits, tokens, mask) => LanguageModelLoss.Mean(logits, tokens, mask));
    }

    /// <summary>The language model.</summary>
    public nn.Module<Tensor, Tensor> Model { get; }
    nn.Module ITrainingObjective<TrainingBatch>.Model => Model;

    /// <summary>The loss. Default: <see cref="LanguageModelLoss.Mean"/> over the batch's target mask.</summary>
    public TrainingLoss Loss { get; set; }

    /// <inheritdoc/>
    public ObjectiveOutput Compute(TrainingBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.AttentionMask is null)
        {
            var logits = Model.call(batch.Tokens);
            var loss = Loss(logits, batch.Tokens, batch.TargetMask);
            return new ObjectiveOutput(loss, Weight: LanguageModelLoss.TargetCount(batch.Tokens, batch.TargetMask));
        }
        if (Model is not HookedTransformer ht)
            throw new ArgumentException($"TrainingBatch.AttentionMask needs a HookedTransformer (a {Model.GetType().Name} cannot take an attention mask); batch sequences of equal length, or drop the mask.", nameof(batch));
        var padded = ht.forward(batch.Tokens, batch.AttentionMask);
        var targets = LanguageModelLoss.TargetMaskFromAttentionMask(batch.AttentionMask);
        if (batch.TargetMask is not null) targets = targets.logical_and(batch.TargetMask.ne(0));
        return new ObjectiveOutput(Loss(padded, batch.Tokens, targets), Weight: LanguageModelLoss.TargetCount(batch.Tokens, targets));
    }
}
