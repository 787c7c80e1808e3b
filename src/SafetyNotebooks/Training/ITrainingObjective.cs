using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training;

/// <summary>What an objective returns for one (micro-)batch.</summary>
/// <param name="Loss">Scalar loss to minimise, the mean over the batch's items (tokens, examples, pairs).</param>
/// <param name="Metrics">Extra scalar metrics in the ecosystem's names (e.g. TRL's <c>rewards/accuracies</c>,
/// <c>rewards/margins</c>), as 0-d tensors so nothing is read back from the device until the trainer logs them.</param>
/// <param name="Weight">How many items <paramref name="Loss"/> averages over (a 0-d tensor; e.g. target tokens for a
/// language model, examples for a classifier). With gradient accumulation the trainer combines micro-batches as
/// <c>Σ wᵢ·∇lossᵢ / Σ wᵢ</c>, which is exactly the gradient of the mean over the whole big batch. Null = 1.</param>
public sealed record ObjectiveOutput(Tensor Loss, IReadOnlyDictionary<string, Tensor>? Metrics = null, Tensor? Weight = null);

/// <summary>
/// One training objective for <see cref="Trainer{TBatch}"/>: a batch in, a loss and named metrics out. Language
/// modeling (<see cref="LanguageModelingObjective"/>), reward models, DPO, PPO, SAEs, probes and classifiers are each
/// one small class; the trainer supplies the shared machinery (optimizer, schedule, clipping, accumulation,
/// evaluation, history, checkpoints, progress, seeds, device).
/// </summary>
/// <typeparam name="TBatch">What one (micro-)batch is: token ids, a pair of preferred/rejected inputs, activations and labels…</typeparam>
public interface ITrainingObjective<in TBatch>
{
    /// <summary>
    /// The module being trained. The trainer moves it to <see cref="TrainerConfig.Device"/>, switches it between train
    /// and eval mode, and saves/loads it in checkpoints. Frozen helpers (e.g. DPO's reference model) are the objective's
    /// own business: keep them in eval mode on the same device.
    /// </summary>
    nn.Module Model { get; }

    /// <summary>The parameters the optimizer updates. Default: every parameter of <see cref="Model"/> with <c>requires_grad</c>.</summary>
    IEnumerable<Parameter> TrainableParameters() => Model.parameters().Where(p => p.requires_grad);

    /// <summary>Computes the loss (with autograd) and metrics for one batch. Called in train mode for training, and under
    /// <c>no_grad</c> in eval mode by <see cref="Trainer{TBatch}.EvaluateOn"/>.</summary>
    ObjectiveOutput Compute(TBatch batch);

    /// <summary>Called under <c>no_grad</c> after every optimizer step (e.g. an SAE renormalizing its decoder columns). Default: nothing.</summary>
    void AfterOptimizerStep() { }
}
