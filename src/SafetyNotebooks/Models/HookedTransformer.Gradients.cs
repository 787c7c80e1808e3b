using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

public sealed partial class HookedTransformer
{
    /// <summary>
    /// Runs the model, caches the activations whose names pass <paramref name="namesFilter"/> (all if null) and, for each, the
    /// gradient of <paramref name="metric"/>(logits) with respect to it under <c>name + "_grad"</c> (e.g.
    /// <c>blocks.0.attn.hook_z_grad</c>), as TransformerLens' <c>run_with_cache(incl_bwd=True)</c>; attribution patching
    /// builds on it. Gradients come from <c>autograd.grad</c>, so parameters' <c>.grad</c> are left untouched; activations the
    /// metric does not depend on get zero gradients. Works under <c>no_grad</c> and with frozen parameters.
    /// </summary>
    /// <param name="tokens">int64 [batch, pos].</param>
    /// <param name="metric">Maps the logits [batch, pos, d_vocab] to a scalar (one element), e.g. a logit difference.</param>
    /// <param name="namesFilter">Which full hook names to cache (with their gradients); null caches everything.</param>
    /// <param name="attentionMask">[batch, pos] mask of <paramref name="tokens"/> (1 = real, 0 = padding), as in
    /// <see cref="forward(Tensor, Tensor?, HookedTransformerKeyValueCache?, int?, int?)"/>; null: nothing is padded.</param>
    /// <returns>Detached logits, the metric's value, and the cache (activations and gradients, all detached).</returns>
    /// <exception cref="ArgumentException">When the metric is not a single-element floating tensor.</exception>
    public (Tensor Logits, double Metric, ActivationCache Cache) RunWithCacheAndGradients(Tensor tokens, Func<Tensor, Tensor> metric,
        Func<string, bool>? namesFilter = null, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(metric);
        var acts = new List<(string Name, Tensor Act)>();
        var added = new List<(HookPoint Hp, Func<Tensor, HookPoint, Tensor?> Fn)>();
        var store = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            using var scope = NewDisposeScope();
            using var grad = enable_grad();
            // If nothing upstream requires grad (frozen weights), make the embeddings graph leaves.
            foreach (var hp in new[] { hook_embed, hook_pos_embed })
            {
                if (hp is null) continue;
                Func<Tensor, HookPoint, Tensor?> leaf = (x, h) => x.requires_grad ? null : x.detach().requires_grad_(true);
                hp.AddHook(leaf);
                added.Add((hp, leaf));
            }
            foreach (var (name, hp) in _hookPoints)
            {
                if (namesFilter is not null && !namesFilter(name)) continue;
                Func<Tensor, HookPoint, Tensor?> fn = (x, h) =>
                {
                    // An alias shares x's autograd identity but outlives the forward pass's dispose scope.
                    foreach (var old in acts.Where(a => a.Name == h.Name)) old.Act.Dispose();
                    acts.RemoveAll(a => a.Name == h.Name);
                    acts.Add((h.Name, x.alias().DetachFromDisposeScope()));
                    return null;
                };
                hp.AddHook(fn);
                added.Add((hp, fn));
            }
            var logits = forward(tokens, attentionMask);
            var m = metric(logits);
            if (m.numel() != 1 || !m.is_floating_point())
                throw new ArgumentException($"The metric must return a single floating-point value but returned shape [{string.Join(", ", m.shape)}] {m.dtype}; " +
                    "reduce it (e.g. .mean() or .sum()).", nameof(metric));
            var inputs = acts.Where(a => a.Act.requires_grad).ToList();
            var grads = inputs.Count == 0 ? Array.Empty<Tensor>()
                : autograd.grad(new[] { m.reshape(-1)[0] }, inputs.Select(a => a.Act).ToArray(), allow_unused: true).ToArray();
            BackwardHookFunction.ThrowPending();
            var gradByName = new Dictionary<string, Tensor?>();
            for (int i = 0; i < inputs.Count; i++) gradByName[inputs[i].Name] = grads[i];
            foreach (var (name, act) in acts)
            {
                store[name] = act.detach().DetachFromDisposeScope();
                var g = gradByName.GetValueOrDefault(name);
                store[name + "_grad"] = (g is null || g.IsInvalid ? zeros_like(act) : g.detach()).DetachFromDisposeScope();
            }
            double value = m.to_type(ScalarType.Float64).item<double>();
            return (logits.detach().DetachFromDisposeScope(), value, new ActivationCache(store, this));
        }
        catch
        {
            foreach (var t in store.Values) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var (hp, fn) in added) hp.RemoveHook(fn);
            foreach (var (_, act) in acts) act.Dispose();
        }
    }

    /// <summary>
    /// Runs <c>loss.backward()</c> and then rethrows any exception a backward hook threw during it (an exception cannot cross
    /// libtorch's backward engine, so calling <c>backward()</c> directly would only surface it at the next hook point).
    /// </summary>
    /// <param name="loss">A scalar that depends on the model.</param>
    public void Backward(Tensor loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        loss.backward();
        BackwardHookFunction.ThrowPending();
    }
}
