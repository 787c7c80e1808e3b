using System.Text.Json;
using System.Text.Json.Nodes;
using SafetyNotebooks.IO;
using SafetyNotebooks.Models;
using SafetyNotebooks.Models.Components;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training.Lora;

/// <summary>
/// The adapter placed in one projection slot of a block (e.g. the attention's q/k/v projection): the LoRA updates of the
/// Hugging Face layers that feed this slot, each placed at its columns of the slot's output (zeros elsewhere).
/// </summary>
internal sealed class LoraSlot : nn.Module<Tensor, Tensor>
{
    readonly (LoraLinear Layer, LoraTarget Target)[] _parts;
    readonly long _width;

    public LoraSlot(IEnumerable<(LoraLinear, LoraTarget)> parts, long width) : base("lora_slot")
    {
        _parts = parts.OrderBy(p => p.Item2.SlotOffset).ToArray();
        _width = width;
        foreach (var (layer, target) in _parts) register_module(target.Leaf, layer);
    }

    protected override void RegisterComponents() { }

    /// <summary>Input rows [rows, in] → the slot's delta [rows, width].</summary>
    public override Tensor forward(Tensor x)
    {
        if (_parts.Length == 1 && _parts[0].Target.SlotOffset == 0 && _parts[0].Target.OutFeatures == _width)
            return _parts[0].Target.ToSlotOrder(_parts[0].Layer.call(x));
        var pieces = new List<Tensor>();
        long at = 0, rows = x.shape[0];
        foreach (var (layer, target) in _parts)
        {
            if (target.SlotOffset > at) pieces.Add(zeros(new long[] { rows, target.SlotOffset - at }, dtype: x.dtype, device: x.device));
            pieces.Add(target.ToSlotOrder(layer.call(x)));
            at = target.SlotOffset + target.OutFeatures;
        }
        if (at < _width) pieces.Add(zeros(new long[] { rows, _width - at }, dtype: x.dtype, device: x.device));
        return cat(pieces, 1);
    }
}

/// <summary>
/// LoRA adapters on a <see cref="HookedTransformer"/>'s linear layers, named and saved as PEFT does (<c>get_peft_model</c>,
/// <c>merge_adapter</c>/<c>unmerge_adapter</c>, <c>merge_and_unload</c>, <c>save_pretrained</c>/<c>from_pretrained</c>).
/// </summary>
/// <remarks>
/// <para>The transformer stores its weights TransformerLens-style (fused W_QKV, per-head W_O, W_in [d_model, d_mlp]), not as
/// Hugging Face modules, so each adapted layer is addressed by its Hugging Face name for the model's family (GPT-2
/// <c>transformer.h.0.attn.c_attn</c>, Llama <c>model.layers.0.self_attn.q_proj</c>, GPT-NeoX
/// <c>gpt_neox.layers.0.attention.query_key_value</c>) and its update is added through the component's adapter slot
/// (<see cref="Attention.QkvAdapter"/>, <see cref="Attention.OAdapter"/>, <see cref="Mlp.InAdapter"/>,
/// <see cref="GatedMlp.GateAdapter"/>, <see cref="Mlp.OutAdapter"/>). The adapters are registered submodules, so
/// <c>model.parameters()</c>, <c>train()</c>/<c>eval()</c> (dropout) and the <see cref="Trainer{TBatch}"/> (which optimizes
/// the parameters with <c>requires_grad</c>) see them; every base parameter is frozen.</para>
/// <para>A and B are stored in nn.Linear convention (A [r, in], B [out, r]) for every family, as PEFT does also for GPT-2's
/// Conv1D layers (whose <em>weights</em> are [in, out]: PEFT sets fan_in_fan_out and transposes only the merged delta).</para>
/// </remarks>
public sealed class LoraAdapter
{
    /// <summary>Prefix PEFT's saved keys carry (PeftModel.base_model.model).</summary>
    public const string KeyPrefix = "base_model.model.";
    /// <summary>PEFT's adapter config file name.</summary>
    public const string ConfigFileName = "adapter_config.json";
    /// <summary>PEFT's adapter weights file name.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    readonly List<(LoraLinear Layer, LoraTarget Target)> _layers;
    readonly Dictionary<Parameter, bool> _frozen;
    readonly Dictionary<(int Layer, LoraSlotKind Slot), LoraSlot> _slots = new();
    bool _unloaded;

    LoraAdapter(HookedTransformer model, LoraConfig config, string family, List<(LoraLinear, LoraTarget)> layers, Dictionary<Parameter, bool> frozen)
    {
        Model = model; Config = config; Family = family; _layers = layers; _frozen = frozen;
    }

