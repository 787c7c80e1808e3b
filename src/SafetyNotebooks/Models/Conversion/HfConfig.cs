using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SafetyNotebooks.Models.Conversion;

/// <summary>
/// A Hugging Face <c>config.json</c>, read with typed accessors whose errors name the file, the field and the fix.
/// Converters (<see cref="PretrainedConverter"/>) read their family's fields through it.
/// </summary>
public sealed class HfConfig
{
    readonly JsonObject _root;

    HfConfig(string path, JsonObject root) { Path = path; _root = root; }

    /// <summary>The parsed JSON object (for family-specific checks such as <see cref="Gpt2ConfigChecks"/>).</summary>
    public JsonObject Root => _root;

    /// <summary>Full path of the <c>config.json</c> file.</summary>
    public string Path { get; }

    /// <summary>The <c>model_type</c> field, or null when absent.</summary>
    public string? ModelType => Str("model_type");

    /// <summary>The <c>architectures</c> field (e.g. <c>["LlamaForCausalLM"]</c>), empty when absent.</summary>
    public IReadOnlyList<string> Architectures =>
        _root["architectures"] is JsonArray a ? a.Select(n => n?.GetValueKind() == JsonValueKind.String ? n.GetValue<string>() : "").Where(s => s.Length > 0).ToList() : [];

    /// <summary>Whether the field is present (and not JSON null).</summary>
    public bool Has(string key) => _root[key] is not null;

    /// <summary>Reads <c>config.json</c> from a checkpoint folder.</summary>
    /// <exception cref="FileNotFoundException">There is no config.json.</exception>
    /// <exception cref="InvalidDataException">It is not a JSON object.</exception>
    public static HfConfig Read(string directory)
    {
        var path = System.IO.Path.Combine(directory, "config.json");
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"No config.json in '{System.IO.Path.GetFullPath(directory)}'. FromPretrained needs a Hugging Face checkpoint folder " +
                "with config.json and model.safetensors (see the FromPretrained documentation for how to download one).", path);
        JsonNode? parsed;
        try { parsed = JsonNode.Parse(File.ReadAllText(path)); }
        catch (Exception e) when (e is JsonException or DecoderFallbackException or ArgumentException)
        { throw new InvalidDataException($"'{path}' is not valid JSON ({e.Message}). Re-download config.json.", e); }
        if (parsed is not JsonObject root)
            throw new InvalidDataException(
                $"'{path}' must be a JSON object ({{\"model_type\": \"gpt2\", ...}}) but is {(parsed is null ? "null" : "a JSON " + parsed.GetValueKind().ToString().ToLowerInvariant())}. " +
                "Re-download config.json from the checkpoint's repository.");
        return new HfConfig(path, root);
    }

    /// <summary>An error saying that field <paramref name="key"/> has a bad value and what it must be.</summary>
    public InvalidDataException BadField(string key, string expected) =>
        new($"'{Path}': field '{key}' is {_root[key]?.ToJsonString() ?? "missing"} but must be {expected}. Fix the field or re-download config.json.");

    /// <summary>A positive whole number; when absent, <paramref name="fallback"/> or (if <paramref name="required"/>) an error naming the family.</summary>
    public int Int(string key, bool required, int fallback = 0, string family = "GPT-2")
    {
        var n = _root[key];
        if (n is null)
        {
            if (required) throw new InvalidDataException($"'{Path}' has no '{key}'. Is it a {family} config (model_type \"{ModelTypeHint(family)}\")?");
            return fallback;
        }
        if (n.GetValueKind() != JsonValueKind.Number || !n.AsValue().TryGetValue<double>(out var d) || d != Math.Floor(d))
            throw BadField(key, "a whole number (written without quotes)");
        if (d < 1 || d > int.MaxValue) throw BadField(key, $"a positive whole number no larger than {int.MaxValue}");
        return (int)d;
    }

    /// <summary>A positive finite number, or <paramref name="fallback"/> when absent.</summary>
    public double Double(string key, double fallback)
    {
        var n = _root[key];
        if (n is null) return fallback;
        if (n.GetValueKind() != JsonValueKind.Number || !n.AsValue().TryGetValue<double>(out var d) || !double.IsFinite(d) || d <= 0)
            throw BadField(key, "a positive number");
        return d;
    }

    /// <summary>A string, or null when absent.</summary>
    public string? Str(string key)
    {
        var n = _root[key];
        if (n is null) return null;
        if (n.GetValueKind() != JsonValueKind.String) throw BadField(key, "a string");
        return n.GetValue<string>();
    }

    /// <summary>true or false, or <paramref name="fallback"/> when absent.</summary>
    public bool Bool(string key, bool fallback)
    {
        var n = _root[key];
        if (n is null) return fallback;
        if (n.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False)) throw BadField(key, "true or false");
        return n.GetValue<bool>();
    }

    /// <summary>A nested JSON object (e.g. <c>rope_scaling</c>), or null when absent or JSON null.</summary>
    public JsonObject? Object(string key) => _root[key] as JsonObject;

    /// <summary>
    /// Maps a Hugging Face <c>hidden_act</c>/<c>activation_function</c> name to <see cref="HookedTransformerConfig.ActFn"/>
    /// ("gelu_pytorch_tanh" and "gelu_fast" are the tanh approximation, "swish" is "silu"); anything else is an error naming the field.
    /// </summary>
    public string Activation(string key, string fallback, params string[] allowed)
    {
        var act = Str(key) ?? fallback;
        act = act switch { "gelu_pytorch_tanh" or "gelu_fast" => "gelu_new", "swish" when allowed.Contains("silu") => "silu", _ => act };
        if (!allowed.Contains(act))
            throw BadField(key, "one of " + string.Join(", ", allowed.Select(a => "\"" + a + "\"")));
        return act;
    }

    static string ModelTypeHint(string family) => family switch { "GPT-2" => "gpt2", "Llama" => "llama", "GPT-NeoX" => "gpt_neox", _ => family };
}
