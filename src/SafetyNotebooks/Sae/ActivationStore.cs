using System.Globalization;
using System.Text.RegularExpressions;
using SafetyNotebooks.IO;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>
/// Settings of an <see cref="ActivationStore"/> (names after SAELens' <c>LanguageModelSAERunnerConfig</c> where one exists).
/// </summary>
public sealed record ActivationStoreConfig
{
    /// <summary>The hook point whose activations are collected (SAELens' <c>hook_name</c>), e.g. <c>blocks.0.hook_resid_post</c>.
    /// Per-position activations of any shape <c>[batch, pos, …]</c> are flattened to <c>[rows, d_in]</c> (e.g. <c>hook_z</c>'s heads).</summary>
    public string HookName { get; init; } = "";
    /// <summary>Activations per served batch (SAELens' <c>train_batch_size_tokens</c>). Default 4096.</summary>
    public int BatchSize { get; init; } = 4096;
    /// <summary>
    /// The shuffling buffer holds this many batches (SAELens' <c>n_batches_in_buffer</c>): it fills to
    /// <c>BufferBatches · BatchSize</c> activations, shuffles, serves half, and refills. Larger buffers mix activations from
    /// more sequences (and, from disk, more chunks) into each batch. Default 16.
    /// </summary>
    public int BufferBatches { get; init; } = 16;
    /// <summary>Token ids whose positions are skipped (SAELens' <c>exclude_special_tokens</c>), e.g. the BOS token: its
    /// activations are outliers that an SAE should not spend features on. Default none.</summary>
    public IReadOnlyList<long> ExcludeTokenIds { get; init; } = Array.Empty<long>();
    /// <summary>Seeds the shuffles (buffer and chunk order). Two stores with the same seed and source serve identical batches.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>Where served batches (and the buffer) live. Default: the CPU.</summary>
    public Device? Device { get; init; }
    /// <summary>Drop the last batch of an epoch when it is smaller than <see cref="BatchSize"/> (SAELens drops it). Default
    /// false: every activation is served exactly once per epoch.</summary>
    public bool DropLast { get; init; }

    internal void Validate(bool needHook = true)
    {
        if (needHook && string.IsNullOrWhiteSpace(HookName))
            throw new ArgumentException("ActivationStoreConfig.HookName is empty; set it to a hook point such as \"blocks.0.hook_resid_post\" (see HookedTransformer.HookNames).");
        if (BatchSize < 1) throw new ArgumentException($"ActivationStoreConfig.BatchSize is {BatchSize}; set it to 1 or more activations per batch.");
        if (BufferBatches < 2) throw new ArgumentException($"ActivationStoreConfig.BufferBatches is {BufferBatches}; set it to 2 or more (the buffer serves half of itself between refills).");
    }
}

/// <summary>What <see cref="ActivationStore.CacheToDisk"/> wrote.</summary>
/// <param name="Directory">The folder holding the chunk files.</param>
/// <param name="ChunkPaths">The chunk files (<c>chunk-00000.safetensors</c>, …), each with one tensor <c>activations [rows, d_in]</c>.</param>
/// <param name="TotalActivations">Activations written, over all chunks.</param>
/// <param name="DIn">Width of each activation.</param>
/// <param name="TotalBytes">Bytes of activation data on disk (excluding headers).</param>
public sealed record ActivationCacheOnDisk(string Directory, IReadOnlyList<string> ChunkPaths, long TotalActivations, int DIn, long TotalBytes);

