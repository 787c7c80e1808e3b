using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.IO;

/// <summary>
/// What a checkpoint load did, like Hugging Face's <c>output_loading_info</c>: which tensors were loaded, which the
/// module expected but the file lacks, and which the file holds but nothing used.
/// </summary>
/// <param name="Path">The safetensors file.</param>
/// <param name="Loaded">Names copied into the module.</param>
/// <param name="Missing">Names the module has but the file lacks (left unchanged).</param>
/// <param name="Unexpected">Names the file holds but the module has no place for (ignored).</param>
/// <param name="Metadata">The file's <c>__metadata__</c> map.</param>
public sealed record SafetensorsLoadReport(
    string Path, IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected,
    IReadOnlyDictionary<string, string> Metadata)
{
    /// <summary>The warning Hugging Face prints for unused checkpoint tensors, or null when every tensor was used.</summary>
    public string? UnusedWarning => Unexpected.Count == 0 ? null :
        $"Warning: {Unexpected.Count} tensor(s) in '{Path}' were not used when loading (the checkpoint holds more than the model, " +
        $"e.g. more layers than its config): {string.Join(", ", Unexpected)}. Check that the config matches the checkpoint.";
}

public sealed partial class Safetensors
{
    /// <summary>Writes every entry of <c>module.state_dict()</c> (parameters and persistent buffers) atomically to <paramref name="path"/>.</summary>
    public static void SaveStateDict(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        Save(path, module.state_dict(), metadata);
    }

    /// <summary>
    /// Loads a safetensors file into <paramref name="module"/>'s parameters and buffers in place, all or nothing: every
    /// name, shape and dtype is checked and every tensor read before the first one is copied, so a failed load leaves
    /// the module unchanged.
    /// </summary>
    /// <param name="module">The module to load into (its <c>state_dict()</c> names).</param>
    /// <param name="path">The safetensors file.</param>
    /// <param name="strict">True: names missing from the file, or tensors in the file the module has no place for, are errors
    /// (as <c>load_state_dict(strict=True)</c>). False: missing ones are left unchanged, unused ones are reported.</param>
    /// <param name="warnings">Where the unused-tensor warning goes when not strict; null means <see cref="Console.Error"/>.</param>
    /// <returns>What was loaded, missing and unused, and the file's metadata.</returns>
    /// <exception cref="InvalidDataException">The file does not match the module (the message names the file, the tensors and the fix).</exception>
    public static SafetensorsLoadReport LoadStateDict(nn.Module module, string path, bool strict = true, TextWriter? warnings = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var file = Open(path);
        var target = module.state_dict();
        var missing = target.Keys.Where(k => !file.Contains(k)).ToList();
        var unexpected = file.Names.Where(n => !target.ContainsKey(n)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new InvalidDataException(
                $"Checkpoint '{path}' does not match the module: missing [{string.Join(", ", missing)}]; unexpected [{string.Join(", ", unexpected)}]. " +
                "Load it into a module built with the same config, or pass strict: false to load the matching tensors only. The module is unchanged.");
        var problems = new List<string>();
        foreach (var (name, dst) in target)
        {
            if (!file.Contains(name)) continue;
            var info = file.Info(name);
            if (!info.Shape.SequenceEqual(dst.shape))
                problems.Add($"'{name}' has shape [{string.Join(", ", info.Shape)}] but the module expects [{string.Join(", ", dst.shape)}]");
            else if (IsFloating(DTypes[info.DType].Type) != IsFloating(dst.dtype) || (dst.dtype == ScalarType.Bool) != (DTypes[info.DType].Type == ScalarType.Bool))
                problems.Add($"'{name}' is {info.DType} but the module holds {dst.dtype}");
        }
        if (problems.Count > 0)
            throw new InvalidDataException(
                $"Checkpoint '{path}' does not fit the module: {string.Join("; ", problems)}. The module is unchanged; " +
                "build the module with the config the checkpoint was saved from (e.g. the same NCtx, DModel and NLayers).");

        using var scope = NewDisposeScope();
        var staged = new List<(Tensor Dst, Tensor Src, string Name)>();
        foreach (var (name, dst) in target)
            if (file.Contains(name)) staged.Add((dst, file.Read(name), name));
        using (no_grad())
            foreach (var (dst, src, _) in staged) dst.copy_(src);

        var report = new SafetensorsLoadReport(path, staged.Select(s => s.Name).ToList(), missing, unexpected, file.Metadata.ToDictionary());
        if (report.UnusedWarning is { } w) (warnings ?? Console.Error).WriteLine(w);
        return report;
    }

    static bool IsFloating(ScalarType t) => t is ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64;
}
