using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;
using SafetyNotebooks.Chat;
using SafetyNotebooks.Tokenization;

namespace SafetyNotebooks.Alignment;

/// <summary>What an AI feedback model chose between options (A) and (B).</summary>
public enum AiChoice
{
    /// <summary>No usable choice: a tie, an answer that names neither option, two identical samples, or two orders that disagree.</summary>
    None,
    /// <summary>Option (A), the first response.</summary>
    A,
    /// <summary>Option (B), the second response.</summary>
    B,
}

/// <summary>One AI comparison of two responses to a prompt under one principle (RL-CAI's feedback label).</summary>
/// <param name="Prompt">The user's prompt.</param>
/// <param name="ResponseA">The first sample, shown as option (A).</param>
/// <param name="ResponseB">The second sample, shown as option (B).</param>
/// <param name="PrincipleId">The principle the question was asked under.</param>
/// <param name="Choice">The final choice (with both orders asked, the agreed one, or <see cref="AiChoice.None"/>).</param>
/// <param name="RawAnswer">The feedback model's answer text (both answers, separated by " | ", when both orders were asked).</param>
public sealed record AiJudgement(string Prompt, string ResponseA, string ResponseB, string PrincipleId, AiChoice Choice, string RawAnswer)
{
    /// <summary>The preferred response, or null when there is no usable choice.</summary>
    public string? Chosen => Choice switch { AiChoice.A => ResponseA, AiChoice.B => ResponseB, _ => null };
    /// <summary>The other response, or null when there is no usable choice.</summary>
    public string? Rejected => Choice switch { AiChoice.A => ResponseB, AiChoice.B => ResponseA, _ => null };
}

/// <summary>Settings of <see cref="Rlaif.CollectAsync"/>.</summary>
public sealed record RlaifOptions
{
    /// <summary>Sampling of the two responses per prompt; seeds are <see cref="Seed"/> + 2i and <see cref="Seed"/> + 2i + 1. Default temperature 1.</summary>
    public ChatOptions Generation { get; init; } = new() { Temperature = 1f };
    /// <summary>Settings of the feedback model's answer. Default greedy, at most 16 tokens.</summary>
    public ChatOptions Judge { get; init; } = new() { Temperature = 0f, MaxOutputTokens = 16 };
    /// <summary>Ask each comparison in both orders and keep only agreeing answers (guards against a judge's position bias; twice the calls). Default false.</summary>
    public bool BothOrders { get; init; }
    /// <summary>Seed of the principle draws and of the samples. Default 0.</summary>
    public int Seed { get; init; }
    /// <summary>Prompts processed at once. Default 1.</summary>
    public int MaxConcurrency { get; init; } = 1;
}

/// <summary>
/// RL from AI feedback (RL-CAI, Bai et al. 2022; RLAIF): the policy samples two responses per prompt; a feedback model is
/// asked, under a principle drawn from the constitution, which of (A) and (B) follows it better; its answers become
/// preference pairs in the library's JSONL format (<see cref="PreferenceRecord"/>, TRL's prompt/chosen/rejected), ready for
/// DPO (<see cref="DpoObjective"/>) or for a reward model and PPO (<see cref="RewardModelObjective"/>, <see cref="PpoTrainer"/>).
/// Bai et al. use the feedback model's probabilities of (A) and (B) as soft labels; chat servers rarely expose them, so
/// this keeps hard labels and drops answers that name neither option.
/// </summary>
public static partial class Rlaif
{
    /// <summary>The comparison question: the conversation, the principle's comparison request and the two options.</summary>
    public static string ComparisonPrompt(ConstitutionalPrinciple principle, string prompt, string responseA, string responseB)
    {
        ArgumentNullException.ThrowIfNull(principle);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(responseA);
        ArgumentNullException.ThrowIfNull(responseB);
        return "Here is a request a user made to an AI assistant.\n\n" +
               $"User: {OneLine(prompt)}\n\n" +
               $"{principle.ComparisonRequest}\n" +
               $"(A) {OneLine(responseA)}\n" +
               $"(B) {OneLine(responseB)}\n\n" +
               "Answer with (A) or (B) only.";
    }

    static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

    [GeneratedRegex(@"\(\s*([AB])\s*\)", RegexOptions.IgnoreCase)]
    private static partial Regex Parenthesized();
    [GeneratedRegex(@"^(?:the\s+)?(?:answer|option|response)?\s*(?:is)?\s*[:\-]?\s*\**\s*([AB])\**(?=$|[.):,\n])", RegexOptions.IgnoreCase)]
    private static partial Regex Leading();

    /// <summary>
    /// Reads the feedback model's answer: the first parenthesized <c>(A)</c>/<c>(B)</c>, or a bare A or B at the start followed by
    /// nothing or punctuation ("B", "A.", "Answer: B", "Option A", but not "A response …"); anything else (a tie, both or neither) is <see cref="AiChoice.None"/>.
    /// </summary>
    public static AiChoice ParseChoice(string? answer)
    {
        if (string.IsNullOrWhiteSpace(answer)) return AiChoice.None;
        var text = answer.Trim();
        var m = Parenthesized().Match(text);
        if (!m.Success) m = Leading().Match(text);
        if (!m.Success) return AiChoice.None;
        return char.ToUpperInvariant(m.Groups[1].Value[0]) == 'A' ? AiChoice.A : AiChoice.B;
    }

