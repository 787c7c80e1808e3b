using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training.Checkpoints;

/// <summary>
/// Minimal safetensors writer/reader for training checkpoints (F32, F64, I64, I32, BOOL only). Format: 8-byte
/// little-endian header length N, N bytes of UTF-8 JSON <c>{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}</c>
/// padded with spaces to a multiple of 8, then the raw little-endian row-major tensor bytes (offsets relative to
/// the end of the header). Deliberately small and internal: the hardened general reader lives in SafetyNotebooks.IO.
/// </summary>
internal static class SimpleSafetensors
{
    static readonly Dictionary<ScalarType, (string Name, int Size)> Types = new()
    {
        [ScalarType.Float32] = ("F32", 4), [ScalarType.Float64] = ("F64", 8),
        [ScalarType.Int64] = ("I64", 8), [ScalarType.Int32] = ("I32", 4), [ScalarType.Bool] = ("BOOL", 1),
    };

    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = new List<(string Name, string Dtype, long[] Shape, byte[] Bytes)>();
        foreach (var (name, t) in tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!Types.TryGetValue(t.dtype, out var ty))
                throw new NotSupportedException($"Tensor '{name}' has dtype {t.dtype}; checkpoints support F32, F64, I64, I32 and BOOL.");
            using var scope = torch.NewDisposeScope();
            var c = t.detach().cpu().contiguous();
            byte[] bytes = t.dtype switch
            {
                ScalarType.Float32 => MemoryMarshal.AsBytes(c.data<float>().ToArray().AsSpan()).ToArray(),
                ScalarType.Float64 => MemoryMarshal.AsBytes(c.data<double>().ToArray().AsSpan()).ToArray(),
                ScalarType.Int64 => MemoryMarshal.AsBytes(c.data<long>().ToArray().AsSpan()).ToArray(),
                ScalarType.Int32 => MemoryMarshal.AsBytes(c.data<int>().ToArray().AsSpan()).ToArray(),
                _ => c.data<bool>().ToArray().Select(b => b ? (byte)1 : (byte)0).ToArray(),
            };
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Big-endian hosts are not supported.");
            entries.Add((name, ty.Name, t.shape, bytes));
        }

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var e in entries)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", e.Dtype);
                w.WriteStartArray("shape"); foreach (var d in e.Shape) w.WriteNumberValue(d); w.WriteEndArray();
                w.WriteStartArray("data_offsets"); w.WriteNumberValue(offset); w.WriteNumberValue(offset + e.Bytes.Length); w.WriteEndArray();
                w.WriteEndObject();
                offset += e.Bytes.Length;
            }
            w.WriteEndObject();
        }
        var header = ms.ToArray().ToList();
        while (header.Count % 8 != 0) header.Add((byte)' ');

        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var tmp = path + ".tmp";
        using (var f = File.Create(tmp))
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Count);
            f.Write(len);
            f.Write(header.ToArray());
            foreach (var e in entries) f.Write(e.Bytes);
        }
        File.Move(tmp, path, overwrite: true);
    }

    public static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata) Read(string path)
    {
        var all = File.ReadAllBytes(path);
        if (all.Length < 8) throw new InvalidDataException($"{path}: too short to be a safetensors file.");
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(all);
        if (n > (ulong)(all.Length - 8)) throw new InvalidDataException($"{path}: header length {n} exceeds the file size.");
        int dataStart = 8 + (int)n;
        using var doc = JsonDocument.Parse(all.AsMemory(8, (int)n));
        var tensors = new Dictionary<string, Tensor>();
        var meta = new Dictionary<string, string>();
        TorchRuntime.EnsureLoaded();
        try
        {
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    foreach (var m in prop.Value.EnumerateObject()) meta[m.Name] = m.Value.GetString() ?? "";
                    continue;
                }
                var dtype = prop.Value.GetProperty("dtype").GetString();
                var shape = prop.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
                var offs = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
                if (offs.Length != 2 || offs[0] < 0 || offs[1] < offs[0] || dataStart + offs[1] > all.Length)
                    throw new InvalidDataException($"{path}: bad data_offsets for '{prop.Name}'.");
                long count = shape.Aggregate(1L, (a, b) => a * b);
                var span = all.AsSpan(dataStart + (int)offs[0], (int)(offs[1] - offs[0]));
                var (_, size) = Types.Values.FirstOrDefault(t => t.Name == dtype);
                if (size == 0) throw new NotSupportedException($"{path}: dtype {dtype} of '{prop.Name}' is not supported by this minimal reader.");
                if (span.Length != count * size) throw new InvalidDataException($"{path}: '{prop.Name}' has {span.Length} bytes, expected {count * size}.");
                tensors[prop.Name] = dtype switch
                {
                    "F32" => torch.tensor(MemoryMarshal.Cast<byte, float>(span).ToArray(), shape),
                    "F64" => torch.tensor(MemoryMarshal.Cast<byte, double>(span).ToArray(), shape),
                    "I64" => torch.tensor(MemoryMarshal.Cast<byte, long>(span).ToArray(), shape),
                    "I32" => torch.tensor(MemoryMarshal.Cast<byte, int>(span).ToArray(), shape),
                    _ => torch.tensor(span.ToArray().Select(b => b != 0).ToArray(), shape),
                };
            }
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return (tensors, meta);
    }
}

/// <summary>Saves and loads a module's parameters and buffers (its <c>state_dict</c>) as a safetensors file.</summary>
public static class ModuleCheckpoint
{
    /// <summary>Writes every entry of <c>module.state_dict()</c> (F32/F64/I64/I32/BOOL) to <paramref name="path"/>, with optional string metadata.</summary>
    public static void Save(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        SimpleSafetensors.Write(path, module.state_dict(), metadata);
    }

    /// <summary>
    /// Copies the tensors in <paramref name="path"/> into <paramref name="module"/>'s parameters and buffers in place.
    /// With <paramref name="strict"/>, missing or unexpected names throw; shapes must always match. Returns the file's metadata.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Load(nn.Module module, string path, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(module);
        var (tensors, meta) = SimpleSafetensors.Read(path);
        try
        {
            var target = module.state_dict();
            if (strict)
            {
                var missing = target.Keys.Except(tensors.Keys).ToList();
                var extra = tensors.Keys.Except(target.Keys).ToList();
                if (missing.Count > 0 || extra.Count > 0)
                    throw new InvalidDataException($"Checkpoint {path} does not match the module. Missing: [{string.Join(", ", missing)}]; unexpected: [{string.Join(", ", extra)}].");
            }
            using var _ = torch.no_grad();
            foreach (var (name, dst) in target)
            {
                if (!tensors.TryGetValue(name, out var src)) continue;
                if (!src.shape.SequenceEqual(dst.shape))
                    throw new InvalidDataException($"Checkpoint {path}: '{name}' has shape [{string.Join(", ", src.shape)}], the module expects [{string.Join(", ", dst.shape)}].");
                dst.copy_(src);
            }
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
        return meta;
    }
}
