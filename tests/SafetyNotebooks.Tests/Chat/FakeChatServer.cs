using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SafetyNotebooks.Tests.Chat;

/// <summary>What the fake server answers to one request.</summary>
public sealed record FakeReply(string Content = "ok", int Status = 200, TimeSpan Delay = default, string[]? StreamPieces = null);

/// <summary>
/// An in-process OpenAI-compatible chat-completions server on loopback (HttpListener), for offline tests of chat clients:
/// records every request body, answers with <see cref="FakeReply"/> from a callback, streams server-sent events when asked,
/// and counts the most requests in flight at once.
/// </summary>
public sealed class FakeChatServer : IDisposable
{
    readonly HttpListener _listener = new();
    readonly Func<int, JsonNode, FakeReply> _respond;
    readonly CancellationTokenSource _stop = new();
    readonly List<JsonNode> _requests = new();
    int _inFlight, _maxInFlight, _count;

    /// <summary>Base URL to give a client (ends in /v1).</summary>
    public Uri Endpoint { get; }
    /// <summary>Request bodies received, in arrival order.</summary>
    public IReadOnlyList<JsonNode> Requests { get { lock (_requests) return _requests.ToList(); } }
    /// <summary>Most requests that were being handled at the same time.</summary>
    public int MaxInFlight => Volatile.Read(ref _maxInFlight);

    /// <summary>Starts on a free loopback port; <paramref name="respond"/> gets the 0-based request index and the JSON body.</summary>
    public FakeChatServer(Func<int, JsonNode, FakeReply> respond)
    {
        _respond = respond;
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        _listener.Start();
        Endpoint = new Uri($"http://127.0.0.1:{port}/v1");
        _ = Task.Run(AcceptLoop);
    }

    async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext ctx;
            try { ctx = await _listener.GetContextAsync(); }
            catch { return; }
            _ = Task.Run(() => Handle(ctx));
        }
    }

    async Task Handle(HttpListenerContext ctx)
    {
        int now = Interlocked.Increment(ref _inFlight), seen;
        while (now > (seen = Volatile.Read(ref _maxInFlight)) && Interlocked.CompareExchange(ref _maxInFlight, now, seen) != seen) { }
        try
        {
            using var reader = new StreamReader(ctx.Request.InputStream, Encoding.UTF8);
            var body = JsonNode.Parse(await reader.ReadToEndAsync())!;
            int index;
            lock (_requests) { _requests.Add(body); index = _count++; }
            var reply = _respond(index, body);
            if (reply.Delay > TimeSpan.Zero) await Task.Delay(reply.Delay, _stop.Token);
            ctx.Response.StatusCode = reply.Status;
            if (reply.Status != 200)
            {
                await Write(ctx, "application/json", $"{{\"error\":{{\"message\":\"fake failure {reply.Status}\",\"type\":\"server_error\"}}}}");
                return;
            }
            string model = body["model"]?.GetValue<string>() ?? "fake";
            if (body["stream"]?.GetValue<bool>() == true)
            {
                var sb = new StringBuilder();
                foreach (var piece in reply.StreamPieces ?? [reply.Content])
                    sb.Append("data: ").Append(Chunk(model, new JsonObject { ["content"] = piece }, null)).Append("\n\n");
                sb.Append("data: ").Append(Chunk(model, new JsonObject(), "stop")).Append("\n\n").Append("data: [DONE]\n\n");
                await Write(ctx, "text/event-stream", sb.ToString());
                return;
            }
            var json = new JsonObject
            {
                ["id"] = "chatcmpl-fake", ["object"] = "chat.completion", ["created"] = 1700000000, ["model"] = model,
                ["choices"] = new JsonArray(new JsonObject
                {
                    ["index"] = 0, ["finish_reason"] = "stop",
                    ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = reply.Content },
                }),
                ["usage"] = new JsonObject { ["prompt_tokens"] = 7, ["completion_tokens"] = 3, ["total_tokens"] = 10 },
            };
            await Write(ctx, "application/json", json.ToJsonString());
        }
        catch { try { ctx.Response.Abort(); } catch { } }
        finally { Interlocked.Decrement(ref _inFlight); }
    }

    static string Chunk(string model, JsonObject delta, string? finish) => new JsonObject
    {
        ["id"] = "chatcmpl-fake", ["object"] = "chat.completion.chunk", ["created"] = 1700000000, ["model"] = model,
        ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["finish_reason"] = finish }),
    }.ToJsonString();

    static async Task Write(HttpListenerContext ctx, string contentType, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        ctx.Response.ContentType = contentType;
        ctx.Response.ContentLength64 = bytes.Length;
        await ctx.Response.OutputStream.WriteAsync(bytes);
        ctx.Response.Close();
    }

    /// <summary>Stops the listener.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        try { _listener.Stop(); _listener.Close(); } catch { }
    }
}
