using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using SafetyNotebooks.Chat;
using SafetyNotebooks.Cli.Notebooks;
using SafetyNotebooks.Evaluation.Guardrails;
using SafetyNotebooks.Evaluation.RedTeaming;

namespace SafetyNotebooks.Cli.Commands;

/// <summary>Settings of <c>safety-notebooks serve</c>.</summary>
public sealed record ServeOptions
{
    /// <summary>Rails config path.</summary>
    public required string Config { get; init; }
    /// <summary>Upstream OpenAI-compatible base URL (…/v1), or <c>secret-keeper-bot</c> for the offline scenario target.</summary>
    public required string Upstream { get; init; }
    /// <summary>Model name sent upstream when a request names none.</summary>
    public string Model { get; init; } = "default";
    /// <summary>Address to listen on (loopback by default: put a reverse proxy in front to expose it).</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>Port (0: any free port).</summary>
    public int Port { get; init; } = 8000;
    /// <summary>Append every rail decision here as JSONL (null: stderr only).</summary>
    public string? DecisionLog { get; init; }
    /// <summary>Largest request body accepted, in bytes.</summary>
    public long MaxRequestBytes { get; init; } = 1_000_000;
}

/// <summary>
/// <c>safety-notebooks serve --config rails.yaml --upstream URL</c>: an OpenAI-compatible chat-completions server (non-streaming
/// and server-sent-event streaming) that puts the rails in front of any OpenAI-compatible upstream, as NeMo Guardrails' server
/// does. Endpoints: <c>POST /v1/chat/completions</c>, <c>GET /v1/models</c>, <c>GET /health</c>. Output rails need the whole
/// reply, so a streamed answer arrives as one chunk after screening.
/// </summary>
public static class ServeCommand
{
    /// <summary>Builds the server (not started): tests start it on a free port, the CLI runs it until Ctrl+C.</summary>
    public static WebApplication Build(ServeOptions o)
    {
        GuardrailsConfig rails;
        try { rails = GuardrailsConfig.Load(o.Config); }
        catch (Exception e) when (e is FileNotFoundException or InvalidDataException) { throw new UserError(e.Message); }
        bool offline = o.Upstream == "secret-keeper-bot";
        if (!offline && (!Uri.TryCreate(o.Upstream, UriKind.Absolute, out var up) || (up.Scheme != "http" && up.Scheme != "https")))
            throw new UserError($"--upstream '{o.Upstream}' must be an http(s) base URL such as http://localhost:11434/v1, or secret-keeper-bot for the offline target.");

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://{o.Host}:{o.Port}");
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = o.MaxRequestBytes);
        var app = builder.Build();

        var clients = new ConcurrentDictionary<string, GuardedChatClient>(StringComparer.Ordinal);
        var logLock = new object();
        void LogDecision(RailDecision d)
        {
            var line = JsonSerializer.Serialize(new { stage = d.Stage, rail = d.Rail, action = d.Action, reason = d.Reason, at = d.At });
            lock (logLock)
            {
                if (o.DecisionLog is { } path) File.AppendAllText(path, line + "\n");
                else Console.Error.WriteLine("guardrail: " + line);
            }
        }
        GuardedChatClient ClientFor(string model) => clients.GetOrAdd(model, m =>
        {
            IChatClient upstream = offline ? SecretKeeper.NaiveTarget() : OpenAICompatible.Create(new Uri(o.Upstream), m);
            var g = rails.Wrap(upstream);
            g.OnDecision = LogDecision;
            return g;
        });