    /// <summary>The adapted model.</summary>
    public HookedTransformer Model { get; }
    /// <summary>The configuration (with <see cref="LoraConfig.TargetModules"/> resolved and <see cref="LoraConfig.Family"/> set).</summary>
    public LoraConfig Config { get; }
    /// <summary>Hugging Face family of the module names (<c>gpt2</c>, <c>llama</c>, <c>gpt_neox</c>).</summary>
    public string Family { get; }
    /// <summary>True while the updates are merged into the base weights (<see cref="Merge"/>).</summary>
    public bool Merged { get; private set; }
    /// <summary>The LoRA layers by Hugging Face module name, in layer order.</summary>
    public IReadOnlyDictionary<string, LoraLinear> Layers => _layers.ToDictionary(l => l.Target.Name, l => l.Layer);
    /// <summary>The trainable parameters (every A and B).</summary>
    public IEnumerable<Parameter> Parameters() => _layers.SelectMany(l => new[] { l.Layer.A, l.Layer.B });
    /// <summary>Number of trainable (LoRA) parameters, as PEFT's <c>print_trainable_parameters</c>.</summary>
    public long TrainableParameterCount => Parameters().Sum(p => p.numel());
    /// <summary>Number of base-model parameters (frozen).</summary>
    public long BaseParameterCount => _frozen.Keys.Sum(p => p.numel());

    /// <summary>
    /// Adds LoRA adapters to <paramref name="model"/>'s linear layers named by <paramref name="config"/> (PEFT's
    /// <c>get_peft_model</c>) and freezes every base parameter. Forward passes then compute <c>W x + b + scaling·B(A(dropout(x)))</c>
    /// on the targeted layers; with B = 0 at the start the model's outputs are unchanged.
    /// </summary>
    /// <exception cref="ArgumentException">A target module names no layer (the message lists the valid names), or the config is invalid.</exception>
    /// <exception cref="InvalidOperationException">The model already carries adapters.</exception>
    public static LoraAdapter Apply(HookedTransformer model, LoraConfig config)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        foreach (var b in model.blocks)
            if (b.attn.QkvAdapter is not null || b.attn.OAdapter is not null || b.mlp?.InAdapter is not null || b.mlp?.OutAdapter is not null ||
                (b.mlp as GatedMlp)?.GateAdapter is not null)
                throw new InvalidOperationException($"blocks.{b.Layer} already carries an adapter; call Unload() or MergeAndUnload() on the existing LoraAdapter before applying another.");
        if (model.Cfg.UseSplitQkvInput || model.Cfg.UseAttnIn)
            throw new InvalidOperationException("LoRA adapters do not support UseSplitQkvInput/UseAttnIn (per-head attention inputs); turn them off with SetUseSplitQkvInput(false)/SetUseAttnIn(false) first.");
        var family = config.Family ?? LoraTargets.InferFamily(model.Cfg);
        var targetModules = config.TargetModules ?? LoraTargets.DefaultTargetModules(family);
        var targets = LoraTargets.Select(model, family, targetModules);
        var resolved = config with { Family = family, TargetModules = targetModules.ToList() };

        var device = model.parameters().First().device;
        var dtype = model.Cfg.DType;
        using var generator = config.Seed is { } seed ? new Generator((ulong)seed) : null;
        var layers = targets.Select(t => (new LoraLinear(t.Name, t.InFeatures, t.OutFeatures, resolved, generator, dtype), t)).ToList();
        foreach (var (layer, _) in layers) layer.to(device);

