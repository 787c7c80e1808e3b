using System.Text;
using System.Text.Json;
using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

// Tests shrink Safetensors.ChunkBytes to exercise the >2 GB streaming path on small tensors.
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("SafetyNotebooks.Tests")]

namespace SafetyNotebooks.IO;

/// <summary>Shape, dtype and byte range of one tensor in a safetensors file.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">safetensors dtype string (<c>F32</c>, <c>F16</c>, <c>BF16</c>, <c>I64</c>, ...).</param>
/// <param name="Shape">Dimensions.</param>
/// <param name="Begin">Start offset within the data section.</param>
/// <param name="End">End offset (exclusive) within the data section.</param>
public sealed record SafetensorInfo(string Name, string DType, long[] Shape, long Begin, long End);

/// <summary>
/// Reader and writer for the <a href="https://github.com/huggingface/safetensors">safetensors</a> format
/// (8-byte little-endian header length, JSON header, raw little-endian data).
/// </summary>
/// <remarks>
/// Reading is defensive: the header length is bounded by the file size, the JSON is validated, every tensor's byte range
/// must lie inside the data section and match dtype × shape. Any problem raises <see cref="InvalidDataException"/>
/// naming the file, the tensor and the fix; nothing is allocated beyond what the file actually holds.
/// </remarks>
public sealed partial class Safetensors : IDisposable
{
    /// <summary>Largest accepted JSON header (100 MB, as in the reference implementation).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Bytes moved per read or write call. Tensors larger than this (in particular over 2 GB, beyond what one
    /// <see cref="Span{T}"/> can address) are streamed in pieces. Internal so that tests can exercise the chunking on small tensors.
    /// </summary>
    internal static long ChunkBytes { get; set; } = 1L << 30;

