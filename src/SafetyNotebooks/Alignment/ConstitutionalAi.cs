using Microsoft.Extensions.AI;
using SafetyNotebooks.Chat;
using SafetyNotebooks.Tokenization;

namespace SafetyNotebooks.Alignment;

/// <summary>One critique–revision step of SL-CAI: the principle applied, the feedback model's critique and its revision.</summary>
/// <param name="PrincipleId">The <see cref="ConstitutionalPrinciple.Id"/> sampled for this step.</param>
/// <param name="Critique">The critique the feedback model wrote.</param>
/// <param name="Revision">The rewritten response (the previous response when the model returned nothing).</param>
public sealed record CritiqueRevisionStep(string PrincipleId, string Critique, string Revision);

/// <summary>A prompt, the policy's first response and the critique–revision steps applied to it.</summary>
/// <param name="Prompt">The user's prompt.</param>
/// <param name="Response">The policy's original response.</param>
/// <param name="Steps">The steps, in order (each revises the previous step's revision).</param>
public sealed record CaiRevision(string Prompt, string Response, IReadOnlyList<CritiqueRevisionStep> Steps)
{
    /// <summary>The final revision: the SL-CAI fine-tuning target for <see cref="Prompt"/>.</summary>
    public string Revision => Steps.Count == 0 ? Response : Steps[^1].Revision;
}

/// <summary>Settings of <see cref="ConstitutionalAi.CollectAsync"/>.</summary>
public sealed record SlCaiOptions
{
    /// <summary>Critique–revision rounds per response; each samples one principle (Bai et al. sample per step). Default 1.</summary>
    public int Rounds { get; init; } = 1;
    /// <summary>Sampling settings of the policy's responses; the seed of response i is <see cref="Seed"/> + i. Default temperature 1.</summary>
    public ChatOptions Generation { get; init; } = new() { Temperature = 1f };
    /// <summary>Settings of the feedback model's critiques and revisions. Default greedy (temperature 0).</summary>
    public ChatOptions Feedback { get; init; } = new() { Temperature = 0f };
    /// <summary>Seed of the principle draws and of the policy's samples. Default 0.</summary>
    public int Seed { get; init; }
    /// <summary>Prompts processed at once (a server can serve several; local models serialize anyway). Default 1.</summary>
    public int MaxConcurrency { get; init; } = 1;
}

