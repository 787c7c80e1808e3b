using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using SafetyNotebooks.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

public sealed class ActivationStoreTests : IDisposable
{
    const long Bos = 9;
    const string Hook = "blocks.0.hook_resid_post";
    readonly string _dir = Path.Combine(Path.GetTempPath(), "sn-actstore-" + Guid.NewGuid().ToString("N"));

    public ActivationStoreTests() => TorchRuntime.EnsureLoaded();
    public void Dispose() { if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true); }

    static HookedTransformer Model() =>
        new(new HookedTransformerConfig { NLayers = 2, DModel = 8, NHeads = 2, DHead = 4, DMlp = 16, NCtx = 8, DVocab = 10, Seed = 3 });

    // `count` batches of [3, 8]: BOS at position 0, random tokens 0..8 after it; every other batch right-padded
    // (row r keeps 8 − 2r positions: 8, 6, 4 → 6 padded positions), with a pad token 0 in the padding.
    static List<TrainingBatch> Source(int count, int seed = 1)
    {
        var rng = new Random(seed);
        var list = new List<TrainingBatch>();
        for (int b = 0; b < count; b++)
        {
            var tok = new long[24];
            var mask = new long[24];
            for (int r = 0; r < 3; r++)
                for (int p = 0; p < 8; p++)
                {
                    bool real = b % 2 == 0 || p < 8 - 2 * r;
                    tok[r * 8 + p] = p == 0 ? Bos : real ? rng.Next(9) : 0;
                    mask[r * 8 + p] = real ? 1 : 0;
                }
            list.Add(new TrainingBatch(torch.tensor(tok, new long[] { 3, 8 }), AttentionMask: b % 2 == 0 ? null : torch.tensor(mask, new long[] { 3, 8 })));
        }
        return list;
    }

    // Independent reference: the hook's activations at every real, non-BOS position, read with a plain RunWithCache and loops.
    static List<float[]> Reference(HookedTransformer model, List<TrainingBatch> source)
    {
        var rows = new List<float[]>();
        using var noGrad = torch.no_grad();
        model.eval();
        foreach (var b in source)
        {
            var (logits, cache) = model.RunWithCache(b.Tokens, n => n == Hook, attentionMask: b.AttentionMask);
            using (cache)
            {
                var acts = cache[Hook];
                for (int r = 0; r < 3; r++)
                    for (int p = 0; p < 8; p++)
                    {
                        bool real = b.AttentionMask is null || b.AttentionMask[r, p].item<long>() == 1;
                        if (real && b.Tokens[r, p].item<long>() != Bos) rows.Add(acts[r, p].data<float>().ToArray());
                    }
            }
            logits.Dispose();
        }
        return rows;
    }

    static List<string> Multiset(IEnumerable<float[]> rows) =>
        rows.Select(r => string.Join(",", r.Select(v => v.ToString("R")))).OrderBy(s => s, StringComparer.Ordinal).ToList();

    static List<float[]> Rows(IEnumerable<Tensor> batches)
    {
        var rows = new List<float[]>();
        foreach (var b in batches)
            using (b)
                for (int i = 0; i < b.shape[0]; i++) rows.Add(b[i].data<float>().ToArray());
        return rows;
    }

    static ActivationStoreConfig Cfg(int seed = 42) => new() { HookName = Hook, BatchSize = 16, BufferBatches = 4, ExcludeTokenIds = new[] { Bos }, Seed = seed };

    [Fact]
    public void Each_epoch_serves_every_activation_exactly_once_without_padding_or_BOS()
    {
        using var model = Model();
        var source = Source(10);
        var expected = Reference(model, source);
        // 10 batches × 3 rows × 7 non-BOS positions = 210, minus 5 padded batches × 6 padded positions = 180.
        Assert.Equal(180, expected.Count);
        using var store = ActivationStore.FromModel(model, source, Cfg());
        Assert.Equal(8, store.DIn);
        for (int epoch = 0; epoch < 2; epoch++)
        {
            var batches = store.Epoch().ToList();
            Assert.All(batches.Take(batches.Count - 1), b => Assert.Equal(16, b.shape[0]));   // 180 = 11 × 16 + 4
            Assert.Equal(4, batches[^1].shape[0]);
            Assert.Equal(Multiset(expected), Multiset(Rows(batches)));
        }
        Assert.Equal(180, store.TotalActivations);
        Assert.Equal(0, store.ResidentTensorCount);
    }

    [Fact]
    public void Batches_are_shuffled_and_fixed_by_the_seed()
    {
        using var model = Model();
        var source = Source(10);
        var inOrder = Reference(model, source);
        float[][] First(int seed, int n)
        {
            using var store = ActivationStore.FromModel(model, source, Cfg(seed));
            return Enumerable.Range(0, n).SelectMany(_ => Rows(new[] { store.NextBatch() })).ToArray();
        }
        var a = First(5, 14);     // 14 batches: crosses into the second epoch (11.25 batches per epoch)
        var b = First(5, 14);
        var c = First(6, 14);
        Assert.Equal(Multiset(a), Multiset(b));
        Assert.True(a.Zip(b).All(p => p.First.SequenceEqual(p.Second)), "same seed → the same rows in the same order");
        Assert.False(a.Zip(c).All(p => p.First.SequenceEqual(p.Second)), "another seed → another order");
        Assert.False(a.Take(16).Zip(inOrder.Take(16)).All(p => p.First.SequenceEqual(p.Second)), "the first batch is not the source order");
    }

    [Fact]
    public void The_disk_cache_serves_the_same_activations_as_the_model()
    {
        using var model = Model();
        var source = Source(10);
        var expected = Reference(model, source);
        var written = ActivationStore.CacheToDisk(model, source, Cfg(), _dir, chunkActivations: 50);
        Assert.Equal(180, written.TotalActivations);
        Assert.Equal(4, written.ChunkPaths.Count);                     // 50 + 50 + 50 + 30
        Assert.Equal(180L * 8 * 4, written.TotalBytes);
        using var store = ActivationStore.FromDisk(_dir, new ActivationStoreConfig { BatchSize = 16, BufferBatches = 4, Seed = 1 });
        Assert.Equal(Hook, store.Config.HookName);
        Assert.Equal(180, store.TotalActivations);
        Assert.Equal(Multiset(expected), Multiset(Rows(store.Epoch())));
        Assert.Equal(Multiset(expected), Multiset(Rows(store.Epoch())));
    }

    [Fact]
    public void Disk_mode_memory_stays_flat_while_the_activation_set_is_many_times_the_buffer()
    {
        using var model = Model();
        var source = Source(120, seed: 2);                               // 120 × ~18 = 2,160 activations
        var written = ActivationStore.CacheToDisk(model, source, Cfg(), _dir, chunkActivations: 32);
        using var store = ActivationStore.FromDisk(_dir, new ActivationStoreConfig { BatchSize = 16, BufferBatches = 4, Seed = 3 });
        long bufferBytes = 4 * 16 * 8 * 4, chunkBytes = 32 * 8 * 4;
        Assert.True(written.TotalBytes > 20 * bufferBytes, $"the set on disk ({written.TotalBytes} B) must dwarf the buffer ({bufferBytes} B)");
        long liveAfterFirst = 0;
        long served = 0;
        for (int epoch = 0; epoch < 4; epoch++)
        {
            foreach (var b in store.Epoch()) using (b) served += b.shape[0];
            if (epoch == 0) liveAfterFirst = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        }
        Assert.Equal(4 * written.TotalActivations, served);
        // Bound: buffer + one chunk, held twice while the concatenation/shuffle hands over. Loading all chunks would hold TotalBytes.
        Assert.InRange(store.PeakResidentBytes, chunkBytes, 2 * (bufferBytes + chunkBytes));
        Assert.Equal(0, store.ResidentBytes);
        Assert.Equal(0, store.ResidentTensorCount);
        Assert.True(DisposeScopeManager.Statistics.ThreadTotalLiveCount <= liveAfterFirst + 2,
            $"live tensors grew from {liveAfterFirst} to {DisposeScopeManager.Statistics.ThreadTotalLiveCount} over three more epochs");
    }

    [Fact]
    public void Trainer_batches_from_the_store_are_freed_after_each_update()
    {
        using var model = Model();
        using var store = ActivationStore.FromModel(model, Source(10), Cfg());
        var probe = new TinyObjective(8);
        var trainer = new Trainer<Tensor>(probe, new TrainerConfig { MaxSteps = 30, BatchSize = 16, ConsoleProgress = false });
        trainer.Train((_, _) => store.NextBatch());
        long after30 = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var more = new Trainer<Tensor>(probe, new TrainerConfig { MaxSteps = 60, BatchSize = 16, ConsoleProgress = false });
        more.Train((_, _) => store.NextBatch());
        Assert.True(store.EpochsCompleted >= 7);
        Assert.True(DisposeScopeManager.Statistics.ThreadTotalLiveCount <= after30 + 40, "served batches must not accumulate");
    }

    sealed class TinyObjective(int d) : ITrainingObjective<Tensor>
    {
        readonly TorchSharp.Modules.Linear _lin = nn.Linear(d, 1);
        public nn.Module Model => _lin;
        public ObjectiveOutput Compute(Tensor batch) => new(_lin.call(batch).pow(2).mean());
    }

    [Fact]
    public void Bad_settings_give_one_line_errors_naming_the_fix()
    {
        using var model = Model();
        var e1 = Assert.Throws<ArgumentException>(() => ActivationStore.FromModel(model, Source(1), Cfg() with { HookName = "blocks.0.hook_resid_pots" }));
        Assert.Contains("blocks.0.hook_resid_post", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => ActivationStore.FromModel(model, Source(1), Cfg() with { BufferBatches = 1 }));
        Assert.Contains("BufferBatches", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => ActivationStore.FromModel(model, Source(1), Cfg() with { HookName = "blocks.0.attn.hook_pattern" }));
        Assert.Contains("per-position", e3.Message);
        ActivationStore.CacheToDisk(model, Source(2), Cfg(), _dir, chunkActivations: 10);
        var e4 = Assert.Throws<IOException>(() => ActivationStore.CacheToDisk(model, Source(2), Cfg(), _dir, chunkActivations: 10));
        Assert.Contains("already holds", e4.Message);
        var e5 = Assert.Throws<ArgumentException>(() => ActivationStore.FromDisk(_dir, Cfg() with { HookName = "blocks.1.hook_resid_post" }));
        Assert.Contains($"set HookName to '{Hook}'", e5.Message);
        Assert.Throws<DirectoryNotFoundException>(() => ActivationStore.FromDisk(_dir + "-missing", Cfg()));
    }
}
