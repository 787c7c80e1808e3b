using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SafetyNotebooks.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

public sealed partial class SparseAutoencoder
{
    /// <summary>SAELens' config file name.</summary>
    public const string CfgFileName = "cfg.json";
    /// <summary>SAELens' weights file name.</summary>
    public const string WeightsFileName = "sae_weights.safetensors";

    /// <summary>
    /// Saves in SAELens' folder layout (what <c>SAE.load_from_disk</c> reads): <c>cfg.json</c> with SAELens' field names
    /// (<c>architecture</c>, <c>d_in</c>, <c>d_sae</c>, <c>dtype</c>, <c>device</c>, <c>apply_b_dec_to_input</c>,
    /// <c>normalize_activations</c>, <c>reshape_activations</c>, <c>hook_name</c>, <c>hook_head_index</c>, <c>model_name</c>,
    /// <c>k</c> and <c>rescale_acts_by_decoder_norm</c> for TopK, and the same hook fields under <c>metadata</c> as SAELens 6
    /// writes them), and <c>sae_weights.safetensors</c> with <c>W_enc [d_in, d_sae]</c>, <c>W_dec [d_sae, d_in]</c>,
    /// <c>b_enc</c>, <c>b_dec</c>, plus <c>threshold</c> (JumpReLU) or <c>b_gate</c>, <c>r_mag</c>, <c>b_mag</c> (gated).
    /// As SAELens' <c>save_inference_model</c>: a BatchTopK SAE is written as a JumpReLU SAE whose thresholds all equal the
    /// learned global threshold, and a set <see cref="ScalingFactor"/> is folded into the written weights (normalize_activations none).
    /// Both files are written atomically.
    /// </summary>
    public void Save(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var s = ScalingFactor ?? 1.0;
        bool batchTopK = Cfg.Architecture == SaeArchitecture.BatchTopK;
        var wEnc = W_enc.detach().clone();
        var wDec = W_dec.detach().clone();
        var bDec = b_dec.detach().clone();
        Tensor? bEnc = b_enc?.detach().clone();
        if (ScalingFactor is not null) { wEnc.mul_(s); wDec.div_(s); bDec.div_(s); }
        if (batchTopK && Cfg.RescaleActsByDecoderNorm)
        {
            // JumpReLU has no decoder-norm rescaling: fold the norms in (SAELens' _fold_norm_topk) so the saved SAE is the same function.
            var norms = wDec.pow(2).sum(1).sqrt();
            wDec.div_(norms.unsqueeze(1));
            wEnc.mul_(norms.unsqueeze(0));
            bEnc!.mul_(norms);
        }
        var tensors = new Dictionary<string, Tensor> { ["W_enc"] = wEnc, ["W_dec"] = wDec, ["b_dec"] = bDec };
        if (bEnc is not null) tensors["b_enc"] = bEnc;
        if (threshold is not null) tensors["threshold"] = threshold.detach();
        if (batchTopK) tensors["threshold"] = full(Cfg.DSae, topk_threshold!.item<double>(), dtype: Cfg.DType);
        if (b_gate is not null) { tensors["b_gate"] = b_gate.detach(); tensors["r_mag"] = r_mag!.detach(); tensors["b_mag"] = b_mag!.detach(); }
        Safetensors.Save(Path.Combine(directory, WeightsFileName), tensors);
        AtomicFile.WriteAllText(Path.Combine(directory, CfgFileName), ConfigJson(batchTopK ? SaeArchitecture.JumpReLU : Cfg.Architecture).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    JsonObject ConfigJson(SaeArchitecture architecture)
    {
        var o = new JsonObject
        {
            ["architecture"] = SaeConfig.NameOf(architecture),
            ["d_in"] = Cfg.DIn,
            ["d_sae"] = Cfg.DSae,
            ["dtype"] = DTypeName(Cfg.DType),
            ["device"] = W_enc.device_type.ToString().ToLowerInvariant(),
            ["apply_b_dec_to_input"] = Cfg.ApplyBDecToInput,
            ["normalize_activations"] = ScalingFactor is null && Cfg.NormalizeActivations == SaeNormalization.ExpectedAverageOnlyIn ? "expected_average_only_in" : "none",
            ["reshape_activations"] = Cfg.HookName is { } h && h.EndsWith("hook_z", StringComparison.Ordinal) ? "hook_z" : "none",
            ["b_dec_init_method"] = Cfg.BDecInitName,
        };
        if (architecture == SaeArchitecture.TopK)
        {
            o["k"] = (int)Cfg.K;
            o["rescale_acts_by_decoder_norm"] = Cfg.RescaleActsByDecoderNorm;
        }
        // Top-level hook fields are what SAELens < 6 reads (and 6 moves into metadata); metadata is SAELens 6's place.
        o["hook_name"] = Cfg.HookName;
        o["hook_head_index"] = Cfg.HookHeadIndex;
        o["model_name"] = Cfg.ModelName;
        o["metadata"] = new JsonObject { ["hook_name"] = Cfg.HookName, ["hook_head_index"] = Cfg.HookHeadIndex, ["model_name"] = Cfg.ModelName };
        return o;
    }

    static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.Float64 => "float64",
        ScalarType.Float16 => "float16",
        ScalarType.BFloat16 => "bfloat16",
        _ => throw new ArgumentException($"dtype {t} has no SAELens name; use Float32, Float64, Float16 or BFloat16."),
    };

    static ScalarType ParseDType(string name, string cfgPath) => name.Replace("torch.", "", StringComparison.Ordinal) switch
    {
        "float32" => ScalarType.Float32,
        "float64" => ScalarType.Float64,
        "float16" => ScalarType.Float16,
        "bfloat16" => ScalarType.BFloat16,
        _ => throw new InvalidDataException($"{cfgPath}: \"dtype\" is \"{name}\"; SAELens dtypes are float32, float64, float16, bfloat16 — fix the field."),
    };

    /// <summary>
    /// Loads an SAE from a folder in SAELens' layout (<c>cfg.json</c> + <c>sae_weights.safetensors</c>), written by
    /// <see cref="Save"/> or by SAELens (<c>save_model</c>/<c>save_inference_model</c>, versions before and after 6.0: hook fields
    /// at the top level, as <c>hook_point</c>, or under <c>metadata</c>; <c>activation_fn: topk</c> with <c>activation_fn_kwargs.k</c>).
    /// All-or-nothing: every field, tensor name and shape is checked before an SAE is returned; a problem throws
    /// <see cref="InvalidDataException"/> naming the file, the field or tensor, and the fix. Weights are cast to the cfg's dtype.
    /// </summary>
    public static SparseAutoencoder Load(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"SAE folder '{directory}' not found; pass the folder that holds {CfgFileName} and {WeightsFileName} (SAELens' layout).");
        var cfgPath = Path.Combine(directory, CfgFileName);
        var weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(cfgPath))
            throw new FileNotFoundException($"{cfgPath} not found; an SAE folder needs {CfgFileName} (SAELens' config) beside {WeightsFileName}. Save with SparseAutoencoder.Save or SAELens' save_model.", cfgPath);
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException($"{weightsPath} not found; an SAE folder needs {WeightsFileName} beside {CfgFileName}. Save with SparseAutoencoder.Save or SAELens' save_model.", weightsPath);
        var cfg = ReadConfig(cfgPath);

