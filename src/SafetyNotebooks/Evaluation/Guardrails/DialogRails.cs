using System.Globalization;
using System.Text;
using Microsoft.Extensions.AI;

namespace SafetyNotebooks.Evaluation.Guardrails;

/// <summary>One step of a flow: a user intent (canonical form) or a bot message, with the line it was written on.</summary>
public sealed record FlowStep(bool IsUser, string Name, int Line);

/// <summary>A flow: a sequence of user and bot steps (<c>define flow name</c>).</summary>
public sealed record DialogFlow(string Name, IReadOnlyList<FlowStep> Steps, int Line);

/// <summary>
/// A dialog-rail file in a small subset of NeMo Guardrails' Colang 1.0: canonical user forms with example utterances, bot messages
/// and flows. Comments start with <c>#</c>; bodies are indented.
/// <code>
/// define user ask about politics
///   "who should I vote for?"
///   "what do you think of the president?"
///
/// define bot refuse politics
///   "I'm a shopping assistant, so I stay out of politics."
///
/// define flow politics
///   user ask about politics
///   bot refuse politics
/// </code>
/// A flow step naming a bot message that has no <c>define bot</c> is answered by the model (as in NeMo, where the LLM generates
/// undefined bot messages); every user step must name a defined user form. What this subset leaves out: variables, <c>when</c> /
/// <c>else</c> branches, <c>execute</c> actions, subflows.
/// </summary>
public sealed class DialogFlows
{
    /// <summary>Canonical user forms and their example utterances, in file order.</summary>
    public IReadOnlyList<(string Name, IReadOnlyList<string> Examples)> UserForms { get; }
    /// <summary>Bot messages (a form may have several variants; the first one is said, so replies are deterministic).</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> BotMessages { get; }
    /// <summary>Flows in file order.</summary>
    public IReadOnlyList<DialogFlow> Flows { get; }

    DialogFlows(List<(string, IReadOnlyList<string>)> users, Dictionary<string, IReadOnlyList<string>> bots, List<DialogFlow> flows)
    {
        UserForms = users;
        BotMessages = bots;
        Flows = flows;
    }

