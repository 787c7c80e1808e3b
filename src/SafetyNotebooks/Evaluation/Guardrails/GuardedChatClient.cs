using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;

namespace SafetyNotebooks.Evaluation.Guardrails;

/// <summary>What a rail does when it triggers (NeMo Guardrails' and Guardrails AI's <c>on_fail</c> actions).</summary>
public enum OnFail
{
    /// <summary>Answer with the configured refusal instead (input: the model is not called).</summary>
    Refuse,
    /// <summary>Replace the text with the rail's fix (e.g. anonymized PII) and go on; refuse when the rail has no fix.</summary>
    Fix,
    /// <summary>Input: drop the message's content (the model sees an empty message). Output: return an empty reply.</summary>
    Filter,
    /// <summary>Output only: ask the model again (up to the configured number of times), then refuse.</summary>
    Reask,
    /// <summary>Throw a <see cref="GuardrailException"/>.</summary>
    Exception,
}

/// <summary>A rail with its action.</summary>
public sealed record RailRule(IRail Rail, OnFail OnFail);

/// <summary>One logged decision: which rail acted, on what stage, what it did and why; <paramref name="Reply"/> is the canned reply
/// of a <c>respond</c> decision (a dialog rail's bot message).</summary>
public sealed record RailDecision(string Stage, string Rail, string Action, string Reason, DateTimeOffset At, string? Reply = null);

/// <summary>Thrown by rails configured with <see cref="OnFail.Exception"/>.</summary>
public sealed class GuardrailException(RailDecision decision) : Exception($"Guardrail '{decision.Rail}' blocked the {decision.Stage}: {decision.Reason}.")
{
    /// <summary>The decision that blocked the call.</summary>
    public RailDecision Decision { get; } = decision;
}

