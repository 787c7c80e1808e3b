using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using SafetyNotebooks.Models;
using SafetyNotebooks.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Chat;

/// <summary>Settings of a <see cref="HookedTransformerChatClient"/>.</summary>
public sealed record LocalChatOptions
{
    /// <summary>How messages become a prompt. Default <see cref="ChatTemplate.Plain"/>.</summary>
    public ChatTemplate Template { get; init; } = ChatTemplate.Plain;
    /// <summary>A system prompt put before conversations that do not start with one (null: none).</summary>
    public string? SystemPrompt { get; init; }
    /// <summary>Generation defaults; a call's <see cref="ChatOptions"/> overrides temperature, top-p, top-k, max tokens, seed and penalties.</summary>
    public GenerationOptions Generation { get; init; } = new() { MaxNewTokens = 64 };
    /// <summary>Model name reported in responses.</summary>
    public string ModelId { get; init; } = "hooked-transformer";
}

/// <summary>
/// A <see cref="HookedTransformer"/> (loaded from a checkpoint or trained in a notebook) behind
/// <c>Microsoft.Extensions.AI</c>'s <see cref="IChatClient"/>, so everything written against that interface (red teaming,
/// judges, guardrails, RLAIF) runs offline on the project's own models and unchanged against a server model
/// (<see cref="OpenAICompatible"/>). The conversation is formatted with a <see cref="ChatTemplate"/>, generated with
/// <see cref="Models.Generation"/> (KV cache, sampling options, seed) and cut at the template's stop sequences.
/// Streaming yields the reply token by token after generating it (the models here are small; the text and the
/// updates are the same as a true stream's). Calls are serialized: one model, one forward at a time.
/// </summary>
public sealed class HookedTransformerChatClient : IChatClient
{
    readonly HookedTransformer _model;
    readonly ITokenizer _tokenizer;
    readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>The settings this client was built with.</summary>
    public LocalChatOptions Options { get; }

    /// <summary>Wraps <paramref name="model"/> and its <paramref name="tokenizer"/>.</summary>
    public HookedTransformerChatClient(HookedTransformer model, ITokenizer tokenizer, LocalChatOptions? options = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        Options = options ?? new LocalChatOptions();
        var t = Options.Template;
        foreach (var part in new[] { t.SystemPrefix, t.UserPrefix, t.AssistantPrefix, t.TurnSuffix })
        {
            try { tokenizer.Encode(part); }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"The chat template's text '{part.ReplaceLineEndings("\\n")}' cannot be encoded by this tokenizer ({e.Message}). " +
                    "Use a template whose prefixes the tokenizer knows (a ChatTemplate record of your own), or build the tokenizer from a corpus that includes them.", nameof(tokenizer), e);
            }
        }
        if (tokenizer.VocabSize > model.Cfg.DVocab)
            throw new ArgumentException($"The tokenizer has {tokenizer.VocabSize} ids but the model's vocabulary is {model.Cfg.DVocab}: pass the tokenizer the model was trained with.", nameof(tokenizer));
    }

    /// <summary>The generation options for one call: the defaults overridden by <paramref name="options"/>.</summary>
    public GenerationOptions Resolve(ChatOptions? options)
    {
        var g = Options.Generation;
        if (_tokenizer.EosTokenId is int eos && g.EosTokenId is null) g = g with { EosTokenId = eos };
        if (options is null) return g;
        if (options.MaxOutputTokens is int max)
        {
            if (max < 1) throw new ArgumentOutOfRangeException(nameof(options), $"ChatOptions.MaxOutputTokens must be at least 1, not {max}.");
            g = g with { MaxNewTokens = max };
        }
        if (options.Temperature is float t) g = t <= 0 ? g with { DoSample = false } : g with { DoSample = true, Temperature = t };
        if (options.TopP is float p) g = g with { TopP = p };
        if (options.TopK is int k) g = g with { TopK = k };
        if (options.Seed is long s) g = g with { Seed = s };
        if (options.FrequencyPenalty is float f) g = g with { FrequencyPenalty = f };
        if (options.PresencePenalty is float pp) g = g with { PresencePenalty = pp };
        return g;
    }

    /// <summary>The prompt string this client feeds the model for <paramref name="messages"/>.</summary>
    public string FormatPrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null) =>
        Options.Template.Format(messages, addGenerationPrompt: true, systemPrompt: options?.Instructions ?? Options.SystemPrompt);

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (reply, finish, promptTokens, outputTokens) = await GenerateAsync(messages, options, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, reply))
        {
            ModelId = Options.ModelId,
            FinishReason = finish,
            Usage = new UsageDetails { InputTokenCount = promptTokens, OutputTokenCount = outputTokens, TotalTokenCount = promptTokens + outputTokens },
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (reply, finish, _, _) = await GenerateAsync(messages, options, cancellationToken).ConfigureAwait(false);
        var pieces = _tokenizer.ToStrTokens(_tokenizer.Encode(reply));
        // Per-token strings of byte-level tokenizers may split a character; fall back to one update when they do not add up.
        if (string.Concat(pieces) != reply) pieces = [reply];
        foreach (var piece in pieces)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ModelId = Options.ModelId };
        }
        yield return new ChatResponseUpdate(ChatRole.Assistant, (string?)null) { FinishReason = finish, ModelId = Options.ModelId };
    }

    async Task<(string Reply, ChatFinishReason Finish, int PromptTokens, int OutputTokens)> GenerateAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var prompt = FormatPrompt(messages, options);
        var gen = Resolve(options);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            int[] ids = _tokenizer.BosTokenId is int bos ? [bos, .. _tokenizer.Encode(prompt)] : _tokenizer.Encode(prompt);
            if (ids.Length == 0) throw new ArgumentException("The formatted prompt is empty and the tokenizer has no BOS token: give the model something to continue.", nameof(messages));
            if (ids.Length + gen.MaxNewTokens > _model.Cfg.NCtx && gen.ContextWindow is null)
                gen = gen with { ContextWindow = _model.Cfg.NCtx };
            using var scope = NewDisposeScope();
            var input = tensor(ids.Select(i => (long)i).ToArray(), new long[] { 1, ids.Length }, dtype: ScalarType.Int64);
            var result = Generation.Generate(_model, input, gen);
            var generated = result.Tokens[0].narrow(0, ids.Length, result.NewTokens).masked_select(result.GeneratedMask[0])
                .cpu().data<long>().Select(x => (int)x).ToList();
            bool hitEos = gen.EosTokenId is long e && generated.Count > 0 && generated[^1] == e;
            if (hitEos) generated.RemoveAt(generated.Count - 1);
            var text = _tokenizer.Decode(generated);
            var (reply, stopped) = Options.Template.Cut(text, options?.StopSequences);
            var finish = stopped || hitEos ? ChatFinishReason.Stop : ChatFinishReason.Length;
            return (reply, finish, ids.Length, generated.Count + (hitEos ? 1 : 0));
        }
        finally { _gate.Release(); }
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType.IsInstanceOfType(this) ? this
        : serviceKey is null && serviceType == typeof(HookedTransformer) ? _model
        : serviceKey is null && serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("SafetyNotebooks", null, Options.ModelId)
        : null;

    /// <summary>Releases the call gate (the model is the caller's and is not disposed).</summary>
    public void Dispose() => _gate.Dispose();
}
