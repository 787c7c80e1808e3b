using System.ClientModel;
using System.ClientModel.Primitives;
using Microsoft.Extensions.AI;
using OpenAI;

namespace SafetyNotebooks.Chat;

/// <summary>
/// Any OpenAI-compatible chat-completions server (Ollama, llama.cpp's server, vLLM, LM Studio, a cloud endpoint) as an
/// <see cref="IChatClient"/>, through Microsoft.Extensions.AI.OpenAI, wrapped in a <see cref="ResilientChatClient"/> (the SDK's
/// own retries are turned off so the limits here are the only ones). Examples: Ollama <c>http://localhost:11434/v1</c>,
/// llama.cpp <c>http://localhost:8080/v1</c>, vLLM <c>http://localhost:8000/v1</c>.
/// </summary>
public static class OpenAICompatible
{
    /// <summary>Environment variables read by <see cref="FromEnvironment"/>.</summary>
    public const string UrlVariable = "SAFETY_NOTEBOOKS_CHAT_URL", ModelVariable = "SAFETY_NOTEBOOKS_CHAT_MODEL", KeyVariable = "SAFETY_NOTEBOOKS_CHAT_API_KEY";

    /// <summary>
    /// A client for <paramref name="model"/> at <paramref name="endpoint"/> (the base URL that ends before
    /// <c>/chat/completions</c>, usually <c>…/v1</c>). Local servers ignore the key; a placeholder is sent when none is given.
    /// </summary>
    public static ResilientChatClient Create(Uri endpoint, string model, string? apiKey = null, ChatLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (!endpoint.IsAbsoluteUri || (endpoint.Scheme != Uri.UriSchemeHttp && endpoint.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"Chat endpoint '{endpoint}' must be an absolute http(s) URL such as http://localhost:11434/v1.", nameof(endpoint));
        if (string.IsNullOrWhiteSpace(model))
            throw new ArgumentException("Name the model the server should run (e.g. \"llama3.2:1b\" for Ollama; llama.cpp accepts any name).", nameof(model));
        var l = (limits ?? new ChatLimits()).Validate();
        var options = new OpenAIClientOptions
        {
            Endpoint = endpoint,
            NetworkTimeout = l.Timeout + TimeSpan.FromSeconds(1),   // ours cancels first, so a timeout is ours to retry
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
        };
        var chat = new OpenAI.Chat.ChatClient(model, new ApiKeyCredential(string.IsNullOrEmpty(apiKey) ? "not-needed" : apiKey), options);
        return new ResilientChatClient(chat.AsIChatClient(), l);
    }

    /// <summary>
    /// The server named by <see cref="UrlVariable"/> and <see cref="ModelVariable"/> (key: <see cref="KeyVariable"/>), or null
    /// when they are not set — lessons use it to run on a real model when the user points them at one and offline otherwise.
    /// </summary>
    public static ResilientChatClient? FromEnvironment(ChatLimits? limits = null)
    {
        var url = Environment.GetEnvironmentVariable(UrlVariable);
        if (string.IsNullOrWhiteSpace(url)) return null;
        var model = Environment.GetEnvironmentVariable(ModelVariable);
        if (string.IsNullOrWhiteSpace(model))
            throw new InvalidOperationException($"{UrlVariable} is set to '{url}' but {ModelVariable} is not: set it to the model the server should run.");
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
            throw new InvalidOperationException($"{UrlVariable} = '{url}' is not a URL: use e.g. http://localhost:11434/v1.");
        return Create(uri, model, Environment.GetEnvironmentVariable(KeyVariable), limits);
    }
}
