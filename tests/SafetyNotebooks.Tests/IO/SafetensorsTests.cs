using System.Text;
using SafetyNotebooks.IO;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.IO;

public class SafetensorsTests : IDisposable
{
    static SafetensorsTests() => TorchRuntime.EnsureLoaded();

    readonly string _dir = Directory.CreateTempSubdirectory("safetensors-tests").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>Writes a file byte by byte from a header string and a data blob, independent of the writer under test.</summary>
    string WriteRaw(string name, string headerJson, byte[] data, long? claimedHeaderLength = null)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        var path = PathOf(name);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)(claimedHeaderLength ?? header.Length)));
        fs.Write(header);
        fs.Write(data);
        return path;
    }

    [Fact]
    public void Round_trip_preserves_names_dtypes_shapes_values_and_metadata()
    {
        var tensors = new Dictionary<string, Tensor>
        {
            ["a.f32"] = randn(3, 4),
            ["b.f16"] = randn(5).to_type(ScalarType.Float16),
            ["c.bf16"] = randn(2, 2).to_type(ScalarType.BFloat16),
            ["d.i64"] = arange(10, dtype: ScalarType.Int64).view(2, 5),
            ["e.i32"] = tensor(new[] { -1, 0, 7 }),
            ["f.empty"] = zeros(0, 3),
            ["g.scalar"] = tensor(3.5f),
        };
        var path = PathOf("rt.safetensors");
        Safetensors.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        using var f = Safetensors.Open(path);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal(tensors.Keys.OrderBy(k => k), f.Names.OrderBy(k => k));
        foreach (var (name, t) in tensors)
        {
            var r = f.Read(name);
            Assert.Equal(t.dtype, r.dtype);
            Assert.Equal(t.shape, r.shape);
            Assert.True(t.eq(r).all().item<bool>(), name);
        }
        // Header is padded to a multiple of 8 bytes, as the format recommends.
        Assert.Equal(0L, BitConverter.ToInt64(File.ReadAllBytes(path), 0) % 8);
    }

    [Fact]
    public void Reads_a_hand_written_file()
    {
        var data = new byte[12];
        Buffer.BlockCopy(new[] { 1f, 2f, 3f }, 0, data, 0, 12);
        var path = WriteRaw("hand.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", data);
        using var f = Safetensors.Open(path);
        Assert.Equal(new[] { 1f, 2f, 3f }, f.Read("x").data<float>().ToArray());
    }

    [Fact]
    public void Truncated_file_is_a_clear_error()
    {
        var path = PathOf("full.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["w"] = randn(16, 16) });
        var bytes = File.ReadAllBytes(path);
        var cut = PathOf("cut.safetensors");
        File.WriteAllBytes(cut, bytes[..(bytes.Length - 100)]);
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(cut));
        Assert.Contains(cut, e.Message);
        Assert.Contains("'w'", e.Message);
        Assert.Contains("truncated", e.Message);

        File.WriteAllBytes(cut, bytes[..5]);
        e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(cut));
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Header_length_beyond_the_file_is_rejected_without_allocating_it()
    {
        var path = WriteRaw("huge.safetensors", "{}", Array.Empty<byte>(), claimedHeaderLength: long.MaxValue / 2);
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(path));
        Assert.Contains("header claims", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Header_lying_about_offsets_is_a_clear_error()
    {
        var data = new byte[16];
        var beyond = WriteRaw("beyond.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", data);
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(beyond));
        Assert.Contains("'x'", e.Message);
        Assert.Contains("data section is only 16 bytes", e.Message);

        var inconsistent = WriteRaw("inconsistent.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", data);
        e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(inconsistent));
        Assert.Contains("24 bytes but its data_offsets span 16", e.Message);

        var overlap = WriteRaw("overlap.safetensors",
            "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", data);
        e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(overlap));
        Assert.Contains("overlap", e.Message);

        var notJson = WriteRaw("notjson.safetensors", "{\"x\": [1, 2", data);
        e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(notJson));
        Assert.Contains("not valid JSON", e.Message);

        var hugeShape = WriteRaw("hugeshape.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[4000000000,4000000000,4000000000],\"data_offsets\":[0,16]}}", data);
        e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(hugeShape));
        Assert.Contains("'x'", e.Message);
    }

    [Fact]
    public void Unknown_dtype_is_a_clear_error()
    {
        var path = WriteRaw("dtype.safetensors", "{\"x\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", new byte[4]);
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Open(path));
        Assert.Contains("unsupported dtype 'F8_E4M3'", e.Message);
        Assert.Contains("'x'", e.Message);
        Assert.Contains("Convert", e.Message);
    }

    [Fact]
    public void Missing_tensor_and_missing_file_are_clear_errors()
    {
        var path = PathOf("m.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["transformer.wte.weight"] = zeros(2, 2) });
        using var f = Safetensors.Open(path);
        var e = Assert.Throws<KeyNotFoundException>(() => f.Read("transformer.wpe.weight"));
        Assert.Contains("'transformer.wpe.weight'", e.Message);
        Assert.Contains(path, e.Message);
        Assert.Contains("transformer.wte.weight", e.Message); // closest name suggested

        var nf = Assert.Throws<FileNotFoundException>(() => Safetensors.Open(PathOf("nope.safetensors")));
        Assert.Contains("nope.safetensors", nf.Message);
    }
}