    /// <summary>Reads a flow file; errors name the file and line.</summary>
    public static DialogFlows Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Dialog flow file '{path}' does not exist.", path);
        var info = new FileInfo(path);
        if (info.Length > 1_000_000) throw new InvalidDataException($"{path}: {info.Length:N0} bytes; a flow file may have at most 1,000,000.");
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(path)); }
        catch (DecoderFallbackException) { throw new InvalidDataException($"{path}: not valid UTF-8; save the flow file as UTF-8."); }
        return Parse(text, path);
    }

    /// <summary>Parses flow-file text; <paramref name="source"/> names it in errors (<c>source:line: problem</c>).</summary>
    public static DialogFlows Parse(string text, string source = "flows")
    {
        var users = new List<(string Name, List<string> Examples, int Line)>();
        var bots = new Dictionary<string, (List<string> Messages, int Line)>(StringComparer.Ordinal);
        var flows = new List<(string Name, List<FlowStep> Steps, int Line)>();
        string? kind = null;                     // "user", "bot", "flow": the open block
        int blockIndex = -1;
        string? botName = null;
        var lines = text.Replace("\r\n", "\n").Split('\n');
        InvalidDataException Error(int line, string message) => new($"{source}:{line}: {message}");

        for (int i = 0; i < lines.Length; i++)
        {
            int n = i + 1;
            string raw = lines[i];
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            bool indented = char.IsWhiteSpace(raw[0]);
            if (!indented)
            {
                var words = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                if (words[0] != "define")
                    throw Error(n, $"expected 'define user|bot|flow ...' at the start of a line, found '{Short(line)}' (block bodies must be indented)");
                if (words.Length < 2 || words[1] is not ("user" or "bot" or "flow" or "subflow"))
                    throw Error(n, $"'define' must be followed by user, bot or flow, found '{Short(line)}'");
                if (words[1] == "subflow") throw Error(n, "subflows are not supported by this Colang subset; write the steps into the flow");
                string name = Name(words[2..]);
                switch (words[1])
                {
                    case "user":
                        if (name.Length == 0) throw Error(n, "'define user' needs a canonical form, e.g. 'define user ask about politics'");
                        int existing = users.FindIndex(u => u.Name == name);
                        if (existing >= 0) throw Error(n, $"user form '{name}' is already defined on line {users[existing].Line}");
                        users.Add((name, new List<string>(), n));
                        blockIndex = users.Count - 1;
                        break;
                    case "bot":
                        if (name.Length == 0) throw Error(n, "'define bot' needs a name, e.g. 'define bot refuse politics'");
                        if (bots.TryGetValue(name, out var b)) throw Error(n, $"bot message '{name}' is already defined on line {b.Line}");
                        bots[name] = (new List<string>(), n);
                        botName = name;
                        break;
                    default:
                        flows.Add((name.Length == 0 ? $"flow at line {n}" : name, new List<FlowStep>(), n));
                        blockIndex = flows.Count - 1;
                        break;
                }
                kind = words[1];
                continue;
            }
            if (kind is null) throw Error(n, $"indented line '{Short(line)}' outside any 'define' block");
            if (kind is "user" or "bot")
            {
                if (line.Length < 2 || line[0] != '"' || line[^1] != '"')
                    throw Error(n, $"expected a quoted {(kind == "user" ? "example utterance" : "bot message")} such as \"hello\", found '{Short(line)}'");
                string quoted = line[1..^1].Replace("\\\"", "\"", StringComparison.Ordinal);
                if (quoted.Trim().Length == 0) throw Error(n, "empty quoted text");
                if (kind == "user") users[blockIndex].Examples.Add(quoted);
                else bots[botName!].Messages.Add(quoted);
                continue;
            }
            var stepWords = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (stepWords[0] is not ("user" or "bot"))
                throw Error(n, $"a flow step must be 'user <form>' or 'bot <message>', found '{Short(line)}'" +
                    (stepWords[0] is "when" or "else" or "execute" or "if" or "do" || stepWords[0].StartsWith('$') ? " (branches, variables and actions are not supported by this Colang subset)" : ""));
            string stepName = Name(stepWords[1..]);
            if (stepName.Length == 0) throw Error(n, $"'{stepWords[0]}' step without a name");
            flows[blockIndex].Steps.Add(new FlowStep(stepWords[0] == "user", stepName, n));
        }

        foreach (var u in users) if (u.Examples.Count == 0) throw Error(u.Line, $"user form '{u.Name}' has no example utterances; add indented quoted lines");
        foreach (var (name, b) in bots) if (b.Messages.Count == 0) throw Error(b.Line, $"bot message '{name}' has no text; add an indented quoted line");
        foreach (var f in flows)
        {
            if (f.Steps.Count == 0) throw Error(f.Line, $"flow '{f.Name}' has no steps");
            if (!f.Steps[0].IsUser) throw Error(f.Steps[0].Line, $"flow '{f.Name}' must start with a user step (flows are triggered by what the user says)");
            foreach (var s in f.Steps.Where(s => s.IsUser && !users.Any(u => u.Name == s.Name)))
                throw Error(s.Line, $"user form '{s.Name}' is not defined; add 'define user {s.Name}' with example utterances");
        }
        if (flows.Count == 0) throw new InvalidDataException($"{source}: no 'define flow' blocks; a dialog rail needs at least one flow.");
        return new DialogFlows(
            users.Select(u => (u.Name, (IReadOnlyList<string>)u.Examples)).ToList(),
            bots.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<string>)kv.Value.Messages, StringComparer.Ordinal),
            flows.Select(f => new DialogFlow(f.Name, f.Steps, f.Line)).ToList());
    }

    static string Name(string[] words) => string.Join(' ', words);
    static string Short(string s) => s.Length > 60 ? s[..60] + "…" : s;
}

/// <summary>
/// Matches a message to the closest canonical user form by the cosine similarity of character n-gram counts (lower-cased, letters
/// and digits only, words padded with spaces) with each example utterance; a form's score is its best example's. Deterministic
/// and model-free, where NeMo embeds the message and retrieves the nearest examples with a sentence-embedding model.
/// </summary>
public sealed class IntentMatcher
{
    readonly List<(string Intent, Dictionary<string, int> Grams, double Norm)> _examples = new();
    /// <summary>The n of the character n-grams.</summary>
    public int N { get; }