        using var st = Safetensors.Open(weightsPath);
        var expected = ExpectedTensors(cfg);
        var names = st.Names.ToHashSet(StringComparer.Ordinal);
        // Older SAELens files carry an all-ones "scaling_factor" (finetuning scaling, unused): dropped, as SAELens does.
        var missing = expected.Keys.Where(n => !names.Contains(n)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{weightsPath}: missing tensor(s) {string.Join(", ", missing)} for a {cfg.ArchitectureName} SAE (expects {string.Join(", ", expected.Keys)}); check \"architecture\" in {CfgFileName} or re-save the SAE.");
        var unexpected = names.Where(n => !expected.ContainsKey(n) && n != "scaling_factor").ToList();
        if (unexpected.Count > 0)
            throw new InvalidDataException($"{weightsPath}: unexpected tensor(s) {string.Join(", ", unexpected)} for a {cfg.ArchitectureName} SAE (expects {string.Join(", ", expected.Keys)}); check \"architecture\" in {CfgFileName}.");
        foreach (var (name, shape) in expected)
        {
            var info = st.Info(name);
            if (!info.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"{weightsPath}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}] but cfg.json (d_in = {cfg.DIn}, d_sae = {cfg.DSae}) needs [{string.Join(", ", shape)}]; fix d_in/d_sae in {CfgFileName} or use the matching weights file.");
        }
        if (names.Contains("scaling_factor"))
        {
            using var sf = st.Read("scaling_factor");
            if (!sf.eq(1).all().item<bool>())
                throw new InvalidDataException($"{weightsPath}: has a finetuning 'scaling_factor' that is not all ones, which this library does not apply; fold it into W_dec (W_dec *= scaling_factor[:, None]) and drop it.");
        }

