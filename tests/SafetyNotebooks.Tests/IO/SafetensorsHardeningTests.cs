using System.Text;
using SafetyNotebooks.IO;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.IO;

/// <summary>Hostile or mismatched safetensors files (issue 14): clear errors, nothing half-loaded, atomic writes.</summary>
public class SafetensorsHardeningTests : IDisposable
{
    static SafetensorsHardeningTests() => TorchRuntime.EnsureLoaded();

    readonly string _dir = Directory.CreateTempSubdirectory("safetensors-hardening").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string PathOf(string name) => Path.Combine(_dir, name);

    string WriteRaw(string name, byte[] header, byte[] data)
    {
        var path = PathOf(name);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)header.Length));
        fs.Write(header);
        fs.Write(data);
        return path;
    }

    static HookedTransformerConfig SmallConfig(int nCtx) => new()
    {
        NLayers = 1, DModel = 8, NHeads = 2, DHead = 4, DMlp = 16, NCtx = nCtx, DVocab = 10, Seed = 1,
    };

    static Dictionary<string, Tensor> Snapshot(nn.Module m) =>
        m.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    [Fact]
    public void Failed_state_dict_load_leaves_every_parameter_unchanged()
    {
        // Issue 14: an n_ctx 48 checkpoint into an n_ctx 32 model threw on W_pos after W_E was already replaced.
        using var source = new HookedTransformer(SmallConfig(48) with { Seed = 2 });
        var path = PathOf("ctx48.safetensors");
        Safetensors.SaveStateDict(source, path);
        using var target = new HookedTransformer(SmallConfig(32));
        var before = Snapshot(target);
        Assert.False(Same(before["embed.W_E"], source.W_E.detach()), "the two models must differ for the test to mean anything");

        var e = Assert.Throws<InvalidDataException>(() => Safetensors.LoadStateDict(target, path));
        Assert.Contains("pos_embed.W_pos", e.Message);
        Assert.Contains("[48, 8]", e.Message);
        Assert.Contains("[32, 8]", e.Message);
        Assert.Contains(path, e.Message);
        foreach (var (name, p) in target.named_parameters())
            Assert.True(Same(p.detach(), before[name]), $"{name} changed by a failed load");
    }

    [Fact]
    public void State_dict_round_trip_and_non_strict_load_reports_unused_tensors()
    {
        using var source = new HookedTransformer(SmallConfig(16) with { Seed = 3 });
        var path = PathOf("sd.safetensors");
        var sd = source.state_dict();
        var withExtra = new Dictionary<string, Tensor>(sd) { ["blocks.7.extra"] = ones(3) };
        Safetensors.Save(path, withExtra, new Dictionary<string, string> { ["step"] = "5" });

        using var target = new HookedTransformer(SmallConfig(16));
        Assert.Throws<InvalidDataException>(() => Safetensors.LoadStateDict(target, path)); // strict: the extra tensor is an error
        var warnings = new StringWriter();
        var report = Safetensors.LoadStateDict(target, path, strict: false, warnings: warnings);
        Assert.Equal(new[] { "blocks.7.extra" }, report.Unexpected);
        Assert.Empty(report.Missing);
        Assert.Equal("5", report.Metadata["step"]);
        Assert.Contains("blocks.7.extra", warnings.ToString());
        foreach (var (name, p) in source.named_parameters())
            Assert.True(Same(target.named_parameters().Single(q => q.name == name).parameter.detach(), p.detach()), name);
    }

    [Fact]
    public void Duplicate_tensor_names_are_an_error_naming_the_key_and_file()
    {
        var header = Encoding.UTF8.GetBytes(
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}");
        var path = WriteRaw("dup.safetensors", header, new byte[8]);
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(path));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("twice", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Invalid_utf8_header_is_an_error_naming_the_file()
    {
        var header = new List<byte>(Encoding.UTF8.GetBytes("{\"a"));
        header.Add(0xFF); // never valid in UTF-8
        header.AddRange(Encoding.UTF8.GetBytes("\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"));
        var path = WriteRaw("utf8.safetensors", header.ToArray(), new byte[4]);
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("UTF-8", e.Message);
    }

    [Fact]
    public void A_header_claiming_a_3_GB_tensor_in_a_short_file_names_the_tensor()
    {
        const long bytes = 3L << 30;
        var header = Encoding.UTF8.GetBytes($"{{\"huge\":{{\"dtype\":\"F32\",\"shape\":[{bytes / 4}],\"data_offsets\":[0,{bytes}]}}}}");
        var path = WriteRaw("huge.safetensors", header, new byte[16]);
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(path));
        Assert.Contains("'huge'", e.Message);
        Assert.Contains(bytes.ToString(), e.Message);
    }

    [Fact]
    public void Tensors_are_streamed_in_chunks_so_sizes_beyond_a_span_work()
    {
        // A >2 GB tensor cannot go through one Span<byte>; reads and writes go in chunks. Shrinking the chunk to 12 bytes
        // (3 floats, so 1000 floats take 334 chunks, the last one partial) exercises that path without allocating 2 GB.
        var saved = Safetensors.ChunkBytes;
        try
        {
            Safetensors.ChunkBytes = 12;
            var path = PathOf("chunked.safetensors");
            Safetensors.Save(path, new Dictionary<string, Tensor> { ["x"] = arange(1000, dtype: ScalarType.Float32).view(10, 100) });
            // Check the bytes on disk independently of the reader: value i at data offset 4 i.
            var raw = File.ReadAllBytes(path);
            int dataStart = 8 + (int)BitConverter.ToUInt64(raw, 0);
            for (int i = 0; i < 1000; i += 37) Assert.Equal((float)i, BitConverter.ToSingle(raw, dataStart + 4 * i));
            using var f = Safetensors.Open(path);
            var x = f.Read("x");
            Assert.Equal(new long[] { 10, 100 }, x.shape);
            var expected = Enumerable.Range(0, 1000).Select(i => (float)i).ToArray();
            Assert.Equal(expected, x.data<float>().ToArray());
        }
        finally { Safetensors.ChunkBytes = saved; }
    }

    [Fact]
    public void Save_is_atomic_an_open_reader_keeps_the_old_contents_and_no_temp_file_remains()
    {
        var path = PathOf("atomic.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["x"] = full(4, 1f) });
        using (var reader = Safetensors.Open(path))
        {
            Safetensors.Save(path, new Dictionary<string, Tensor> { ["x"] = full(4, 2f) });
            Assert.Equal(new[] { 1f, 1f, 1f, 1f }, reader.Read("x").data<float>().ToArray()); // the old file, not a torn one
        }
        using (var reader = Safetensors.Open(path))
            Assert.Equal(new[] { 2f, 2f, 2f, 2f }, reader.Read("x").data<float>().ToArray());

        // A save that fails (unsupported dtype) leaves the previous file as it was.
        var before = File.ReadAllBytes(path);
        Assert.ThrowsAny<Exception>(() => Safetensors.Save(path, new Dictionary<string, Tensor>
            { ["x"] = full(4, 3f), ["z"] = zeros(2, dtype: ScalarType.ComplexFloat32) }));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(new[] { "atomic.safetensors" }, Directory.GetFiles(_dir).Select(Path.GetFileName).ToArray());
    }

    [Fact]
    public void Atomic_file_leaves_the_old_file_when_the_writer_fails_midway()
    {
        var path = PathOf("notes.txt");
        AtomicFile.WriteAllText(path, "first");
        var e = Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write("second, half written"u8);
            throw new InvalidOperationException("disk full");
        }));
        Assert.Equal("disk full", e.Message);
        Assert.Equal("first", File.ReadAllText(path));
        Assert.Equal(new[] { "notes.txt" }, Directory.GetFiles(_dir).Select(Path.GetFileName).ToArray());
        AtomicFile.WriteAllText(path, "third");
        Assert.Equal("third", File.ReadAllText(path));
        var folder = Assert.Throws<IOException>(() => AtomicFile.WriteAllText(_dir, "x"));
        Assert.Contains("is a folder", folder.Message);
    }

    [Fact]
    public void IO_does_not_reference_Models()
    {
        // Issue 6: IO ↔ Models was a namespace cycle (IO called Models.Utils.ClosestNames).
        var ioFolder = Path.Combine(TestPaths.RepoRoot, "src", "SafetyNotebooks", "IO");
        foreach (var file in Directory.GetFiles(ioFolder, "*.cs", SearchOption.AllDirectories))
            Assert.DoesNotContain("SafetyNotebooks.Models", File.ReadAllText(file));
        Assert.Equal(3, NameSuggestions.EditDistance("kitten", "sitting"));
        Assert.Equal(new[] { "blocks.0.ln1.w", "blocks.0.ln2.w" },
            NameSuggestions.Closest("blocks.0.ln1.W", new[] { "embed.W_E", "blocks.0.ln2.w", "blocks.0.ln1.w" }, 2));
        using var f = OpenOne();
        var e = Assert.Throws<KeyNotFoundException>(() => f.Read("wieght"));
        Assert.Contains("weight", e.Message);
    }

    Safetensors OpenOne()
    {
        var path = PathOf("one.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["weight"] = ones(1), ["bias"] = ones(1) });
        return Safetensors.Open(path);
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