    /// <summary>A matcher over <paramref name="forms"/> with character <paramref name="n"/>-grams.</summary>
    public IntentMatcher(IEnumerable<(string Name, IReadOnlyList<string> Examples)> forms, int n = 3)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), "n must be at least 1.");
        N = n;
        foreach (var (name, examples) in forms)
            foreach (var e in examples)
            {
                var g = Grams(e, n);
                _examples.Add((name, g, Norm(g)));
            }
    }

    /// <summary>Character n-gram counts of the normalized text (" who should i vote " → " wh", "who", "ho ", …).</summary>
    public static Dictionary<string, int> Grams(string text, int n = 3)
    {
        var sb = new StringBuilder(" ");
        bool space = true;
        string normalized;
        try { normalized = WellFormed(text).Normalize(NormalizationForm.FormKC); }
        catch (ArgumentException) { normalized = text; }     // code points normalization rejects (noncharacters): match as written
        foreach (var c in normalized)
        {
            if (char.IsLetterOrDigit(c)) { sb.Append(char.ToLowerInvariant(c)); space = false; }
            else if (!space) { sb.Append(' '); space = true; }
        }
        if (!space) sb.Append(' ');
        var s = sb.ToString();
        var grams = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i + n <= s.Length; i++)
        {
            var g = s.Substring(i, n);
            grams[g] = grams.GetValueOrDefault(g) + 1;
        }
        return grams;
    }

    /// <summary>Replaces unpaired UTF-16 surrogates (which Unicode normalization rejects) with U+FFFD.</summary>
    static string WellFormed(string text)
    {
        char[]? copy = null;
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            if (char.IsSurrogate(text[i])) (copy ??= text.ToCharArray())[i] = '\uFFFD';
        }
        return copy is null ? text : new string(copy);
    }

    /// <summary>Cosine similarity of the two texts' character n-gram count vectors (0 when either has none).</summary>
    public static double Similarity(string a, string b, int n = 3)
    {
        var ga = Grams(a, n);
        var gb = Grams(b, n);
        return Cosine(ga, Norm(ga), gb, Norm(gb));
    }

    /// <summary>Every form's score for <paramref name="text"/> (its best example's similarity), best first; ties keep file order.</summary>
    public IReadOnlyList<(string Intent, double Score)> Scores(string text)
    {
        var g = Grams(text, N);
        double norm = Norm(g);
        var best = new Dictionary<string, double>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var (intent, grams, en) in _examples)
        {
            double s = Cosine(g, norm, grams, en);
            if (!best.TryGetValue(intent, out var old)) { order.Add(intent); best[intent] = s; }
            else if (s > old) best[intent] = s;
        }
        return order.Select((i, k) => (i, best[i], k)).OrderByDescending(t => t.Item2).ThenBy(t => t.k).Select(t => (t.i, t.Item2)).ToList();
    }

    static double Norm(Dictionary<string, int> g) => Math.Sqrt(g.Values.Sum(v => (double)v * v));

    static double Cosine(Dictionary<string, int> a, double na, Dictionary<string, int> b, double nb)
    {
        if (na == 0 || nb == 0) return 0;
        if (a.Count > b.Count) (a, b) = (b, a);
        double dot = 0;
        foreach (var (k, v) in a) if (b.TryGetValue(k, out var w)) dot += (double)v * w;
        return dot / (na * nb);
    }
}

/// <summary>What the dialog rail decided for the current user turn.</summary>
/// <param name="Intent">The matched user form, or null below the threshold.</param>
/// <param name="Score">Its similarity.</param>
/// <param name="Flow">The flow that continues, or null.</param>
/// <param name="BotSteps">The bot steps the flow takes next.</param>
/// <param name="Reply">The canned reply (defined bot messages, joined by a blank line), or null when the model answers.</param>
public sealed record DialogTurn(string? Intent, double Score, string? Flow, IReadOnlyList<string> BotSteps, string? Reply);

/// <summary>
/// Dialog rails: the user's message is mapped to a canonical form (<see cref="IntentMatcher"/>, similarity ≥ the threshold), and the
/// conversation so far is matched against the flows (<see cref="DialogFlows"/>). The flow whose steps agree with the longest stretch
/// of recent history (earlier user turns mapped to their forms, earlier assistant turns to the bot messages they are) and whose next
/// step is this user form decides what follows: defined bot messages are said verbatim (the model is not called); undefined ones
/// leave the answer to the model. Multi-turn state is the conversation itself (as NeMo rebuilds it from the event history), so one
/// rail serves many conversations and stays thread-safe. With <c>unmatched: refuse</c>, only the paths the flows allow are open:
/// any other turn is refused.
/// </summary>
public sealed class DialogRail : IContextRail
{
    readonly IntentMatcher _matcher;
    readonly Dictionary<string, string> _botByText;

    /// <summary>The flows.</summary>
    public DialogFlows Flows { get; }
    /// <summary>Least similarity for a message to count as a user form.</summary>
    public double Threshold { get; }
    /// <summary>True: a turn no flow allows is refused (only the flows' paths are open). False: the model answers it (NeMo's default).</summary>
    public bool RefuseUnmatched { get; }

