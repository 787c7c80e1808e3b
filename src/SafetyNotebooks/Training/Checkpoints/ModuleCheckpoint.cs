using SafetyNotebooks.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training.Checkpoints;

/// <summary>Saves and loads a module's parameters and buffers (its <c>state_dict</c>) as a safetensors file, through <see cref="Safetensors"/>.</summary>
public static class ModuleCheckpoint
{
    /// <summary>Writes every entry of <c>module.state_dict()</c> to <paramref name="path"/> with optional string metadata.</summary>
    public static void Save(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        Safetensors.Save(path, module.state_dict(), metadata);
    }

    /// <summary>
    /// Copies the tensors in <paramref name="path"/> into <paramref name="module"/>'s parameters and buffers in place
    /// (onto whatever device they live on). With <paramref name="strict"/>, missing or unexpected names throw; shapes
    /// must always match. Returns the file's metadata.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Load(nn.Module module, string path, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var file = Safetensors.Open(path);
        var target = module.state_dict();
        if (strict)
        {
            var missing = target.Keys.Except(file.Names).ToList();
            var extra = file.Names.Except(target.Keys).ToList();
            if (missing.Count > 0 || extra.Count > 0)
                throw new InvalidDataException($"Checkpoint {path} does not match the module. Missing: [{string.Join(", ", missing)}]; unexpected: [{string.Join(", ", extra)}]. Load it into the model it was saved from, or pass strict: false.");
        }
        // Our own copy rather than Module.load_state_dict: that one copies raw bytes (CPU only) and does not name a
        // mismatched shape.
        using var _ = torch.no_grad();
        foreach (var (name, dst) in target)
        {
            if (!file.Contains(name)) continue;
            using var src = file.Read(name);
            if (!src.shape.SequenceEqual(dst.shape))
                throw new InvalidDataException($"Checkpoint {path}: '{name}' has shape [{string.Join(", ", src.shape)}], the module expects [{string.Join(", ", dst.shape)}]; build the model with the checkpoint's configuration.");
            dst.copy_(src);
        }
        return file.Metadata;
    }
}
