using SafetyNotebooks.IO;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Conversion;

/// <summary>
/// Converts one family of Hugging Face checkpoints (config.json + model.safetensors) to a <see cref="HookedTransformer"/>,
/// as TransformerLens keeps one function per family in <c>pretrained/weight_conversions/</c>. A converter reads the
/// family's config fields, lists every tensor it needs with its shape (checked from the safetensors header before the
/// model is allocated), and copies the tensors into the model's TransformerLens-named weights.
/// </summary>
public abstract class PretrainedConverter
{
    /// <summary>Hugging Face <c>model_type</c> values this converter handles (e.g. <c>"llama"</c>).</summary>
    public abstract IReadOnlyList<string> ModelTypes { get; }

    /// <summary>Hugging Face <c>architectures</c> values this converter handles (e.g. <c>"LlamaForCausalLM"</c>).</summary>
    public abstract IReadOnlyList<string> Architectures { get; }

    /// <summary>A short human name of the family, for messages (e.g. "Llama").</summary>
    public abstract string Family { get; }

    /// <summary>Reads the family's config fields into a validated <see cref="HookedTransformerConfig"/>.</summary>
    /// <exception cref="InvalidDataException">A field is missing, mistyped or unsupported; the message names the file and the field.</exception>
    public abstract HookedTransformerConfig ReadConfig(HfConfig config);

    /// <summary>
    /// Every tensor the model needs, under its full name in <paramref name="file"/> (prefixes resolved), with the shape the
    /// config implies. Optional tensors (biases some checkpoints of the family have) are listed only when present.
    /// </summary>
    public abstract IReadOnlyList<(string Name, long[] Shape)> Tensors(HookedTransformerConfig cfg, Safetensors file);

    /// <summary>Tensors that checkpoints of this family may carry and that are not weights (mask buffers, cached rotary
    /// frequencies); skipped silently, as Hugging Face skips them.</summary>
    public virtual bool IsIgnored(string name) => false;

    /// <summary>
    /// Copies the weights into <paramref name="model"/> (built from <see cref="ReadConfig"/>'s config, untied).
    /// <paramref name="get"/> returns a listed tensor by full name, as float32, with the listed shape. Runs under <c>no_grad</c>.
    /// </summary>
    public abstract void Load(HookedTransformer model, Safetensors file, Func<string, Tensor> get);

    /// <summary>The name in <paramref name="file"/> of <paramref name="name"/>, with <paramref name="prefix"/> when the file uses it.</summary>
    protected static string Resolve(Safetensors file, string prefix, string name) =>
        prefix.Length > 0 && file.Contains(prefix + name) ? prefix + name : name;
}

/// <summary>
/// The registry of checkpoint families <see cref="HookedTransformer.FromPretrained(string)"/> can load, chosen by
/// <c>config.json</c>'s <c>model_type</c> (or, when that is absent, its <c>architectures</c>).
/// </summary>
public static class PretrainedConverters
{
    /// <summary>Every supported family: GPT-2, Llama-style (Llama, Mistral, Qwen2, SmolLM, TinyLlama), GPT-NeoX (Pythia).</summary>
    public static IReadOnlyList<PretrainedConverter> All { get; } = new PretrainedConverter[]
    {
        new Gpt2Converter(), new LlamaConverter(), new GptNeoXConverter(),
    };

    /// <summary>Every supported <c>model_type</c>, for messages and documentation.</summary>
    public static IReadOnlyList<string> SupportedModelTypes => All.SelectMany(c => c.ModelTypes).ToList();

    /// <summary>
    /// The converter for this config: by <c>model_type</c>, else by <c>architectures</c>; a config with neither is taken
    /// to be GPT-2 (old GPT-2 configs have no <c>model_type</c>).
    /// </summary>
    /// <exception cref="InvalidDataException">The family is not supported; the message lists the supported ones.</exception>
    public static PretrainedConverter For(HfConfig config)
    {
        var modelType = config.ModelType;
        var architectures = config.Architectures;
        if (modelType is not null)
        {
            var byType = All.FirstOrDefault(c => c.ModelTypes.Contains(modelType));
            if (byType is not null) return byType;
        }
        else
        {
            var byArch = All.FirstOrDefault(c => architectures.Any(a => c.Architectures.Contains(a)));
            if (byArch is not null) return byArch;
            if (architectures.Count == 0) return All[0];
        }
        var what = modelType is not null ? $"model_type \"{modelType}\"" : $"architectures [{string.Join(", ", architectures)}]";
        throw new InvalidDataException(
            $"'{config.Path}' describes a model with {what}, which FromPretrained cannot load. Supported model_type values: " +
            $"{string.Join(", ", SupportedModelTypes.Select(t => "\"" + t + "\""))} (architectures " +
            $"{string.Join(", ", All.SelectMany(c => c.Architectures))}). Use a checkpoint of one of these families.");
    }
}