    static readonly Dictionary<string, (ScalarType Type, int Size)> DTypes = new()
    {
        ["F64"] = (ScalarType.Float64, 8), ["F32"] = (ScalarType.Float32, 4), ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2), ["I64"] = (ScalarType.Int64, 8), ["I32"] = (ScalarType.Int32, 4),
        ["I16"] = (ScalarType.Int16, 2), ["I8"] = (ScalarType.Int8, 1), ["U8"] = (ScalarType.Byte, 1), ["BOOL"] = (ScalarType.Bool, 1),
    };

    readonly FileStream _stream;
    readonly long _dataStart;
    readonly Dictionary<string, SafetensorInfo> _tensors;

    /// <summary>The file path.</summary>
    public string Path { get; }
    /// <summary>The optional <c>__metadata__</c> string map.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Tensor names in file order of their data.</summary>
    public IReadOnlyList<string> Names { get; }

    Safetensors(string path, FileStream stream, long dataStart, Dictionary<string, SafetensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path; _stream = stream; _dataStart = dataStart; _tensors = tensors; Metadata = metadata;
        Names = tensors.Values.OrderBy(t => t.Begin).Select(t => t.Name).ToList();
    }

    /// <summary>Opens and validates a safetensors file (the data is read lazily by <see cref="Read"/>).</summary>
    public static Safetensors Open(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Safetensors file not found: {System.IO.Path.GetFullPath(path)}. Check the path (and that the download completed).", path);
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            var (dataStart, tensors, metadata) = ParseHeader(path, stream);
            return new Safetensors(path, stream, dataStart, tensors, metadata);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    static InvalidDataException Bad(string path, string what, string fix = "The file is corrupt or not a safetensors file: re-download or re-export it.") =>
        new($"Invalid safetensors file '{path}': {what}. {fix}");

    static (long, Dictionary<string, SafetensorInfo>, Dictionary<string, string>) ParseHeader(string path, FileStream s)
    {
        long fileLength = s.Length;
        if (fileLength < 8) throw Bad(path, $"file is {fileLength} bytes, shorter than the 8-byte header length (truncated)");
        Span<byte> lenBytes = stackalloc byte[8];
        s.ReadExactly(lenBytes);
        ulong headerLen = BitConverter.ToUInt64(lenBytes);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Big-endian hosts are not supported.");
        if (headerLen > (ulong)(fileLength - 8))
            throw Bad(path, $"header claims {headerLen} bytes but only {fileLength - 8} bytes follow (truncated file or not safetensors)");
        if (headerLen > MaxHeaderBytes) throw Bad(path, $"header of {headerLen} bytes exceeds the {MaxHeaderBytes}-byte limit");
        var headerBytes = new byte[headerLen];
        s.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerLen;
        long dataLength = fileLength - dataStart;

        try { _ = StrictUtf8.GetCharCount(headerBytes); }
        catch (DecoderFallbackException e)
        { throw Bad(path, $"header is not valid UTF-8 (invalid byte at header offset {e.Index})"); }
        JsonDocument doc;
        try { doc = JsonDocument.Parse(headerBytes); }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        { throw Bad(path, "header is not valid JSON (" + e.Message + ")"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad(path, "header is not a JSON object");
            var tensors = new Dictionary<string, SafetensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                // JSON allows duplicate keys and parsers silently keep one of them: refuse instead of guessing which tensor is meant.
                if (!seen.Add(prop.Name))
                    throw Bad(path, $"the header names '{prop.Name}' twice (duplicate JSON key), so it is ambiguous which entry is meant",
                        "Re-export the checkpoint with unique tensor names (safetensors' own writer never produces duplicates).");
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad(path, "__metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                tensors[prop.Name] = ParseEntry(path, prop.Name, prop.Value, dataLength);
            }
            // Byte ranges must not overlap (the reference implementation also requires them to be contiguous).
            SafetensorInfo? prev = null;
            foreach (var t in tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End))
            {
                if (prev is not null && t.Begin < prev.End && t.End > t.Begin)
                    throw Bad(path, $"tensors '{prev.Name}' and '{t.Name}' overlap in the data section (header offsets are inconsistent)");
                prev = t;
            }
            return (dataStart, tensors, metadata);
        }
    }

    static SafetensorInfo ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Bad(path, $"entry for tensor '{name}' is not an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw Bad(path, $"tensor '{name}' has no string 'dtype'");
        var dtype = dt.GetString()!;
        if (!DTypes.TryGetValue(dtype, out var info))
            throw Bad(path, $"tensor '{name}' has unsupported dtype '{dtype}' (supported: {string.Join(", ", DTypes.Keys)})",
                "Convert the checkpoint to a supported dtype (e.g. F32 or F16) before loading.");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw Bad(path, $"tensor '{name}' has no 'shape' array");
        var shape = new List<long>();
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0)
                throw Bad(path, $"tensor '{name}' has an invalid dimension {d.GetRawText()} in its shape");
            shape.Add(v);
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Bad(path, $"tensor '{name}' has no 'data_offsets' [begin, end]");
        var offs = off.EnumerateArray().ToArray();
        if (!offs[0].TryGetInt64(out var begin) || !offs[1].TryGetInt64(out var end) || begin < 0 || end < begin)
            throw Bad(path, $"tensor '{name}' has invalid data_offsets {off.GetRawText()}");
        if (end > dataLength)
            throw Bad(path, $"tensor '{name}' ends at data offset {end} but the data section is only {dataLength} bytes (truncated file or header lying about offsets)");
        // Element count × size, guarding against overflow from absurd shapes.
        long expected = info.Size;
        foreach (var d in shape)
        {
            if (d != 0 && expected > long.MaxValue / d) throw Bad(path, $"tensor '{name}' has an absurdly large shape [{string.Join(", ", shape)}]");
            expected *= d;
        }
        if (end - begin != expected)
            throw Bad(path, $"tensor '{name}' is {dtype} [{string.Join(", ", shape)}] = {expected} bytes but its data_offsets span {end - begin} bytes (header inconsistent)");
        return new SafetensorInfo(name, dtype, shape.ToArray(), begin, end);
    }

    /// <summary>Whether the file holds a tensor with this name.</summary>
    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>The header entry of a tensor; throws <see cref="KeyNotFoundException"/> naming the file and similar names.</summary>
    public SafetensorInfo Info(string name) =>
        _tensors.TryGetValue(name, out var i) ? i : throw Missing(name);

    KeyNotFoundException Missing(string name)
    {
        var close = NameSuggestions.Closest(name, _tensors.Keys, 5);
        return new KeyNotFoundException(
            $"Tensor '{name}' is not in safetensors file '{Path}'. Closest names in the file: {string.Join(", ", close)}. " +
            "Check that the checkpoint matches the expected architecture and naming.");
    }

    /// <summary>Reads one tensor into a new CPU tensor of its stored dtype.</summary>
    public Tensor Read(string name)
    {
        TorchRuntime.EnsureLoaded();
        var info = Info(name);
        var (type, _) = DTypes[info.DType];
        long n = info.End - info.Begin;
        Tensor t;
        try { t = empty(info.Shape, type); }
        catch (Exception e) when (e is not InvalidDataException)
        {
            throw new InsufficientMemoryException(
                $"Could not allocate tensor '{name}' ({info.DType} [{string.Join(", ", info.Shape)}], {n:N0} bytes) from '{Path}': {e.Message}. " +
                "Free memory (dispose other models) or load the checkpoint on a machine with more RAM.", e);
        }
        if (n == 0) return t;
        try
        {
            lock (_stream)
            {
                _stream.Position = _dataStart + info.Begin;
                ForEachChunk(t, n, chunk => _stream.ReadExactly(chunk));
            }
        }
        catch (EndOfStreamException) { t.Dispose(); throw Bad(Path, $"tensor '{name}' data is cut short (truncated file)"); }
        catch { t.Dispose(); throw; }
        return t;
    }

    /// <summary>Reads every tensor.</summary>
    public Dictionary<string, Tensor> ReadAll() => Names.ToDictionary(n => n, Read);

    /// <summary>Reads all tensors of a file at once.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        using var f = Open(path);
        return f.ReadAll();
    }

    /// <summary>
    /// Writes tensors (any supported dtype, moved to CPU and made contiguous) to <paramref name="path"/>, sorted by name,
    /// with an optional <c>__metadata__</c> map. The header is space-padded to a multiple of 8 bytes. The file is written
    /// atomically (<see cref="AtomicFile"/>): on failure the previous file at <paramref name="path"/> is left as it was.
    /// </summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        TorchRuntime.EnsureLoaded();
        var names = tensors.Keys.OrderBy(n => n, StringComparer.Ordinal).ToList();
        var byType = DTypes.ToDictionary(kv => kv.Value.Type, kv => kv.Key);
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        var prepared = new List<Tensor>();
        try
        {
            foreach (var n in names)
            {
                var t = tensors[n].detach().cpu().contiguous();
                prepared.Add(t);
                if (!byType.TryGetValue(t.dtype, out var dtype))
                    throw new ArgumentException($"Tensor '{n}' has dtype {t.dtype}, which safetensors cannot store here; convert it (e.g. to float32) first.");
                long size = t.numel() * t.ElementSize;
                header[n] = new { dtype, shape = t.shape, data_offsets = new[] { offset, offset + size } };
                offset += size;
            }
            var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
            int padded = (json.Length + 7) / 8 * 8;
            var headerBytes = new byte[padded];
            Array.Fill(headerBytes, (byte)' ');
            json.CopyTo(headerBytes, 0);
            // Atomic (temp file + rename): a crash or error mid-write leaves the previous file intact, and readers
            // holding the old file open keep reading it.
            AtomicFile.Write(path, fs =>
            {
                fs.Write(BitConverter.GetBytes((ulong)padded));
                fs.Write(headerBytes);
                foreach (var t in prepared)
                    if (t.numel() > 0) ForEachChunk(t, t.numel() * t.ElementSize, chunk => fs.Write(chunk));
            });
        }
        finally
        {
            foreach (var t in prepared) t.Dispose();
        }
    }

    delegate void ChunkAction(Span<byte> chunk);

    /// <summary>
    /// Calls <paramref name="action"/> on consecutive byte spans covering the <paramref name="totalBytes"/> of a contiguous
    /// CPU tensor, each at most <see cref="ChunkBytes"/> (rounded down to whole elements), so that tensors over 2 GB work.
    /// </summary>
    static void ForEachChunk(Tensor t, long totalBytes, ChunkAction action)
    {
        long elementSize = t.ElementSize, numel = t.numel();
        if (numel * elementSize != totalBytes) throw new InvalidOperationException($"internal size mismatch: {numel} × {elementSize} bytes ≠ {totalBytes}");
        long perChunk = Math.Max(1, Math.Min(ChunkBytes, int.MaxValue) / elementSize);
        if (numel <= perChunk) { action(t.bytes); return; }
        using var flat = t.view(-1);
        for (long start = 0; start < numel; start += perChunk)
        {
            using var piece = flat.narrow(0, start, Math.Min(perChunk, numel - start));
            action(piece.bytes);
        }
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _stream.Dispose();
}
