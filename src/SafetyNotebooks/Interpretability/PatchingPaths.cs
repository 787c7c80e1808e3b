using SafetyNotebooks.Models;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>
/// Path patching (Wang et al., "Interpretability in the Wild", 2022, the IOI paper; ARENA's <c>get_path_patch_head_to_heads</c>):
/// measures the effect of sender heads on the query, key or value input of receiver heads through the direct residual path
/// only. Names follow ARENA: the <c>orig</c> run is the one measured (e.g. the clean IOI prompts), the <c>new</c> run
/// supplies the senders' outputs (e.g. the corrupted "ABC" prompts).
/// </summary>
/// <remarks>
/// <para>Step 1 (the two caches) is the caller's: <c>model.RunWithCache</c> on both prompt sets. Step 2 runs the orig tokens
/// with every head's <c>hook_z</c> and every MLP's <c>hook_mlp_out</c> frozen to the orig cache, except the senders' z,
/// which come from the new cache; it records the receivers' <c>hook_q_input</c>/<c>hook_k_input</c>/<c>hook_v_input</c>
/// (TransformerLens' split-QKV input hooks). Step 3 runs the orig tokens again with only those receiver inputs patched, and
/// returns the metric.</para>
/// <para>The split-QKV input hooks are switched on for the call (<see cref="HookedTransformer.SetUseSplitQkvInput"/>) and off
/// again afterwards if they were off; outputs do not change. For "k" and "v" the receiver head index is the key/value head
/// (different from the query head only with grouped-query attention).</para>
/// </remarks>
public static class PatchingPaths
{
    /// <summary>
    /// Path-patches <paramref name="senders"/> → the <paramref name="receiverInput"/> of <paramref name="receivers"/> and returns
    /// the metric of the patched orig run.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="origTokens">int64 [batch, pos], the run measured.</param>
    /// <param name="origCache">Activations of the orig run (needs every layer's hook_z and hook_mlp_out).</param>
    /// <param name="newCache">Activations of the new run, same [batch, pos] (needs the senders' hook_z).</param>
    /// <param name="senders">Sender heads (layer, head).</param>
    /// <param name="receivers">Receiver heads (layer, head); each must sit in a later layer than some sender to be affected.</param>
    /// <param name="receiverInput">"q", "k" or "v" (several: e.g. "kv").</param>
    /// <param name="patchingMetric">Logits [batch, pos, d_vocab] → single-element float tensor.</param>
    /// <param name="attentionMask">[batch, pos] mask of the orig tokens (null: no padding).</param>
    public static double HeadToHeads(HookedTransformer model, Tensor origTokens, ActivationCache origCache, ActivationCache newCache,
        IReadOnlyList<(int Layer, int Head)> senders, IReadOnlyList<(int Layer, int Head)> receivers, string receiverInput,
        Func<Tensor, Tensor> patchingMetric, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(senders);
        ArgumentNullException.ThrowIfNull(receivers);
        var inputs = ParseInputs(receiverInput);
        CheckHeads(model, senders, nameof(senders), model.Cfg.NHeads);
        foreach (var i in inputs)
            CheckHeads(model, receivers, nameof(receivers), i == 'q' ? model.Cfg.NHeads : model.Cfg.EffectiveNKeyValueHeads);
        if (receivers.Count == 0) throw new ArgumentException("Give at least one receiver head (layer, head).", nameof(receivers));
        int n = model.Cfg.NLayers;
        for (int l = 0; l < n; l++)
        {
            foreach (var (cache, what) in new[] { (origCache, "origCache"), (newCache, "newCache") })
                if (!cache.Contains(Utils.GetActName("z", l)))
                    throw new ArgumentException($"{what} has no '{Utils.GetActName("z", l)}'; cache both runs with model.RunWithCache(tokens) (no namesFilter, or one keeping hook_z and hook_mlp_out).", what);
            if (!model.Cfg.AttnOnly && !origCache.Contains(Utils.GetActName("mlp_out", l)))
                throw new ArgumentException($"origCache has no '{Utils.GetActName("mlp_out", l)}'; cache the orig run with model.RunWithCache(tokens) (no namesFilter, or one keeping hook_mlp_out).", nameof(origCache));
        }
        var z0 = origCache[Utils.GetActName("z", 0)];
        var zNew = newCache[Utils.GetActName("z", 0)];
        if (!z0.shape.SequenceEqual(zNew.shape) || z0.shape[0] != origTokens.shape[0] || z0.shape[1] != origTokens.shape[^1])
            throw new ArgumentException($"origCache z is [{string.Join(", ", z0.shape)}], newCache z is [{string.Join(", ", zNew.shape)}] and the orig tokens are [{string.Join(", ", origTokens.shape)}]: " +
                "both runs need the same batch size and length (pad them to one length and pass the attention mask).", nameof(newCache));

        bool wasOn = model.Cfg.UseSplitQkvInput;
        if (!wasOn) model.SetUseSplitQkvInput(true);
        try
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            // Step 2: freeze everything to orig, senders from new; record the receivers' inputs.
            var senderSet = senders.ToHashSet();
            var hooks = new List<(string, Func<Tensor, HookPoint, Tensor?>)>();
            for (int l = 0; l < n; l++)
            {
                int layer = l;
                var origZ = origCache[Utils.GetActName("z", l)];
                var newZ = newCache[Utils.GetActName("z", l)];
                var fromNew = senders.Where(s => s.Layer == layer).Select(s => s.Head).ToArray();
                hooks.Add((Utils.GetActName("z", l), (z, _) =>
                {
                    var y = origZ.to(z.dtype).clone();
                    foreach (var h in fromNew) y.narrow(2, h, 1).copy_(newZ.narrow(2, h, 1));
                    return y;
                }));
                if (!model.Cfg.AttnOnly)
                {
                    var origMlp = origCache[Utils.GetActName("mlp_out", l)];
                    hooks.Add((Utils.GetActName("mlp_out", l), (x, _) => origMlp.to(x.dtype).clone()));
                }
            }
            var recorded = new Dictionary<string, Tensor>();
            foreach (var layer in receivers.Select(r => r.Layer).Distinct())
                foreach (var i in inputs)
                {
                    var name = $"blocks.{layer}.hook_{i}_input";
                    hooks.Add((name, (x, hp) => { recorded[hp.Name] = x.clone().DetachFromDisposeScope(); return null; })); // outlives the pass
                }
            model.RunWithHooks(origTokens, attentionMask, hooks.ToArray());

            // Step 3: only the receivers' inputs patched.
            var patch = new List<(string, Func<Tensor, HookPoint, Tensor?>)>();
            foreach (var group in receivers.GroupBy(r => r.Layer))
                foreach (var i in inputs)
                {
                    var name = $"blocks.{group.Key}.hook_{i}_input";
                    var source = recorded[name];
                    var heads = group.Select(r => r.Head).Distinct().ToArray();
                    patch.Add((name, (x, _) =>
                    {
                        var y = x.clone();
                        foreach (var h in heads) y.narrow(2, h, 1).copy_(source.narrow(2, h, 1));
                        return y;
                    }));
                }
            try
            {
                var logits = model.RunWithHooks(origTokens, attentionMask, patch.ToArray());
                return Patching.MetricValue(patchingMetric, logits);
            }
            finally
            {
                foreach (var t in recorded.Values) t.Dispose();
            }
        }
        finally
        {
            if (!wasOn) model.SetUseSplitQkvInput(false);
        }
    }

    /// <summary>
    /// <see cref="HeadToHeads"/> with each head of the model as the only sender → [n_layers, n_heads] metric values
    /// (ARENA's <c>get_path_patch_head_to_heads</c>). Heads in or after the receivers' earliest layer have no path to them;
    /// their cells hold the unpatched orig metric, as computing them would give.
    /// </summary>
    public static Tensor HeadToHeadsSweep(HookedTransformer model, Tensor origTokens, ActivationCache origCache, ActivationCache newCache,
        IReadOnlyList<(int Layer, int Head)> receivers, string receiverInput, Func<Tensor, Tensor> patchingMetric, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(receivers);
        if (receivers.Count == 0) throw new ArgumentException("Give at least one receiver head (layer, head).", nameof(receivers));
        int minReceiver = receivers.Min(r => r.Layer);
        double orig;
        using (no_grad())
        using (var s = NewDisposeScope())
            orig = Patching.MetricValue(patchingMetric, model.forward(origTokens, attentionMask));
        var results = new double[model.Cfg.NLayers * model.Cfg.NHeads];
        for (int l = 0; l < model.Cfg.NLayers; l++)
            for (int h = 0; h < model.Cfg.NHeads; h++)
                results[l * model.Cfg.NHeads + h] = l >= minReceiver ? orig
                    : HeadToHeads(model, origTokens, origCache, newCache, [(l, h)], receivers, receiverInput, patchingMetric, attentionMask);
        return tensor(results, new long[] { model.Cfg.NLayers, model.Cfg.NHeads });
    }

    static char[] ParseInputs(string receiverInput)
    {
        var chars = (receiverInput ?? "").Distinct().ToArray();
        if (chars.Length == 0 || chars.Any(c => c is not ('q' or 'k' or 'v')))
            throw new ArgumentException($"receiverInput is \"{receiverInput}\"; use \"q\", \"k\", \"v\" or a combination such as \"kv\" (which input of the receiver heads the path reaches).", nameof(receiverInput));
        return chars;
    }

    static void CheckHeads(HookedTransformer model, IEnumerable<(int Layer, int Head)> heads, string what, int nHeads)
    {
        foreach (var (l, h) in heads)
            if (l < 0 || l >= model.Cfg.NLayers || h < 0 || h >= nHeads)
                throw new ArgumentOutOfRangeException(what, $"{what}: head L{l}H{h} does not exist; layers are 0…{model.Cfg.NLayers - 1} and heads 0…{nHeads - 1}.");
    }
}