        app.MapGet("/health", () => Results.Json(new { status = "ok" }));
        app.MapGet("/v1/models", () => Results.Json(new { @object = "list", data = new[] { new { id = o.Model, @object = "model", owned_by = "safety-notebooks" } } }));
        app.MapPost("/v1/chat/completions", async (HttpContext ctx) =>
        {
            JsonObject body;
            try
            {
                // Buffer the body (Kestrel caps its size) and check it is UTF-8 before parsing: System.Text.Json reads invalid bytes
                // inside strings lazily, so they would surface later as an unhandled InvalidOperationException (a 500).
                using var buffered = new MemoryStream();
                await ctx.Request.Body.CopyToAsync(buffered, ctx.RequestAborted);
                var bytes = buffered.GetBuffer().AsMemory(0, (int)buffered.Length);
                if (!System.Text.Unicode.Utf8.IsValid(bytes.Span))
                {
                    int at = 0;
                    while (at < bytes.Length && System.Text.Rune.DecodeFromUtf8(bytes.Span[at..], out _, out int used) == System.Buffers.OperationStatus.Done) at += used;
                    return Error(400, $"invalid request body: not valid UTF-8 (byte 0x{bytes.Span[at]:X2} at offset {at}); send JSON encoded as UTF-8");
                }
                body = JsonNode.Parse(bytes.Span, documentOptions: new JsonDocumentOptions { MaxDepth = 32 }) as JsonObject
                    ?? throw new JsonException("the body is not a JSON object");
            }
            catch (BadHttpRequestException e)
            {
                return Error(e.StatusCode, e.StatusCode == 413 ? $"request body larger than {o.MaxRequestBytes:N0} bytes" : $"bad request: {e.Message.Split('\n')[0]}");
            }
            catch (Exception e) when (e is JsonException or DecoderFallbackException)
            {
                return Error(400, $"invalid request body: {e.Message.Split('\n')[0]}");
            }
            if (body["messages"] is not JsonArray raw || raw.Count == 0) return Error(400, "'messages' must be a non-empty array of {role, content}");
            var messages = new List<ChatMessage>();
            string model;
            ChatOptions options;
            try
            {
            foreach (var m in raw)
            {
                string? role = (string?)m?["role"];
                string content = m?["content"] switch
                {
                    JsonValue v when v.TryGetValue<string>(out var s) => s,
                    JsonArray parts => string.Concat(parts.Select(p => (string?)p?["text"] ?? "")),
                    null => "",
                    _ => "\u0000",
                };
                if (content == "\u0000") return Error(400, "message 'content' must be a string or a list of text parts");
                ChatRole? r = role switch { "system" or "developer" => ChatRole.System, "user" => ChatRole.User, "assistant" => ChatRole.Assistant, _ => null };
                if (r is null) return Error(400, $"message role '{role}' is not supported (system, user, assistant)");
                if (GuardCommand.FirstLoneSurrogate(content) is int at) return Error(400, $"invalid request body: message content has a lone UTF-16 surrogate (\\u{(int)content[at]:x4}) at character {at}; send surrogates only in pairs");
                messages.Add(new ChatMessage(r.Value, content));
            }
            model = (string?)body["model"] ?? o.Model;
            options = new ChatOptions
            {
                Temperature = (float?)(double?)body["temperature"],
                MaxOutputTokens = (int?)body["max_tokens"] ?? (int?)body["max_completion_tokens"],
                TopP = (float?)(double?)body["top_p"],
            };
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException)
            {
                // A lone surrogate escape (\ud800) in a string, or a field of the wrong JSON type.
                return Error(400, $"invalid request body: {e.Message.Split('\n')[0]}");
            }
            ChatResponse response;
            try { response = await ClientFor(model).GetResponseAsync(messages, options, ctx.RequestAborted); }
            catch (GuardrailException e) { return Error(400, e.Message, "guardrail_violation"); }
            catch (ChatCallFailedException e) { return Error(502, e.Message, "upstream_error"); }
            catch (Exception e) when (e is HttpRequestException or System.ClientModel.ClientResultException) { return Error(502, $"upstream failed: {e.Message}", "upstream_error"); }
            string id = "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            string finish = response.FinishReason == ChatFinishReason.ContentFilter ? "content_filter" : response.FinishReason == ChatFinishReason.Length ? "length" : "stop";
            if ((bool?)body["stream"] == true)
            {
                ctx.Response.ContentType = "text/event-stream";
                var chunk = new JsonObject
                {
                    ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = model,
                    ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = new JsonObject { ["role"] = "assistant", ["content"] = response.Text }, ["finish_reason"] = null }),
                };
                var done = new JsonObject
                {
                    ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = model,
                    ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = new JsonObject(), ["finish_reason"] = finish }),
                };
                await ctx.Response.WriteAsync($"data: {chunk.ToJsonString()}\n\ndata: {done.ToJsonString()}\n\ndata: [DONE]\n\n", ctx.RequestAborted);
                return Results.Empty;
            }
            return Results.Json(new JsonObject
            {
                ["id"] = id, ["object"] = "chat.completion", ["created"] = created, ["model"] = model,
                ["choices"] = new JsonArray(new JsonObject
                {
                    ["index"] = 0, ["finish_reason"] = finish,
                    ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = response.Text },
                }),
                ["usage"] = new JsonObject
                {
                    ["prompt_tokens"] = response.Usage?.InputTokenCount ?? 0, ["completion_tokens"] = response.Usage?.OutputTokenCount ?? 0,
                    ["total_tokens"] = response.Usage?.TotalTokenCount ?? 0,
                },
            });
        });
        return app;
    }

    static IResult Error(int status, string message, string type = "invalid_request_error") =>
        Results.Json(new { error = new { message, type } }, statusCode: status);

    /// <summary>Runs the server until Ctrl+C.</summary>
    public static async Task<int> RunAsync(ServeOptions o, TextWriter console, CancellationToken cancellationToken)
    {
        await using var app = Build(o);
        await app.StartAsync(cancellationToken);
        console.WriteLine($"serve: rails from {o.Config} in front of {o.Upstream}; listening on {string.Join(", ", app.Urls)} (Ctrl+C to stop)");
        try { await Task.Delay(Timeout.Infinite, cancellationToken); } catch (OperationCanceledException) { }
        await app.StopAsync(CancellationToken.None);
        return 0;
    }
}