        var frozen = new Dictionary<Parameter, bool>(ReferenceEqualityComparer.Instance as IEqualityComparer<Parameter>);
        foreach (var p in model.parameters()) { frozen[p] = p.requires_grad; p.requires_grad = false; }
        var adapter = new LoraAdapter(model, resolved, family, layers, frozen);
        foreach (var g in layers.GroupBy(l => (l.t.Layer, l.t.Slot)))
            adapter._slots[g.Key] = new LoraSlot(g.Select(x => (x.Item1, x.t)), SlotWidth(model, g.Key.Slot));
        adapter.Attach();
        if (model.training) foreach (var (layer, _) in layers) layer.train();
        else foreach (var (layer, _) in layers) layer.eval();
        return adapter;
    }

    static long SlotWidth(HookedTransformer model, LoraSlotKind slot)
    {
        var c = model.Cfg;
        return slot switch
        {
            LoraSlotKind.Qkv => (c.NHeads + 2L * c.EffectiveNKeyValueHeads) * c.DHead,
            LoraSlotKind.O or LoraSlotKind.MlpOut => c.DModel,
            _ => c.DMlp,
        };
    }

    void Attach() => SetSlots(attach: true);
    void Detach() => SetSlots(attach: false);

    void SetSlots(bool attach)
    {
        foreach (var ((layer, kind), slot) in _slots)
        {
            var block = Model.blocks[layer];
            var value = attach ? slot : null;
            switch (kind)
            {
                case LoraSlotKind.Qkv: block.attn.QkvAdapter = value; break;
                case LoraSlotKind.O: block.attn.OAdapter = value; break;
                case LoraSlotKind.MlpIn: block.mlp!.InAdapter = value; break;
                case LoraSlotKind.MlpGate: ((GatedMlp)block.mlp!).GateAdapter = value; break;
                case LoraSlotKind.MlpOut: block.mlp!.OutAdapter = value; break;
            }
        }
    }

    void ThrowIfUnloaded()
    {
        if (_unloaded) throw new InvalidOperationException("This LoraAdapter was unloaded from its model; apply or load a new one (LoraAdapter.Apply / LoraAdapter.Load).");
    }

    /// <summary>
    /// Adds every update into the base weights (PEFT's <c>merge_adapter</c>): the targeted layer's weight becomes
    /// <c>W + scaling·B·A</c> (transposed into the model's [in, out] layouts), and the adapters leave the forward pass, so the
    /// model runs at the base model's speed with the same outputs. Train only while unmerged. No-op when already merged.
    /// </summary>
    public void Merge()
    {
        ThrowIfUnloaded();
        if (Merged) return;
        ApplyDeltas(+1);
        Detach();
        Merged = true;
    }

    /// <summary>Subtracts the updates merged by <see cref="Merge"/> again (PEFT's <c>unmerge_adapter</c>; exact up to float rounding) and re-attaches the adapters.</summary>
    public void Unmerge()
    {
        ThrowIfUnloaded();
        if (!Merged) return;
        ApplyDeltas(-1);
        Attach();
        Merged = false;
    }

    /// <summary>Merges the updates into the base weights and removes the adapters for good (PEFT's <c>merge_and_unload</c>); base parameters get their <c>requires_grad</c> back.</summary>
    public void MergeAndUnload()
    {
        Merge();
        Release();
    }

    /// <summary>Removes the adapters without merging (PEFT's <c>unload</c>; unmerges first if merged): the model is the base model again.</summary>
    public void Unload()
    {
        Unmerge();
        Detach();
        Release();
    }

    void Release()
    {
        foreach (var (p, requiresGrad) in _frozen) p.requires_grad = requiresGrad;
        _unloaded = true;
    }

    void ApplyDeltas(int sign)
    {
        using var _ = torch.no_grad();
        foreach (var group in _layers.GroupBy(l => (l.Target.Layer, l.Target.Slot)))
        {
            var (layerIndex, kind) = group.Key;
            var block = Model.blocks[layerIndex];
            using var scope = torch.NewDisposeScope();
            int inF = group.First().Target.InFeatures;
            // The slot's weight update in the model's [in, out] orientation (PEFT transposes for fan_in_fan_out the same way).
            var delta = zeros(new long[] { inF, SlotWidth(Model, kind) }, dtype: Model.Cfg.DType, device: group.First().Layer.A.device);
            foreach (var (layer, target) in group)
                delta.narrow(1, target.SlotOffset, target.OutFeatures).add_(target.ToSlotOrder(layer.DeltaWeight().t()));
            if (sign < 0) delta.neg_();
            var cfg = Model.Cfg;
            int D = cfg.DModel, H = cfg.NHeads, Hkv = cfg.EffectiveNKeyValueHeads, Dh = cfg.DHead;
            switch (kind)
            {
                case LoraSlotKind.Qkv:
                    if (!block.attn.IsGroupedQuery) block.attn.W_QKV.view(D, -1).add_(delta);
                    else
                    {
                        var parts = delta.split(new long[] { H * Dh, Hkv * Dh, Hkv * Dh }, 1);
                        block.attn.W_Q.add_(parts[0].reshape(D, H, Dh).permute(1, 0, 2));
                        block.attn.W_K.add_(parts[1].reshape(D, Hkv, Dh).permute(1, 0, 2));
                        block.attn.W_V.add_(parts[2].reshape(D, Hkv, Dh).permute(1, 0, 2));
                    }
                    break;
                case LoraSlotKind.O: block.attn.W_O.view(H * Dh, D).add_(delta); break;
                case LoraSlotKind.MlpIn: block.mlp!.W_in.add_(delta); break;
                case LoraSlotKind.MlpGate: ((GatedMlp)block.mlp!).W_gate.add_(delta); break;
                case LoraSlotKind.MlpOut: block.mlp!.W_out.add_(delta); break;
            }
        }
    }

    /// <summary>The adapter's tensors under PEFT's key names (<c>base_model.model.{module}.lora_A.weight</c> [r, in], <c>.lora_B.weight</c> [out, r]), detached copies.</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (layer, target) in _layers)
        {
            d[KeyPrefix + target.Name + ".lora_A.weight"] = layer.A.detach().cpu().contiguous().clone();
            d[KeyPrefix + target.Name + ".lora_B.weight"] = layer.B.detach().cpu().contiguous().clone();
        }
        return d;
    }

    /// <summary>
    /// Writes the adapter in PEFT's layout (<c>save_pretrained</c>): <c>adapter_config.json</c> (peft_type "LORA", r, lora_alpha,
    /// lora_dropout, target_modules, fan_in_fan_out, use_rslora, ...) and <c>adapter_model.safetensors</c> with PEFT's key names,
    /// loadable by <c>PeftModel.from_pretrained</c> on the Hugging Face model of the same family and shape.
    /// </summary>
    public void Save(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ThrowIfUnloaded();
        Directory.CreateDirectory(directory);
        var config = new JsonObject
        {
            ["alpha_pattern"] = new JsonObject(),
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = Config.BaseModelNameOrPath,
            ["bias"] = "none",
            ["fan_in_fan_out"] = _layers.Any(l => l.Target.FanInFanOut),
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["layers_pattern"] = null,
            ["layers_to_transform"] = null,
            ["lora_alpha"] = Config.LoraAlpha,
            ["lora_dropout"] = Config.LoraDropout,
            ["modules_to_save"] = null,
            ["peft_type"] = "LORA",
            ["r"] = Config.R,
            ["rank_pattern"] = new JsonObject(),
            ["revision"] = null,
            // PEFT reads a string as one regular expression and a list as module names.
            ["target_modules"] = LoraTargets.IsRegex(Config.TargetModules!) ? (JsonNode?)JsonValue.Create(Config.TargetModules![0])
                : new JsonArray(Config.TargetModules!.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray()),
            ["task_type"] = "CAUSAL_LM",
            ["use_dora"] = false,
            ["use_rslora"] = Config.UseRslora,
        };
        AtomicFile.WriteAllText(Path.Combine(directory, ConfigFileName), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var tensors = StateDict();
        try { Safetensors.Save(Path.Combine(directory, WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" }); }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    /// <summary>
    /// Reads a PEFT LoRA adapter (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>, e.g. from
    /// <see cref="Save"/> or from PEFT's <c>save_pretrained</c>) and applies it to <paramref name="model"/> (PEFT's
    /// <c>PeftModel.from_pretrained</c>). Every expected tensor must be present with its shape, and no other tensor may be.
    /// </summary>
    /// <param name="model">The base model (same family and shapes as the adapter's base).</param>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="family">Hugging Face family of the names (null: inferred from the model).</param>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">The config asks for something this loader does not implement, or the tensors do not match it.</exception>
    public static LoraAdapter Load(HookedTransformer model, string directory, string? family = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var configPath = Path.Combine(directory, ConfigFileName);
        var weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"LoRA adapter config not found: {Path.GetFullPath(configPath)}. Point Load at the folder PEFT's save_pretrained (or LoraAdapter.Save) wrote.", configPath);
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException(File.Exists(Path.Combine(directory, "adapter_model.bin"))
                ? $"'{directory}' has adapter_model.bin (pickle), which is not read: re-save the adapter with safe_serialization=True to get {WeightsFileName}."
                : $"LoRA adapter weights not found: {Path.GetFullPath(weightsPath)}. Copy {WeightsFileName} beside {ConfigFileName}.", weightsPath);
        var config = ReadConfig(configPath) with { Family = family };
        var adapter = Apply(model, config);
        try
        {
            using var file = Safetensors.Open(weightsPath);
            var expected = adapter._layers.SelectMany(l => new[]
            {
                (Key: KeyPrefix + l.Target.Name + ".lora_A.weight", Param: l.Layer.A),
                (Key: KeyPrefix + l.Target.Name + ".lora_B.weight", Param: l.Layer.B),
            }).ToList();
            var missing = expected.Where(e => !file.Contains(e.Key)).Select(e => e.Key).ToList();
            if (missing.Count > 0)
                throw new InvalidDataException($"'{weightsPath}' lacks {missing.Count} tensor(s) that target_modules {string.Join(", ", config.TargetModules!)} implies, e.g. '{missing[0]}': " +
                    "the adapter was trained on another family or layer count; load it into the matching model (or pass its family).");
            var known = expected.Select(e => e.Key).ToHashSet(StringComparer.Ordinal);
            var extra = file.Names.Where(n => !known.Contains(n)).ToList();
            if (extra.Count > 0)
                throw new InvalidDataException($"'{weightsPath}' has {extra.Count} tensor(s) this LoRA config does not create, e.g. '{extra[0]}' " +
                    "(modules_to_save, DoRA magnitudes or another family's names are not supported): remove them or re-save a plain LoRA adapter.");
            using var _ = torch.no_grad();
            foreach (var (key, param) in expected)
            {
                var info = file.Info(key);
                if (!info.Shape.SequenceEqual(param.shape))
                    throw new InvalidDataException($"'{weightsPath}': tensor '{key}' has shape [{string.Join(", ", info.Shape)}] but this model and r = {config.R} need " +
                        $"[{string.Join(", ", param.shape)}]: check r in {ConfigFileName} and that the base model is the one the adapter was trained on.");
                using var t = file.Read(key);
                param.copy_(t);
            }
        }
        catch
        {
            adapter.Unload();
            throw;
        }
        return adapter;
    }

    /// <summary>Reads the LoRA fields of a PEFT <c>adapter_config.json</c>; refuses features this implementation does not have.</summary>
    public static LoraConfig ReadConfig(string path)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"'{path}' is not valid JSON ({e.Message}); re-save the adapter."); }
        if (root is not JsonObject o) throw new InvalidDataException($"'{path}' is not a JSON object; re-save the adapter.");
        InvalidDataException Bad(string field, string problem, string fix) => new($"'{path}': field '{field}' {problem}; {fix}");
        var peftType = o["peft_type"]?.GetValue<string>();
        if (peftType != "LORA") throw Bad("peft_type", $"is {(peftType is null ? "missing" : $"\"{peftType}\"")}, not \"LORA\"", "only LoRA adapters are read.");
        if (o["use_dora"] is JsonValue dora && dora.GetValue<bool>()) throw Bad("use_dora", "is true (DoRA)", "DoRA is not implemented; train a plain LoRA adapter.");
        if (o["bias"] is JsonValue bias && bias.GetValue<string>() != "none") throw Bad("bias", $"is \"{bias.GetValue<string>()}\"", "only bias \"none\" is implemented.");
        if (o["lora_bias"] is JsonValue lb && lb.GetValue<bool>()) throw Bad("lora_bias", "is true", "only lora_bias false is implemented.");
        if (o["modules_to_save"] is JsonArray { Count: > 0 }) throw Bad("modules_to_save", "lists modules", "saving whole modules beside LoRA is not implemented; set it to null.");
        if (o["layers_to_transform"] is JsonNode lt && lt.GetValueKind() != JsonValueKind.Null) throw Bad("layers_to_transform", "is set", "per-layer selection is not implemented; set it to null.");
        foreach (var f in new[] { "rank_pattern", "alpha_pattern" })
            if (o[f] is JsonObject { Count: > 0 }) throw Bad(f, "is not empty", "per-module ranks/alphas are not implemented.");
        var targets = o["target_modules"] switch
        {
            JsonArray a => a.Select(n => n!.GetValue<string>()).ToList(),
            JsonValue v when v.GetValueKind() == JsonValueKind.String => new List<string> { v.GetValue<string>() },
            _ => throw Bad("target_modules", "is missing or not a list/string", "name the adapted modules, e.g. [\"c_attn\"]."),
        };
        if (o["r"] is not JsonValue r || r.GetValueKind() != JsonValueKind.Number) throw Bad("r", "is missing or not a number", "set the LoRA rank, e.g. 8.");
        if (o["lora_alpha"] is not JsonValue alpha || alpha.GetValueKind() != JsonValueKind.Number) throw Bad("lora_alpha", "is missing or not a number", "set it, e.g. 16.");
        try
        {
            return new LoraConfig
            {
                R = r.GetValue<int>(),
                LoraAlpha = alpha.GetValue<double>(),
                LoraDropout = o["lora_dropout"] is JsonValue d && d.GetValueKind() == JsonValueKind.Number ? d.GetValue<double>() : 0,
                TargetModules = targets,
                UseRslora = o["use_rslora"] is JsonValue rs && rs.GetValueKind() == JsonValueKind.True,
                BaseModelNameOrPath = o["base_model_name_or_path"] is JsonValue b && b.GetValueKind() == JsonValueKind.String ? b.GetValue<string>() : null,
            }.Validate();
        }
        catch (ArgumentException e) { throw new InvalidDataException($"'{path}': {e.Message}", e); }
    }
}