    /// <summary>
    /// Asks <paramref name="judge"/> which response follows <paramref name="principle"/> better. With
    /// <paramref name="bothOrders"/> it also asks with the options swapped and keeps the choice only when both answers agree.
    /// Identical responses are not asked about (choice <see cref="AiChoice.None"/>).
    /// </summary>
    public static async Task<AiJudgement> JudgeAsync(IChatClient judge, ConstitutionalPrinciple principle, string prompt, string responseA, string responseB,
        bool bothOrders = false, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(judge);
        ArgumentNullException.ThrowIfNull(principle);
        if (string.Equals(responseA.Trim(), responseB.Trim(), StringComparison.Ordinal))
            return new AiJudgement(prompt, responseA, responseB, principle.Id, AiChoice.None, "(identical responses, not asked)");
        options ??= new ChatOptions { Temperature = 0f, MaxOutputTokens = 16 };
        var first = (await judge.GetResponseAsync([new ChatMessage(ChatRole.User, ComparisonPrompt(principle, prompt, responseA, responseB))], options, cancellationToken).ConfigureAwait(false)).Text ?? "";
        var choice = ParseChoice(first);
        if (!bothOrders) return new AiJudgement(prompt, responseA, responseB, principle.Id, choice, first.Trim());
        var second = (await judge.GetResponseAsync([new ChatMessage(ChatRole.User, ComparisonPrompt(principle, prompt, responseB, responseA))], options, cancellationToken).ConfigureAwait(false)).Text ?? "";
        var swapped = ParseChoice(second) switch { AiChoice.A => AiChoice.B, AiChoice.B => AiChoice.A, _ => AiChoice.None };
        return new AiJudgement(prompt, responseA, responseB, principle.Id, choice == swapped ? choice : AiChoice.None, first.Trim() + " | " + second.Trim());
    }

    /// <summary>
    /// RLAIF data collection: for each prompt two samples from <paramref name="policy"/>, one principle drawn from
    /// <paramref name="constitution"/>, and the judgement of <paramref name="judge"/>. Results come back in prompt order,
    /// including the unusable ones (count them: a judge that often names neither option is telling you something).
    /// </summary>
    public static async Task<IReadOnlyList<AiJudgement>> CollectAsync(IChatClient policy, IChatClient judge, IReadOnlyList<string> prompts,
        Constitution constitution, RlaifOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(judge);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(constitution);
        var o = options ?? new RlaifOptions();
        if (o.MaxConcurrency < 1) throw new ArgumentOutOfRangeException(nameof(options), o.MaxConcurrency, "RlaifOptions.MaxConcurrency must be at least 1.");
        var rng = new Random(o.Seed);
        var drawn = prompts.Select(_ => constitution.Sample(rng)).ToArray();
        return await ConstitutionalAi.Parallel(prompts.Count, o.MaxConcurrency, async i =>
        {
            async Task<string> Sample(int seed)
            {
                var g = o.Generation.Clone();
                g.Seed = seed;
                return ((await policy.GetResponseAsync([new ChatMessage(ChatRole.User, prompts[i])], g, cancellationToken).ConfigureAwait(false)).Text ?? "").Trim();
            }
            var a = await Sample(o.Seed + 2 * i).ConfigureAwait(false);
            var b = await Sample(o.Seed + 2 * i + 1).ConfigureAwait(false);
            return await JudgeAsync(judge, drawn[i], prompts[i], a, b, o.BothOrders, o.Judge, cancellationToken).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The usable judgements as preference records (<see cref="PreferenceJsonl"/>'s format): chosen = the response the judge
    /// picked, rejected = the other; the labeler is <paramref name="labeler"/> (name the feedback model), the source names the principle.
    /// </summary>
    public static List<PreferenceRecord> ToPreferenceRecords(IEnumerable<AiJudgement> judgements, string labeler, DateTimeOffset labeledAt)
    {
        ArgumentNullException.ThrowIfNull(judgements);
        ArgumentException.ThrowIfNullOrWhiteSpace(labeler);
        return judgements.Where(j => j.Choice != AiChoice.None)
            .Select(j => new PreferenceRecord(j.Prompt, j.Chosen!, j.Rejected!, labeler, labeledAt, $"rlaif:{j.PrincipleId}"))
            .ToList();
    }

    /// <summary>
    /// A preference record as token ids for DPO or a reward model, with the prompt formatted by <paramref name="template"/>
    /// exactly as <see cref="ConstitutionalAi.ToTokens"/> formats it for SFT (EOS appended to both completions when <paramref name="addEos"/>).
    /// </summary>
    public static PreferencePair ToPreferencePair(PreferenceRecord record, ITokenizer tokenizer, ChatTemplate template, bool addEos = true)
    {
        ArgumentNullException.ThrowIfNull(record);
        var (prompt, chosen) = ConstitutionalAi.ToTokens(tokenizer, template, record.Prompt, record.Chosen, addEos);
        var (_, rejected) = ConstitutionalAi.ToTokens(tokenizer, template, record.Prompt, record.Rejected, addEos);
        return new PreferencePair(prompt, chosen, rejected);
    }
}