/// <summary>
/// Streams activations from a <see cref="HookedTransformer"/> hook point, or from chunk files on disk, as shuffled batches
/// <c>[batch, d_in]</c> for training sparse autoencoders: SAELens' <c>ActivationsStore</c> behaviour. Activations are
/// collected into a buffer of <see cref="ActivationStoreConfig.BufferBatches"/> batches; when full it is shuffled, half
/// is served, and the other half stays to be mixed with the next refill, so consecutive batches mix many sequences.
/// Padding (attention mask 0) and excluded tokens (e.g. BOS) are skipped.
/// <para>
/// Two sources: <see cref="FromModel"/> runs the model on a token source as batches are needed (nothing is stored beyond
/// the buffer); <see cref="CacheToDisk"/> writes the activations once into safetensors chunk files, and
/// <see cref="FromDisk"/> serves them shuffled across chunks with bounded memory (the buffer plus the chunk being read),
/// for activation sets larger than memory, and for training many SAEs on the same activations without re-running the model.
/// </para>
/// <para>
/// An epoch (<see cref="Epoch"/>) serves every activation of the source exactly once. <see cref="NextBatch"/> serves
/// endlessly (epoch after epoch), for <see cref="Trainer{TBatch}.Train(Func{int, Random, TBatch})"/>. Served batches belong
/// to the caller's dispose scope (inside the trainer they are freed after each update); the buffer is the store's own and
/// freed by <see cref="Dispose"/>.
/// </para>
/// <code>
/// using var store = ActivationStore.FromModel(model, tokenBatches, new ActivationStoreConfig
///     { HookName = "blocks.1.hook_resid_post", BatchSize = 1024, ExcludeTokenIds = new long[] { bosId } });
/// trainer.Train((step, rng) =&gt; store.NextBatch());
/// </code>
/// </summary>
public sealed class ActivationStore : IDisposable
{
    /// <summary>Name of the tensor in each chunk file.</summary>
    public const string ChunkTensorName = "activations";
    const string ChunkPattern = "chunk-*.safetensors";

    readonly Func<ActivationStore, IEnumerable<Tensor>> _loader;   // yields detached [rows, d_in] tensors the store then owns
    readonly Generator _generator;
    readonly Device _device;
    IEnumerator<Tensor>? _endless;
    long _resident, _peak;
    int _liveHeld;
    bool _disposed;

    ActivationStore(ActivationStoreConfig config, int dIn, Func<ActivationStore, IEnumerable<Tensor>> loader, long? totalActivations)
    {
        Config = config;
        DIn = dIn;
        _loader = loader;
        _generator = new Generator((ulong)config.Seed);
        _device = config.Device ?? torch.CPU;
        TotalActivations = totalActivations;
    }

    /// <summary>The settings.</summary>
    public ActivationStoreConfig Config { get; }
    /// <summary>Width of each activation (d_in of an SAE trained on them).</summary>
    public int DIn { get; }
    /// <summary>Activations per epoch, when known (from disk); null for a model source until an epoch has run.</summary>
    public long? TotalActivations { get; private set; }
    /// <summary>Epochs completed by <see cref="NextBatch"/> so far.</summary>
    public int EpochsCompleted { get; private set; }

    /// <summary>Bytes of activation tensors the store holds right now (buffer, serving half, chunk being read); served
    /// batches, which belong to the caller, are not counted.</summary>
    public long ResidentBytes => _resident;
    /// <summary>The most <see cref="ResidentBytes"/> ever held: bounded by about 2 · (buffer + one chunk or token batch),
    /// whatever the size of the activation set.</summary>
    public long PeakResidentBytes => _peak;
    /// <summary>Activation tensors the store holds right now (to check that nothing accumulates).</summary>
    public int ResidentTensorCount => _liveHeld;