    /// <summary>A dialog rail over <paramref name="flows"/>.</summary>
    public DialogRail(DialogFlows flows, double threshold = 0.5, bool refuseUnmatched = false, int ngram = 3)
    {
        if (threshold is < 0 or > 1 || double.IsNaN(threshold)) throw new ArgumentOutOfRangeException(nameof(threshold), "The similarity threshold must be in [0, 1].");
        Flows = flows;
        Threshold = threshold;
        RefuseUnmatched = refuseUnmatched;
        _matcher = new IntentMatcher(flows.UserForms, ngram);
        _botByText = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, messages) in flows.BotMessages)
            foreach (var m in messages) _botByText.TryAdd(m.Trim(), name);
    }

    /// <inheritdoc/>
    public string Name => "dialog";

    /// <summary>The user form of <paramref name="text"/> and its score, or (null, best score) below the threshold.</summary>
    public (string? Intent, double Score) Classify(string text)
    {
        var best = _matcher.Scores(text).FirstOrDefault();
        return best.Intent is not null && best.Score >= Threshold ? (best.Intent, best.Score) : (null, best.Score);
    }

    /// <summary>Decides the turn whose last user message is the last of <paramref name="conversation"/> (system messages are ignored).</summary>
    public DialogTurn Decide(IReadOnlyList<ChatMessage> conversation)
    {
        var turns = conversation.Where(m => m.Role == ChatRole.User || m.Role == ChatRole.Assistant).ToList();
        int last = turns.FindLastIndex(m => m.Role == ChatRole.User);
        if (last < 0) return new DialogTurn(null, 0, null, [], null);
        // History events before the current message: ("user", form or null) and ("bot", message name or null when generated).
        var history = new List<(bool IsUser, string? Name)>();
        for (int i = 0; i < last; i++)
        {
            var t = turns[i].Text ?? "";
            history.Add(turns[i].Role == ChatRole.User ? (true, Classify(t).Intent) : (false, _botByText.GetValueOrDefault(t.Trim())));
        }
        var (intent, score) = Classify(turns[last].Text ?? "");
        if (intent is null) return new DialogTurn(null, score, null, [], null);

        DialogFlow? bestFlow = null;
        int bestPos = -1, bestContext = -1;
        foreach (var f in Flows.Flows)
            for (int p = 0; p < f.Steps.Count; p++)
            {
                if (!f.Steps[p].IsUser || f.Steps[p].Name != intent || p > history.Count) continue;
                bool agrees = true;
                for (int k = 0; k < p && agrees; k++)
                {
                    var step = f.Steps[p - 1 - k];
                    var ev = history[history.Count - 1 - k];
                    agrees = step.IsUser == ev.IsUser && (step.Name == ev.Name || (!step.IsUser && ev.Name is null && !Flows.BotMessages.ContainsKey(step.Name)));
                }
                if (agrees && p > bestContext) (bestFlow, bestPos, bestContext) = (f, p, p);
            }
        if (bestFlow is null) return new DialogTurn(intent, score, null, [], null);
        var bot = bestFlow.Steps.Skip(bestPos + 1).TakeWhile(s => !s.IsUser).Select(s => s.Name).ToList();
        string? reply = bot.Count > 0 && bot.All(Flows.BotMessages.ContainsKey) ? string.Join("\n\n", bot.Select(b => Flows.BotMessages[b][0])) : null;
        return new DialogTurn(intent, score, bestFlow.Name, bot, reply);
    }

    /// <summary>A single-turn conversation (as <c>safety-notebooks guard</c> screens texts).</summary>
    public RailCheck Check(string text) => Check([new ChatMessage(ChatRole.User, text)]);

    /// <summary>Checks the conversation's last user turn: triggers with the canned reply, or (with <see cref="RefuseUnmatched"/>) without one.</summary>
    public RailCheck Check(IReadOnlyList<ChatMessage> conversation)
    {
        var d = Decide(conversation);
        string form = d.Intent is null ? $"no user form (best similarity {d.Score.ToString("0.00", CultureInfo.InvariantCulture)} < {Threshold.ToString(CultureInfo.InvariantCulture)})" : $"user {d.Intent} ({d.Score.ToString("0.00", CultureInfo.InvariantCulture)})";
        if (d.Reply is not null) return new RailCheck(true, $"{form}; flow '{d.Flow}' answers with bot {string.Join(", bot ", d.BotSteps)}", Reply: d.Reply);
        if (d.Flow is null && RefuseUnmatched) return new RailCheck(true, $"{form}; no flow allows this turn");
        return RailCheck.Pass;
    }

    /// <inheritdoc/>
    public Task<RailCheck> CheckAsync(RailContext context, string text, CancellationToken cancellationToken = default)
    {
        var conversation = context.Messages.ToList();
        int last = conversation.FindLastIndex(m => m.Role == ChatRole.User);
        if (last >= 0) conversation[last] = new ChatMessage(ChatRole.User, text);     // the text as earlier rails left it
        else conversation.Add(new ChatMessage(ChatRole.User, text));
        return Task.FromResult(Check(conversation));
    }
}
