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
/// decision <c>error</c> (with its line number as the reason) and the screening goes on.
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
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        using var writer = new StreamWriter(outPath, append: false, new UTF8Encoding(false));
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        int n = 0;
        using var reader = new StreamReader(inputPath, new UTF8Encoding(false, throwOnInvalidBytes: false));
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonObject result;
            JsonNode? id = null;
            try
            {
                var node = JsonNode.Parse(line, documentOptions: new JsonDocumentOptions { MaxDepth = 16 }) as JsonObject
                    ?? throw new FormatException("not a JSON object");
                id = node["id"]?.DeepClone();
                var text = node["text"] is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw new FormatException("no string field \"text\"");
                if (text.Length > MaxTextLength)
                    result = Decision(id, "refuse", "size", $"text longer than {MaxTextLength:N0} characters", null);
                else
                {
                    var (screened, action, decision) = GuardedChatClient.Screen(stage, text, rules);
                    result = Decision(id, action, decision?.Rail, decision?.Reason ?? "no rail triggered", action is "allow" or "fix" or "filter" ? screened : null);
                }
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
            {
                result = Decision(id, "error", null, $"line {n}: {e.Message.Split('\n')[0]}", null);
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

    static JsonObject Decision(JsonNode? id, string action, string? rail, string reason, string? text) => new()
    {
        ["id"] = id, ["action"] = action, ["rail"] = rail, ["reason"] = reason, ["text"] = text,
    };
}
