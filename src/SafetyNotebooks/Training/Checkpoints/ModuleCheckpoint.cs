using SafetyNotebooks.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training.Checkpoints;

/// <summary>Saves and loads a module's parameters and buffers (its <c>state_dict</c>) as a safetensors file, through <see cref="Safetensors"/>.</summary>
public static class ModuleCheckpoint
{
    /// <summary>Writes every entry of <c>module.state_dict()</c> to <paramref name="path"/> (atomically) with optional string metadata.</summary>
    public static void Save(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        Safetensors.SaveStateDict(module, path, metadata);

    /// <summary>
    /// Copies the tensors in <paramref name="path"/> into <paramref name="module"/>'s parameters and buffers in place
    /// (onto whatever device they live on), all or nothing (<see cref="Safetensors.LoadStateDict"/>): with
    /// <paramref name="strict"/>, missing or unexpected names throw; shapes must always match; a failed load leaves the
    /// module unchanged. Returns the file's metadata.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Load(nn.Module module, string path, bool strict = true) =>
        Safetensors.LoadStateDict(module, path, strict).Metadata;
}