    /// <summary>
    /// A store running <paramref name="model"/> (in eval mode, without gradients) on <paramref name="tokenSource"/> and
    /// collecting <see cref="ActivationStoreConfig.HookName"/>. Each <see cref="TrainingBatch"/> gives tokens
    /// <c>[batch, pos]</c> and optionally an attention mask (positions with 0 are padding and skipped); its target mask is
    /// ignored. The source is enumerated once per epoch, so it must give the same batches each time (a list, or a
    /// seeded generator method) for epochs to repeat.
    /// </summary>
    public static ActivationStore FromModel(HookedTransformer model, IEnumerable<TrainingBatch> tokenSource, ActivationStoreConfig config)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenSource);
        ArgumentNullException.ThrowIfNull(config);
        TorchRuntime.EnsureLoaded();
        config.Validate();
        var hook = model.GetHookPoint(config.HookName).Name;           // throws with the closest names if unknown
        var cfg = config with { HookName = hook };
        int dIn = ProbeWidth(model, hook);
        return new ActivationStore(cfg, dIn, store => store.ModelRows(model, tokenSource), null);
    }

    /// <summary>
    /// Runs <paramref name="model"/> over <paramref name="tokenSource"/> once and writes the activations of
    /// <see cref="ActivationStoreConfig.HookName"/> (padding and excluded tokens skipped, in source order) into
    /// <paramref name="directory"/> as safetensors chunk files of <paramref name="chunkActivations"/> rows each (the last
    /// may be shorter). Only about one chunk is in memory at a time. Refuses a directory that already holds chunk files.
    /// </summary>
    public static ActivationCacheOnDisk CacheToDisk(HookedTransformer model, IEnumerable<TrainingBatch> tokenSource, ActivationStoreConfig config,
        string directory, int chunkActivations = 65_536)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenSource);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        TorchRuntime.EnsureLoaded();
        config.Validate();
        if (chunkActivations < 1) throw new ArgumentOutOfRangeException(nameof(chunkActivations), $"chunkActivations is {chunkActivations}; set it to 1 or more rows per chunk file.");
        if (Directory.Exists(directory) && Directory.EnumerateFiles(directory, ChunkPattern).Any())
            throw new IOException($"'{Path.GetFullPath(directory)}' already holds activation chunk files; delete them or choose an empty folder (nothing was overwritten).");
        Directory.CreateDirectory(directory);
        var hook = model.GetHookPoint(config.HookName).Name;
        int dIn = ProbeWidth(model, hook);
        var paths = new List<string>();
        long total = 0, bytes = 0;
        Tensor? pending = null;
        void Write(Tensor rows)
        {
            var path = Path.Combine(directory, $"chunk-{paths.Count:D5}.safetensors");
            Safetensors.Save(path, new Dictionary<string, Tensor> { [ChunkTensorName] = rows }, new Dictionary<string, string>
            {
                ["hook_name"] = hook, ["d_in"] = dIn.ToString(CultureInfo.InvariantCulture), ["rows"] = rows.shape[0].ToString(CultureInfo.InvariantCulture),
            });
            paths.Add(path);
            total += rows.shape[0];
            bytes += rows.shape[0] * rows.shape[1] * rows.element_size();
        }
        var writer = new ActivationStore(config with { HookName = hook }, dIn, _ => Array.Empty<Tensor>(), null);
        try
        {
            foreach (var fresh in writer.ModelRows(model, tokenSource))
            {
                var all = pending is null ? fresh : Concat(pending, fresh);
                pending = null;
                long offset = 0, n = all.shape[0];
                for (; n - offset >= chunkActivations; offset += chunkActivations)
                    using (var scope = torch.NewDisposeScope()) Write(all.narrow(0, offset, chunkActivations).contiguous());
                if (offset < n)
                    using (var scope = torch.NewDisposeScope()) pending = all.narrow(0, offset, n - offset).contiguous().DetachFromDisposeScope();
                all.Dispose();
            }
            if (pending is not null) Write(pending);
        }
        finally { pending?.Dispose(); writer.Dispose(); }
        if (total == 0) throw new InvalidOperationException($"The token source gave no activations at '{hook}' (empty source, or every position padding/excluded); nothing was written.");
        return new ActivationCacheOnDisk(directory, paths, total, dIn, bytes);
    }

    /// <summary>
    /// A store serving the chunk files written by <see cref="CacheToDisk"/> in <paramref name="directory"/>: each epoch
    /// reads the chunks in a fresh seeded order, one at a time, through the shuffling buffer, so batches mix rows of
    /// several chunks while only the buffer and one chunk are in memory. Make the buffer
    /// (<see cref="ActivationStoreConfig.BufferBatches"/> · <see cref="ActivationStoreConfig.BatchSize"/>) span a few chunks.
    /// <see cref="ActivationStoreConfig.HookName"/> may be left empty; if set it must match the files'.
    /// </summary>
    public static ActivationStore FromDisk(string directory, ActivationStoreConfig config)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentNullException.ThrowIfNull(config);
        TorchRuntime.EnsureLoaded();
        config.Validate(needHook: false);
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"Activation cache folder '{Path.GetFullPath(directory)}' does not exist; write it first with ActivationStore.CacheToDisk.");
        var paths = Directory.EnumerateFiles(directory, ChunkPattern).OrderBy(p => p, StringComparer.Ordinal).ToArray();
        if (paths.Length == 0)
            throw new FileNotFoundException($"No chunk-*.safetensors files in '{Path.GetFullPath(directory)}'; write them with ActivationStore.CacheToDisk.");
        int dIn = -1;
        string? hook = null;
        long total = 0;
        foreach (var p in paths)
        {
            using var f = Safetensors.Open(p);
            var info = f.Info(ChunkTensorName);
            if (info.Shape.Length != 2)
                throw new InvalidDataException($"'{p}': tensor '{ChunkTensorName}' has shape [{string.Join(", ", info.Shape)}], expected [rows, d_in]; re-create the cache with ActivationStore.CacheToDisk.");
            if (dIn >= 0 && info.Shape[1] != dIn)
                throw new InvalidDataException($"'{p}' has d_in {info.Shape[1]} but earlier chunks have {dIn}; the folder mixes two caches: keep one cache per folder.");
            dIn = (int)info.Shape[1];
            f.Metadata.TryGetValue("hook_name", out var h);
            if (hook is not null && h != hook)
                throw new InvalidDataException($"'{p}' holds '{h}' activations but earlier chunks hold '{hook}'; the folder mixes two caches: keep one cache per folder.");
            hook = h;
            total += info.Shape[0];
        }
        if (!string.IsNullOrWhiteSpace(config.HookName) && hook is not null && config.HookName != hook)
            throw new ArgumentException($"ActivationStoreConfig.HookName is '{config.HookName}' but the cache in '{directory}' holds '{hook}'; set HookName to '{hook}' (or leave it empty), or point at the right cache.");
        return new ActivationStore(config with { HookName = hook ?? config.HookName }, dIn, store => store.DiskRows(paths), total);
    }

    /// <summary>
    /// One pass over the source: shuffled batches <c>[BatchSize, d_in]</c> (the last may be smaller unless
    /// <see cref="ActivationStoreConfig.DropLast"/>), serving every activation exactly once. Batches are created in the
    /// caller's dispose scope. Consecutive epochs shuffle differently; the sequence is fixed by the seed.
    /// </summary>
    public IEnumerable<Tensor> Epoch()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long served = 0;
        var mixer = new Mixer(this);
        try
        {
            foreach (var fresh in _loader(this))
            {
                mixer.Add(fresh);
                while (mixer.TryServe(out var batch)) { served += batch.shape[0]; yield return batch; }
            }
            mixer.Finish();
            while (mixer.TryServe(out var batch)) { served += batch.shape[0]; yield return batch; }
            if (!Config.DropLast) TotalActivations = served;
        }
        finally { mixer.Dispose(); }
    }

    /// <summary>
    /// The next batch <c>[BatchSize, d_in]</c>, starting a new epoch when one ends (so every batch but an epoch's last is
    /// full); for <c>trainer.Train((step, rng) =&gt; store.NextBatch())</c>.
    /// </summary>
    public Tensor NextBatch()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _endless ??= Endless().GetEnumerator();
        _endless.MoveNext();
        return _endless.Current;
    }

    IEnumerable<Tensor> Endless()
    {
        while (true)
        {
            bool any = false;
            foreach (var b in Epoch()) { any = true; yield return b; }
            if (!any) throw new InvalidOperationException($"The activation source gave no activations at '{Config.HookName}' in a whole epoch (empty token source, or every position padding/excluded); give it tokens.");
            EpochsCompleted++;
        }
    }

    /// <summary>Frees the buffer.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _endless?.Dispose();
        _generator.Dispose();
    }

    // ---- sources ---------------------------------------------------------------------------------------------

    IEnumerable<Tensor> ModelRows(HookedTransformer model, IEnumerable<TrainingBatch> source)
    {
        int index = 0;
        foreach (var b in source)
        {
            var rows = Extract(model, b, index++);
            if (rows.shape[0] == 0) { rows.Dispose(); continue; }
            Hold(rows);
            yield return rows;
        }
    }

    // Runs the model on one token batch and returns the kept positions' activations [rows, d_in], detached from every dispose scope.
    Tensor Extract(HookedTransformer model, TrainingBatch b, int index)
    {
        ArgumentNullException.ThrowIfNull(b, $"token source item {index}");
        var tokens = b.Tokens;
        if (tokens.dim() != 2)
            throw new ArgumentException($"Token source item {index} has tokens of shape [{string.Join(", ", tokens.shape)}]; pass int64 [batch, pos] (unsqueeze(0) a single sequence).");
        if (b.AttentionMask is { } am && !am.shape.SequenceEqual(tokens.shape))
            throw new ArgumentException($"Token source item {index}: attention mask [{string.Join(", ", am.shape)}] does not match tokens [{string.Join(", ", tokens.shape)}]; pass one 1/0 per token.");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            var dev = model.parameters().First().device;
            var t = tokens.to(dev);
            var mask = b.AttentionMask?.to(dev);
            var (logits, cache) = model.RunWithCache(t, n => n == Config.HookName, attentionMask: mask, stopAtLayer: StopLayer(Config.HookName, model.Cfg.NLayers));
            using (cache)
            {
                var acts = cache[Config.HookName];
                if (acts.dim() < 3 || acts.shape[0] != tokens.shape[0] || acts.shape[1] != tokens.shape[1])
                    throw new ArgumentException($"Hook '{Config.HookName}' gives activations of shape [{string.Join(", ", acts.shape)}], not one per token position [batch, pos, …]; pick a per-position hook such as hook_resid_post, hook_mlp_out or hook_z.");
                var flat = acts.reshape(tokens.shape[0] * tokens.shape[1], -1);
                var keep = torch.ones(tokens.shape, dtype: ScalarType.Bool, device: dev);
                if (mask is not null) keep = keep.logical_and(mask.ne(0));
                foreach (var id in Config.ExcludeTokenIds) keep = keep.logical_and(t.ne(id));
                var rows = flat.index_select(0, keep.flatten().nonzero().squeeze(1)).to(_device).to_type(ScalarType.Float32).contiguous();
                return rows.DetachFromDisposeScope();
            }
        }
        finally { model.train(wasTraining); }
    }

    IEnumerable<Tensor> DiskRows(string[] paths)
    {
        var order = Enumerable.Range(0, paths.Length).ToArray();
        using (var perm = torch.randperm(paths.Length, generator: _generator))
            order = perm.data<long>().Select(i => (int)i).ToArray();
        foreach (var i in order)
        {
            Tensor rows;
            using (var scope = torch.NewDisposeScope())
            using (var f = Safetensors.Open(paths[i]))
                rows = f.Read(ChunkTensorName).to(_device).to_type(ScalarType.Float32).contiguous().DetachFromDisposeScope();
            Hold(rows);
            yield return rows;
        }
    }

    static int ProbeWidth(HookedTransformer model, string hook)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            var dev = model.parameters().First().device;
            var t = torch.zeros(new long[] { 1, 1 }, dtype: ScalarType.Int64, device: dev);
            var (_, cache) = model.RunWithCache(t, n => n == hook, stopAtLayer: StopLayer(hook, model.Cfg.NLayers));
            using (cache)
            {
                var a = cache[hook];
                if (a.dim() < 3 || a.shape[0] != 1 || a.shape[1] != 1)
                    throw new ArgumentException($"Hook '{hook}' gives activations of shape [{string.Join(", ", a.shape)}] for one token, not one per position [batch, pos, …]; pick a per-position hook such as hook_resid_post, hook_mlp_out or hook_z.");
                return (int)(a.numel() / (a.shape[0] * a.shape[1]));
            }
        }
        finally { model.train(wasTraining); }
    }

    // blocks.{L}.… needs only blocks 0..L; other hooks (embeddings, ln_final) need the whole model or none of it.
    static int? StopLayer(string hook, int nLayers)
    {
        var m = Regex.Match(hook, @"^blocks\.(\d+)\.");
        if (m.Success && int.TryParse(m.Groups[1].Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var layer) && layer + 1 < nLayers) return layer + 1;
        return null;
    }

    static Tensor Concat(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        var c = torch.cat(new[] { a, b }, 0).DetachFromDisposeScope();
        a.Dispose(); b.Dispose();
        return c;
    }

    // ---- resident accounting ---------------------------------------------------------------------------------

    void Hold(Tensor t)
    {
        _resident += t.numel() * t.element_size();
        _liveHeld++;
        if (_resident > _peak) _peak = _resident;
    }

    void Release(Tensor t)
    {
        _resident -= t.numel() * t.element_size();
        _liveHeld--;
        t.Dispose();
    }

    /// <summary>
    /// The shuffling buffer (SAELens' <c>mixing_buffer</c>): fresh rows are appended; once it holds BufferBatches · BatchSize
    /// rows it is shuffled and its first half (whole batches) becomes the serving part, the rest stays to mix with the next
    /// rows. At the end of the source the remainder is shuffled and served too.
    /// </summary>
    sealed class Mixer(ActivationStore store) : IDisposable
    {
        Tensor? _storage, _serving;
        long _servingOffset;
        bool _finished;
        long BufferRows => (long)store.Config.BufferBatches * store.Config.BatchSize;
        int Batch => store.Config.BatchSize;

        public void Add(Tensor fresh)
        {
            if (_storage is null) _storage = fresh;
            else
            {
                var joined = Concat2(_storage, fresh);
                _storage = joined;
            }
            if (_storage.shape[0] >= BufferRows && _serving is null) Refill();
        }

        Tensor Concat2(Tensor a, Tensor b)
        {
            Tensor c;
            using (var scope = torch.NewDisposeScope()) c = torch.cat(new[] { a, b }, 0).DetachFromDisposeScope();
            store.Hold(c);
            store.Release(a); store.Release(b);
            return c;
        }

        // Shuffle the storage; move ⌊n / 2B⌋ (at least 1) batches to the serving part; keep the rest.
        void Refill()
        {
            var s = _storage!;
            long n = s.shape[0];
            long serve = _finished ? n : Math.Max(1, n / (2L * Batch)) * Batch;
            Tensor shuffled, rest = null!;
            using (var scope = torch.NewDisposeScope())
            {
                var perm = torch.randperm(n, generator: store._generator).to(s.device);
                var all = s.index_select(0, perm);
                shuffled = all.narrow(0, 0, serve).contiguous().DetachFromDisposeScope();
                if (serve < n) rest = all.narrow(0, serve, n - serve).contiguous().DetachFromDisposeScope();
            }
            store.Hold(shuffled);
            store.Release(s);
            _storage = null;
            if (serve < n) { store.Hold(rest); _storage = rest; }
            _serving = shuffled;
            _servingOffset = 0;
        }

        public void Finish()
        {
            _finished = true;
            if (_serving is null && _storage is not null) Refill();
        }

        public bool TryServe(out Tensor batch)
        {
            batch = null!;
            while (true)
            {
                if (_serving is null) return false;
                long left = _serving.shape[0] - _servingOffset;
                if (left >= Batch || (left > 0 && _finished && !store.Config.DropLast))
                {
                    long take = Math.Min(Batch, left);
                    using (var view = _serving.narrow(0, _servingOffset, take)) batch = view.clone();   // in the caller's dispose scope
                    _servingOffset += take;
                    return true;
                }
                // Serving part used up (or only a short tail is left at the end with DropLast): free it and refill if possible.
                store.Release(_serving);
                _serving = null;
                if (_storage is not null && (_finished || _storage.shape[0] >= BufferRows)) Refill();
                else return false;
            }
        }

        public void Dispose()
        {
            if (_storage is not null) { store.Release(_storage); _storage = null; }
            if (_serving is not null) { store.Release(_serving); _serving = null; }
        }
    }
}