/// <summary>
/// Rails as <see cref="IChatClient"/> middleware: input rails check the last user message before the model sees it, output rails
/// check the reply before the caller does; each trigger acts per its <see cref="OnFail"/> and is logged with the rail and the
/// reason (<see cref="Decisions"/>, <see cref="OnDecision"/>). Streaming calls are answered as one update after the output rails ran.
/// </summary>
public sealed class GuardedChatClient(IChatClient inner, IReadOnlyList<RailRule> inputRails, IReadOnlyList<RailRule> outputRails,
    string refusal = GuardedChatClient.DefaultRefusal, int maxReasks = 1) : DelegatingChatClient(inner)
{
    /// <summary>The default canned refusal.</summary>
    public const string DefaultRefusal = "I'm sorry, but I can't help with that.";
    readonly List<RailDecision> _log = new();

    /// <summary>Every decision so far (thread-safe copy).</summary>
    public IReadOnlyList<RailDecision> Decisions { get { lock (_log) return _log.ToList(); } }
    /// <summary>Called for every decision (e.g. to write an audit log).</summary>
    public Action<RailDecision>? OnDecision { get; set; }

    /// <summary>
    /// Runs <paramref name="rules"/> on <paramref name="text"/> in order. Returns the (possibly fixed) text, or null when the
    /// text is refused; <paramref name="action"/> is the last action taken ("allow" when nothing triggered).
    /// </summary>
    /// <param name="stage"><c>input</c> or <c>output</c>.</param>
    /// <param name="text">The text to screen.</param>
    /// <param name="rules">The rails, in order.</param>
    /// <param name="log">Receives every decision.</param>
    public static (string? Text, string Action, RailDecision? Decision) Screen(string stage, string text, IReadOnlyList<RailRule> rules, Action<RailDecision>? log = null) =>
        ScreenAsync(stage, text, rules, null, log).GetAwaiter().GetResult();

    /// <summary>
    /// <see cref="Screen"/> with the conversation: rails that read it (<see cref="IContextRail"/>: dialog rails, the self-check) get
    /// <paramref name="context"/>; without one they see <paramref name="text"/> alone. A rail whose check carries a canned reply and
    /// whose <c>on_fail</c> is <c>refuse</c> answers with that reply (action <c>respond</c>, <see cref="RailDecision.Reply"/>).
    /// </summary>
    public static async Task<(string? Text, string Action, RailDecision? Decision)> ScreenAsync(string stage, string text, IReadOnlyList<RailRule> rules,
        RailContext? context, Action<RailDecision>? log = null, CancellationToken cancellationToken = default)
    {
        RailDecision Log(string st, string rail, string act, string reason, string? reply = null)
        {
            var d = new RailDecision(st, rail, act, reason, DateTimeOffset.UtcNow, reply);
            log?.Invoke(d);
            return d;
        }
        string current = text;
        RailDecision? last = null;
        string action = "allow";
        foreach (var rule in rules)
        {
            RailCheck check;
            try
            {
                check = rule.Rail is IContextRail cr && context is not null
                    ? await cr.CheckAsync(context, current, cancellationToken).ConfigureAwait(false)
                    : rule.Rail.Check(current);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { throw; }
            catch (Exception e) when (e is not GuardrailException)
            {
                // A rail that fails closes the gate: refuse rather than pass unchecked text.
                last = Log(stage, rule.Rail.Name, "refuse", $"rail failed ({e.GetType().Name}: {e.Message}); refusing rather than passing unchecked text");
                return (null, "refuse", last);
            }
            if (!check.Triggered) continue;
            switch (rule.OnFail)
            {
                case OnFail.Exception:
                    throw new GuardrailException(Log(stage, rule.Rail.Name, "exception", check.Reason));
                case OnFail.Fix when check.Fixed is not null:
                    current = check.Fixed;
                    last = Log(stage, rule.Rail.Name, action = "fix", check.Reason);
                    break;
                case OnFail.Filter:
                    last = Log(stage, rule.Rail.Name, "filter", check.Reason);
                    return ("", "filter", last);
                case OnFail.Reask when stage == "output":
                    last = Log(stage, rule.Rail.Name, "reask", check.Reason);
                    return (null, "reask", last);
                case OnFail.Refuse when check.Reply is not null:
                    last = Log(stage, rule.Rail.Name, "respond", check.Reason, check.Reply);
                    return (null, "respond", last);
                default:
                    last = Log(stage, rule.Rail.Name, "refuse", check.Reason + (rule.OnFail == OnFail.Fix ? " (the rail has no fix)" : ""));
                    return (null, "refuse", last);
            }
        }
        return (current, action, last);
    }

    /// <inheritdoc/>
    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var list = messages.ToList();
        int lastUser = list.FindLastIndex(m => m.Role == ChatRole.User);
        if (lastUser >= 0)
        {
            var (text, _, decision) = await ScreenAsync("input", list[lastUser].Text ?? "", inputRails, new RailContext(list, InnerClient, options), Record, cancellationToken).ConfigureAwait(false);
            if (text is null) return Refusal(decision);
            list[lastUser] = new ChatMessage(ChatRole.User, text);
        }
        for (int attempt = 0; ; attempt++)
        {
            var response = await base.GetResponseAsync(list, options, cancellationToken).ConfigureAwait(false);
            var (reply, action, decision) = await ScreenAsync("output", response.Text ?? "", outputRails, new RailContext(list, InnerClient, options), Record, cancellationToken).ConfigureAwait(false);
            if (action == "reask" && attempt < maxReasks) continue;
            if (reply is null) return Refusal(decision);
            return reply == response.Text ? response : new ChatResponse(new ChatMessage(ChatRole.Assistant, reply)) { ModelId = response.ModelId, Usage = response.Usage };
        }
    }

    /// <inheritdoc/>
    public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var r = await GetResponseAsync(messages, options, cancellationToken).ConfigureAwait(false);
        yield return new ChatResponseUpdate(ChatRole.Assistant, r.Text) { FinishReason = ChatFinishReason.Stop, ModelId = r.ModelId };
    }

    ChatResponse Refusal(RailDecision? decision) => decision?.Reply is { } canned
        ? new(new ChatMessage(ChatRole.Assistant, canned)) { FinishReason = ChatFinishReason.Stop }
        : new(new ChatMessage(ChatRole.Assistant, refusal)) { FinishReason = ChatFinishReason.ContentFilter };

    void Record(RailDecision d)
    {
        lock (_log) _log.Add(d);
        OnDecision?.Invoke(d);
    }
}