/// <summary>
/// Supervised Constitutional AI (SL-CAI, Bai et al. 2022): the policy answers a prompt; a feedback model critiques the answer
/// under a sampled principle and then revises it; the (prompt, final revision) pairs are the fine-tuning set for the library's
/// SFT (<see cref="Sft"/>, <see cref="SftObjective"/>). Every model call goes through <see cref="IChatClient"/>, so the policy
/// and the feedback model may be local models, rule-based stand-ins or an OpenAI-compatible server. Principles are drawn
/// before any call, from <see cref="SlCaiOptions.Seed"/>, so a run is reproducible whatever order the calls finish in.
/// </summary>
public static class ConstitutionalAi
{
    /// <summary>The conversation that asks for a critique: the prompt, the response, then the principle's critique request.</summary>
    public static List<ChatMessage> CritiqueMessages(string prompt, string response, ConstitutionalPrinciple principle)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(response);
        ArgumentNullException.ThrowIfNull(principle);
        return
        [
            new ChatMessage(ChatRole.User, prompt),
            new ChatMessage(ChatRole.Assistant, response),
            new ChatMessage(ChatRole.User, principle.CritiqueRequest),
        ];
    }

    /// <summary>The conversation that asks for a revision: the critique conversation, the critique, then the revision request.</summary>
    public static List<ChatMessage> RevisionMessages(string prompt, string response, ConstitutionalPrinciple principle, string critique)
    {
        ArgumentNullException.ThrowIfNull(critique);
        var messages = CritiqueMessages(prompt, response, principle);
        messages.Add(new ChatMessage(ChatRole.Assistant, critique));
        messages.Add(new ChatMessage(ChatRole.User, principle.RevisionRequest));
        return messages;
    }

    /// <summary>
    /// Critiques and revises <paramref name="response"/> once per principle in <paramref name="principles"/>, in order, each step
    /// revising the previous revision. An empty revision keeps the previous text (a model that says nothing changes nothing).
    /// </summary>
    public static async Task<CaiRevision> ReviseAsync(IChatClient feedbackModel, string prompt, string response,
        IReadOnlyList<ConstitutionalPrinciple> principles, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(feedbackModel);
        ArgumentNullException.ThrowIfNull(principles);
        var steps = new List<CritiqueRevisionStep>(principles.Count);
        string current = response;
        foreach (var principle in principles)
        {
            var critique = (await feedbackModel.GetResponseAsync(CritiqueMessages(prompt, current, principle), options, cancellationToken).ConfigureAwait(false)).Text?.Trim() ?? "";
            var revised = (await feedbackModel.GetResponseAsync(RevisionMessages(prompt, current, principle, critique), options, cancellationToken).ConfigureAwait(false)).Text?.Trim() ?? "";
            if (revised.Length > 0) current = revised;
            steps.Add(new CritiqueRevisionStep(principle.Id, critique, current));
        }
        return new CaiRevision(prompt, response, steps);
    }

    /// <summary>
    /// SL-CAI data collection: for each prompt, a response from <paramref name="policy"/> (seed <see cref="SlCaiOptions.Seed"/> + i),
    /// then <see cref="SlCaiOptions.Rounds"/> critique–revision steps by <paramref name="feedbackModel"/>, each under a principle
    /// drawn from <paramref name="constitution"/>. Results come back in prompt order.
    /// </summary>
    public static async Task<IReadOnlyList<CaiRevision>> CollectAsync(IChatClient policy, IChatClient feedbackModel, IReadOnlyList<string> prompts,
        Constitution constitution, SlCaiOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(feedbackModel);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(constitution);
        var o = options ?? new SlCaiOptions();
        if (o.Rounds < 1) throw new ArgumentOutOfRangeException(nameof(options), o.Rounds, "SlCaiOptions.Rounds must be at least 1 (one critique and one revision).");
        if (o.MaxConcurrency < 1) throw new ArgumentOutOfRangeException(nameof(options), o.MaxConcurrency, "SlCaiOptions.MaxConcurrency must be at least 1.");
        var rng = new Random(o.Seed);
        var drawn = prompts.Select(_ => Enumerable.Range(0, o.Rounds).Select(_ => constitution.Sample(rng)).ToArray()).ToArray();
        return await Parallel(prompts.Count, o.MaxConcurrency, async i =>
        {
            var generation = o.Generation.Clone();
            generation.Seed = o.Seed + i;
            var response = (await policy.GetResponseAsync([new ChatMessage(ChatRole.User, prompts[i])], generation, cancellationToken).ConfigureAwait(false)).Text ?? "";
            return await ReviseAsync(feedbackModel, prompts[i], response.Trim(), drawn[i], o.Feedback, cancellationToken).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A chat exchange as SFT/DPO token ids: the prompt formatted by <paramref name="template"/> as one user turn with the
    /// generation prompt (with the tokenizer's BOS in front when it has one), and the completion (plus EOS when
    /// <paramref name="addEos"/>), so training sees exactly what a <see cref="HookedTransformerChatClient"/> with that template feeds the model.
    /// </summary>
    public static (IReadOnlyList<long> Prompt, IReadOnlyList<long> Completion) ToTokens(ITokenizer tokenizer, ChatTemplate template, string prompt, string completion, bool addEos = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        var p = new List<long>();
        if (tokenizer.BosTokenId is int bos) p.Add(bos);
        p.AddRange(tokenizer.Encode(template.Format([new ChatMessage(ChatRole.User, prompt)])).Select(t => (long)t));
        var c = tokenizer.Encode(completion).Select(t => (long)t).ToList();
        if (addEos)
        {
            if (tokenizer.EosTokenId is not int eos)
                throw new ArgumentException("addEos is true but the tokenizer has no EOS token; pass addEos: false or use a tokenizer with an EosTokenId.", nameof(tokenizer));
            c.Add(eos);
        }
        if (p.Count == 0) throw new ArgumentException("The formatted prompt has no tokens and the tokenizer no BOS; the first completion token needs something to be predicted from.", nameof(prompt));
        if (c.Count == 0) throw new ArgumentException($"The completion for prompt '{prompt}' is empty; drop the example or keep the EOS (addEos: true).", nameof(completion));
        return (p, c);
    }

    /// <summary>The SL-CAI fine-tuning set: (prompt, final revision) as token ids (see <see cref="ToTokens"/>).</summary>
    public static List<(IReadOnlyList<long> Prompt, IReadOnlyList<long> Completion)> ToSftExamples(IEnumerable<CaiRevision> revisions, ITokenizer tokenizer, ChatTemplate template) =>
        revisions.Select(r => ToTokens(tokenizer, template, r.Prompt, r.Revision)).ToList();

    internal static async Task<T[]> Parallel<T>(int count, int maxConcurrency, Func<int, Task<T>> work, CancellationToken cancellationToken)
    {
        var results = new T[count];
        using var gate = new SemaphoreSlim(maxConcurrency, maxConcurrency);
        var tasks = Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try { results[i] = await work(i).ConfigureAwait(false); }
            finally { gate.Release(); }
        }).ToList();
        await Task.WhenAll(tasks).ConfigureAwait(false);
        return results;
    }
}
