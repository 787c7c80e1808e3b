using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training.Checkpoints;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Training;

sealed class TwoTensors : nn.Module<Tensor, Tensor>
{
    public readonly Parameter W;
    public readonly Tensor Counts;
    public TwoTensors() : base(nameof(TwoTensors))
    {
        W = nn.Parameter(torch.zeros(2, 3));
        Counts = torch.zeros(new long[] { 2 }, dtype: ScalarType.Int64);
        register_parameter("w", W);
        register_buffer("counts", Counts);
    }
    public override Tensor forward(Tensor x) => x;
}

public class CheckpointTests
{
    public CheckpointTests() => TorchRuntime.EnsureLoaded();

    static string Temp() => Path.Combine(Path.GetTempPath(), "sn-" + Guid.NewGuid().ToString("N") + ".safetensors");

    [Fact]
    public void Save_writes_safetensors_layout_per_spec()
    {
        var m = new TwoTensors();
        using (no_grad()) { m.W.copy_(tensor(new[] { 1f, 2f, 3f, 4f, 5f, 6f }).reshape(2, 3)); m.Counts.copy_(tensor(new long[] { 7, -1 })); }
        var path = Temp();
        try
        {
            ModuleCheckpoint.Save(m, path, new Dictionary<string, string> { ["step"] = "12" });
            var bytes = File.ReadAllBytes(path);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            Assert.Equal(0UL, (8 + n) % 8);
            using var doc = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n).TrimEnd(' '));
            var root = doc.RootElement;
            Assert.Equal("12", root.GetProperty("__metadata__").GetProperty("step").GetString());
            // names are written in ordinal order: "counts" (I64, 16 bytes) then "w" (F32, 24 bytes)
            var c = root.GetProperty("counts");
            Assert.Equal("I64", c.GetProperty("dtype").GetString());
            Assert.Equal(new long[] { 2 }, c.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
            Assert.Equal(new long[] { 0, 16 }, c.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()));
            var w = root.GetProperty("w");
            Assert.Equal("F32", w.GetProperty("dtype").GetString());
            Assert.Equal(new long[] { 2, 3 }, w.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
            Assert.Equal(new long[] { 16, 40 }, w.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()));
            int d = 8 + (int)n;
            Assert.Equal(bytes.Length, d + 40);
            Assert.Equal(7L, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(d)));
            Assert.Equal(-1L, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(d + 8)));
            for (int i = 0; i < 6; i++) Assert.Equal(i + 1f, BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(d + 16 + 4 * i)));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Load_reads_hand_built_file()
    {
        // Build a file by hand per the spec: header JSON, then bytes.
        var header = """{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"counts":{"dtype":"I64","shape":[2],"data_offsets":[24,40]}}""";
        var h = Encoding.UTF8.GetBytes(header);
        var data = new byte[40];
        for (int i = 0; i < 6; i++) BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(4 * i), 0.5f * i);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(24), 3);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(32), 9);
        var len = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)h.Length);
        var path = Temp();
        try
        {
            File.WriteAllBytes(path, len.Concat(h).Concat(data).ToArray());
            var m = new TwoTensors();
            ModuleCheckpoint.Load(m, path);
            Assert.Equal(new[] { 0f, 0.5f, 1f, 1.5f, 2f, 2.5f }, m.W.data<float>().ToArray());
            Assert.Equal(new long[] { 3, 9 }, m.Counts.data<long>().ToArray());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Load_strict_rejects_mismatch()
    {
        var path = Temp();
        try
        {
            var lin = nn.Linear(3, 2);
            ModuleCheckpoint.Save(lin, path);
            var e = Assert.Throws<InvalidDataException>(() => ModuleCheckpoint.Load(new TwoTensors(), path));
            Assert.Contains("missing", e.Message);
            Assert.Throws<InvalidDataException>(() => ModuleCheckpoint.Load(nn.Linear(4, 2), path)); // shape
            var other = nn.Linear(3, 2);
            ModuleCheckpoint.Load(other, path);
            Assert.Equal(lin.weight!.data<float>().ToArray(), other.weight!.data<float>().ToArray());
        }
        finally { File.Delete(path); }
    }
}
