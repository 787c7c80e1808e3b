using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SafetyNotebooks.Cli.Notebooks;
using SafetyNotebooks.Evaluation.Guardrails;

namespace SafetyNotebooks.Cli.Commands;

/// <summary>
/// <c>safety-notebooks guard --config rails.yaml --input in.jsonl --out out.jsonl [--output]</c>: screens a file of
/// <c>{"id", "text"}</c> lines with the input rails (or the output rails) and writes one decision per line,
/// <c>{"id", "action", "rail", "reason", "text"}</c>. A line that is not valid JSON, or has no string <c>text</c>, gets the
/// decision <c>error</c> (with its line number as the reason) and the screening goes on. A dialog rail's canned answer is the
/// action <c>respond</c> with the bot message as <c>text</c>; each line is screened as a one-turn conversation.
/// </summary>
public static class GuardCommand
{
    /// <summary>Most characters of one text screened (longer texts are refused as a whole, not truncated silently).</summary>
    public const int MaxTextLength = 1_000_000;

    /// <summary>Runs the screening; returns 0, or throws <see cref="UserError"/> for a bad config or missing file.</summary>
    public static int Run(string configPath, string inputPath, string outPath, bool outputRails, TextWriter console)
    {
        GuardrailsConfig cfg;
        try { cfg = GuardrailsConfig.Load(configPath); }
        catch (Exception e) when (e is FileNotFoundException or InvalidDataException) { throw new UserError(e.Message); }
        if (!File.Exists(inputPath)) throw new UserError($"Input file '{inputPath}' does not exist; give a JSONL file of {{\"id\", \"text\"}} lines.");
        var rules = outputRails ? cfg.OutputRules() : cfg.InputRules();
        string stage = outputRails ? "output" : "input";
        if (rules.Count == 0) throw new UserError($"{configPath} has no {stage} rails; add some, or {(outputRails ? "drop" : "add")} --output.");
        if (rules.Any(r => r.Rail is SelfCheckRail))
            throw new UserError($"{configPath}: the selfcheck rail samples the model again, so it cannot screen a file of texts; use it with serve, or drop it from a config for guard.");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        using var writer = new StreamWriter(outPath, append: false, new UTF8Encoding(false));
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        string file = Path.GetFileName(inputPath);
        int shown = 0;
        using var input = new FileStream(inputPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        foreach (var (n, bytes, tooLong) in ReadLines(input, MaxLineBytes))
        {
            JsonObject result;
            JsonNode? id = null;
            try
            {
                if (tooLong) throw new FormatException($"line longer than {MaxLineBytes:N0} bytes");
                var line = DecodeUtf8(bytes);
                if (string.IsNullOrWhiteSpace(line)) continue;
                var node = JsonNode.Parse(line, documentOptions: new JsonDocumentOptions { MaxDepth = 16 }) as JsonObject
                    ?? throw new FormatException("not a JSON object");
                id = CloneId(node["id"]);
                var text = node["text"] is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw new FormatException("no string field \"text\"");
                if (FirstLoneSurrogate(text) is int at) throw new FormatException($"\"text\" has a lone UTF-16 surrogate (\\u{(int)text[at]:x4}) at character {at}; escape pairs such as \\ud83d\\ude00 only in pairs");
                if (text.Length > MaxTextLength)
                    result = Decision(id, "refuse", "size", $"text longer than {MaxTextLength:N0} characters", null);
                else
                {
                    var (screened, action, decision) = GuardedChatClient.Screen(stage, text, rules);
                    result = Decision(id, action, decision?.Rail, decision?.Reason ?? "no rail triggered", action is "allow" or "fix" or "filter" ? screened : action == "respond" ? decision?.Reply : null);
                }
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or DecoderFallbackException)
            {
                string reason = $"{file} line {n}: {OneLine(e)}";
                if (shown++ < 5) console.WriteLine("guard: " + reason);
                result = Decision(id, "error", null, reason, null);
            }
            catch (GuardrailException e)
            {
                result = Decision(id, "exception", e.Decision.Rail, e.Decision.Reason, null);
            }
            string act = (string)result["action"]!;
            counts[act] = counts.GetValueOrDefault(act) + 1;
            writer.WriteLine(result.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        }
        console.WriteLine($"guard ({stage} rails): {counts.Values.Sum()} texts — {string.Join(", ", counts.Select(kv => $"{kv.Value} {kv.Key}"))}; decisions → {outPath}");
        return 0;
    }

    /// <summary>Longest line read, in bytes (a longer line gets an <c>error</c> decision; memory stays bounded).</summary>
    public const int MaxLineBytes = 4 * MaxTextLength + 4096;

    static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    /// <summary>Splits a stream into lines of raw bytes (without the <c>\r\n</c> / <c>\n</c>), numbered from 1; a line longer than
    /// <paramref name="maxBytes"/> is skipped to its end and reported as too long instead of being held in memory.</summary>
    static IEnumerable<(int Number, byte[] Bytes, bool TooLong)> ReadLines(Stream stream, int maxBytes)
    {
        var line = new MemoryStream();
        var buffer = new byte[1 << 16];
        int number = 1, read;
        bool tooLong = false, any = false;
        while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
        {
            int start = 0;
            for (int i = 0; i < read; i++)
            {
                if (buffer[i] != (byte)'\n') continue;
                Append(buffer, start, i - start);
                yield return Finish();
                start = i + 1;
            }
            Append(buffer, start, read - start);
        }
        if (any) yield return Finish();

        void Append(byte[] b, int offset, int count)
        {
            if (count > 0) any = true;
            if (tooLong) return;
            if (line.Length + count > maxBytes) { tooLong = true; line.SetLength(0); return; }
            line.Write(b, offset, count);
        }
        (int, byte[], bool) Finish()
        {
            var bytes = line.ToArray();
            if (bytes.Length > 0 && bytes[^1] == (byte)'\r') bytes = bytes[..^1];
            if (number == 1 && bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) bytes = bytes[3..];
            var r = (number++, bytes, tooLong);
            line.SetLength(0);
            tooLong = false;
            any = false;
            return r;
        }
    }

    /// <summary>Strict UTF-8 decoding: an invalid byte is a <see cref="FormatException"/> naming the byte and its column.</summary>
    static string DecodeUtf8(byte[] bytes)
    {
        try { return StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException e)
        {
            string b = e.BytesUnknown is { Length: > 0 } u ? string.Join(" ", u.Select(x => $"0x{x:X2}")) : "?";
            throw new FormatException($"invalid UTF-8 (byte {b} at byte {e.Index + 1} of the line); save the file as UTF-8");
        }
    }

    /// <summary>Index of the first unpaired surrogate in <paramref name="s"/>, or null when it is well-formed UTF-16.</summary>
    internal static int? FirstLoneSurrogate(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; }
            if (char.IsSurrogate(s[i])) return i;
        }
        return null;
    }

    static JsonNode? CloneId(JsonNode? id)
    {
        if (id is JsonValue v && v.TryGetValue<string>(out var s) && FirstLoneSurrogate(s) is not null) return "<invalid UTF-16 id>";
        return id?.DeepClone();
    }

    static string OneLine(Exception e)
    {
        var m = e.Message.Split('\n')[0].Trim();
        return e is InvalidOperationException && m.Contains("UTF-16", StringComparison.Ordinal)
            ? "a JSON string has a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair); escape surrogates only in pairs (" + m.TrimEnd('.') + ")"
            : m;
    }

    static JsonObject Decision(JsonNode? id, string action, string? rail, string reason, string? text) => new()
    {
        ["id"] = id, ["action"] = action, ["rail"] = rail, ["reason"] = reason, ["text"] = text,
    };
}