        var sae = new SparseAutoencoder(cfg with { Seed = null });
        try
        {
            using var _ = no_grad();
            foreach (var name in expected.Keys)
            {
                using var t = st.Read(name);
                var target = name == "topk_threshold" ? sae.topk_threshold! : sae.named_parameters().First(p => p.name == name).parameter;
                target.copy_(t.to_type(target.dtype));
            }
            sae.BDecInitialized = true;   // trained weights: never re-initialize b_dec from data
            return sae;
        }
        catch
        {
            sae.Dispose();
            throw;
        }
    }

    static Dictionary<string, long[]> ExpectedTensors(SaeConfig c)
    {
        var d = new Dictionary<string, long[]>(StringComparer.Ordinal)
        {
            ["W_enc"] = [c.DIn, c.DSae],
            ["W_dec"] = [c.DSae, c.DIn],
            ["b_dec"] = [c.DIn],
        };
        if (c.Architecture == SaeArchitecture.Gated)
        {
            d["b_gate"] = [c.DSae];
            d["r_mag"] = [c.DSae];
            d["b_mag"] = [c.DSae];
        }
        else d["b_enc"] = [c.DSae];
        if (c.Architecture == SaeArchitecture.JumpReLU) d["threshold"] = [c.DSae];
        if (c.Architecture == SaeArchitecture.BatchTopK) d["topk_threshold"] = [];
        return d;
    }

    /// <summary>Reads a SAELens cfg.json into a <see cref="SaeConfig"/>; errors name the file, the field and the fix.</summary>
    public static SaeConfig ReadConfig(string cfgPath)
    {
        JsonObject o;
        try
        {
            o = JsonNode.Parse(File.ReadAllText(cfgPath)) as JsonObject
                ?? throw new InvalidDataException($"{cfgPath}: is not a JSON object; write SAELens' config ({{\"d_in\": ..., \"d_sae\": ..., \"architecture\": ...}}).");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{cfgPath}: is not valid JSON ({e.Message}); fix or re-save the config.", e);
        }
        var meta = o["metadata"] as JsonObject;
        JsonNode? Field(string name) => o[name] ?? meta?[name];
        int RequiredInt(string name)
        {
            var n = o[name] ?? throw new InvalidDataException($"{cfgPath}: missing \"{name}\"; add it (SAELens' {name}, a positive whole number).");
            try { return n.GetValue<int>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new InvalidDataException($"{cfgPath}: \"{name}\" is {n.ToJsonString()}; it must be a positive whole number.", e); }
        }
        string? Str(string name)
        {
            var n = Field(name);
            if (n is null) return null;
            try { return n.GetValue<string>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new InvalidDataException($"{cfgPath}: \"{name}\" is {n.ToJsonString()}; it must be a string.", e); }
        }
        int dIn = RequiredInt("d_in"), dSae = RequiredInt("d_sae");
        var archName = Str("architecture") ?? "standard";                       // SAELens < 6 default
        if (Str("activation_fn") is "topk" || Str("activation_fn_str") is "topk") archName = "topk";
        SaeArchitecture arch;
        try { arch = SaeConfig.ParseArchitecture(archName); }
        catch (ArgumentException) { throw new InvalidDataException($"{cfgPath}: \"architecture\" is \"{archName}\"; use one of standard, topk, batchtopk, jumprelu, gated."); }
        double k = 100;
        var kNode = o["k"] ?? (o["activation_fn_kwargs"] as JsonObject)?["k"];
        if (kNode is not null)
        {
            try { k = kNode.GetValue<double>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new InvalidDataException($"{cfgPath}: \"k\" is {kNode.ToJsonString()}; it must be a number.", e); }
        }
        else if (arch == SaeArchitecture.TopK)
            throw new InvalidDataException($"{cfgPath}: a topk SAE needs \"k\" (features kept per row); add it.");
        var norm = SaeNormalization.None;
        switch (o["normalize_activations"])
        {
            case null: break;
            case JsonValue v when v.TryGetValue<bool>(out var b): norm = b ? SaeNormalization.ExpectedAverageOnlyIn : SaeNormalization.None; break;
            case JsonValue v when v.TryGetValue<string>(out var str):
                norm = str switch
                {
                    "none" => SaeNormalization.None,
                    "expected_average_only_in" => SaeNormalization.ExpectedAverageOnlyIn,
                    _ => throw new InvalidDataException($"{cfgPath}: \"normalize_activations\" is \"{str}\", which this library does not implement; use \"none\" or \"expected_average_only_in\" (fold other normalizations into the weights first)."),
                };
                break;
            default: throw new InvalidDataException($"{cfgPath}: \"normalize_activations\" must be a string such as \"none\".");
        }
        bool applyBDec = true;
        if (o["apply_b_dec_to_input"] is { } ab)
        {
            try { applyBDec = ab.GetValue<bool>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new InvalidDataException($"{cfgPath}: \"apply_b_dec_to_input\" is {ab.ToJsonString()}; it must be true or false.", e); }
        }
        bool rescale = false;
        if (o["rescale_acts_by_decoder_norm"] is { } rs)
        {
            try { rescale = rs.GetValue<bool>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new InvalidDataException($"{cfgPath}: \"rescale_acts_by_decoder_norm\" is {rs.ToJsonString()}; it must be true or false.", e); }
        }
        var bDecInit = SaeBDecInit.Zeros;
        if (Str("b_dec_init_method") is { } bdi)
        {
            try { bDecInit = SaeConfig.ParseBDecInit(bdi); }
            catch (ArgumentException) { throw new InvalidDataException($"{cfgPath}: \"b_dec_init_method\" is \"{bdi}\"; use one of zeros, mean, geometric_median."); }
        }
        int? headIndex = null;
        if ((Field("hook_head_index") ?? Field("hook_point_head_index")) is { } hi && hi.GetValueKind() == JsonValueKind.Number) headIndex = hi.GetValue<int>();
        var cfg = new SaeConfig
        {
            DIn = dIn,
            DSae = dSae,
            Architecture = arch,
            DType = ParseDType(Str("dtype") ?? "float32", cfgPath),
            ApplyBDecToInput = applyBDec,
            NormalizeActivations = norm,
            K = k,
            RescaleActsByDecoderNorm = rescale,
            HookName = Str("hook_name") ?? Str("hook_point"),
            HookHeadIndex = headIndex,
            ModelName = Str("model_name"),
            DecoderInitNorm = null,
            BDecInitMethod = bDecInit,
        };
        try { cfg.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"{cfgPath}: {e.Message}", e); }
        return cfg;
    }
}
