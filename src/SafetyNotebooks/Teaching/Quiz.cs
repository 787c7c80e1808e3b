using System.Security.Cryptography;
using System.Text;
using SafetyNotebooks.Evaluation;

namespace SafetyNotebooks.Teaching;

/// <summary>One multiple-choice question of a <see cref="Quiz"/> bank (a YAML file under <c>data/quiz/</c>).</summary>
public sealed class QuizQuestion
{
    /// <summary>Short id used in notebooks, e.g. <c>q1-rlhf-vs-dpo</c>.</summary>
    public string Id { get; set; } = "";
    /// <summary>Where the question comes from (e.g. "career guide §10 Q1") and the lesson that teaches it.</summary>
    public string Source { get; set; } = "";
    /// <summary>The question.</summary>
    public string Question { get; set; } = "";
    /// <summary>Options keyed by letter (A, B, C, …).</summary>
    public Dictionary<string, string> Options { get; set; } = new();
    /// <summary><see cref="Quiz.AnswerHash"/> of the correct letter, so the question file does not show the answer.</summary>
    public string AnswerSha256 { get; set; } = "";
    /// <summary>Shown once the question is answered correctly.</summary>
    public string Explanation { get; set; } = "";
    /// <summary>Shown after a wrong answer (without giving the letter away).</summary>
    public string Hint { get; set; } = "";
}

/// <summary>The YAML layout of a quiz bank: <c>title</c> and a list of <c>questions</c>.</summary>
public sealed class QuizFile
{
    /// <summary>Title of the bank.</summary>
    public string Title { get; set; } = "";
    /// <summary>The questions, in order.</summary>
    public List<QuizQuestion> Questions { get; set; } = new();
}

/// <summary>
/// Multiple-choice questions graded in a notebook cell, the way the lessons' <see cref="Exercises"/> grade code. A bank is a
/// YAML file (read with <see cref="SafeYaml"/>) whose correct answers are stored only as salted SHA-256 hashes, so the question
/// file and a learner edition of the notebook (where the learner's answer sits between <c>// BEGIN SOLUTION</c> lines) do not
/// give answers away; the explanation appears once the answer is right. Results print as ✓ lines and failures throw
/// <see cref="CheckFailedException"/> like every other check, so the headless runner and <c>grade</c> see them.
/// <para>Why hashes rather than plain answers: nbgrader and otter-grader keep answers out of the student's copy; a hash lets the
/// one file serve both editions. It hides answers from a casual reader, not from someone who tries every letter — it is a
/// self-study quiz, not an exam.</para>
/// </summary>
public sealed class Quiz
{
    readonly Dictionary<string, QuizQuestion> _byId;

    /// <summary>Where results go; null (the default) means the current <see cref="Console.Out"/>.</summary>
    public static TextWriter? Out { get; set; }

    /// <summary>The bank's title.</summary>
    public string Title { get; }

    /// <summary>The questions, in file order.</summary>
    public IReadOnlyList<QuizQuestion> Questions { get; }

    Quiz(QuizFile file, string path)
    {
        Title = file.Title;
        Questions = file.Questions;
        _byId = new Dictionary<string, QuizQuestion>(StringComparer.Ordinal);
        for (int i = 0; i < file.Questions.Count; i++)
        {
            var q = file.Questions[i];
            string where = $"{path}: question {i + 1}" + (q.Id.Length > 0 ? $" ('{q.Id}')" : "");
            if (string.IsNullOrWhiteSpace(q.Id)) throw new InvalidDataException($"{where} has no 'id'; give every question a short unique id.");
            if (!_byId.TryAdd(q.Id, q)) throw new InvalidDataException($"{where}: the id '{q.Id}' is used twice; ids must be unique.");
            if (string.IsNullOrWhiteSpace(q.Question)) throw new InvalidDataException($"{where} has no 'question' text.");
            if (q.Options.Count < 2) throw new InvalidDataException($"{where} needs at least two 'options' (A, B, …).");
            if (q.Options.Keys.FirstOrDefault(k => k.Length != 1 || !char.IsAsciiLetterUpper(k[0])) is { } bad)
                throw new InvalidDataException($"{where}: option key '{bad}' is not a single capital letter (A, B, C, …).");
            if (q.AnswerSha256.Length != 64)
                throw new InvalidDataException($"{where}: 'answer_sha256' must be the 64-hex-digit Quiz.AnswerHash(id, letter) of the correct letter.");
            if (!q.Options.Keys.Any(k => AnswerHash(q.Id, k) == q.AnswerSha256))
                throw new InvalidDataException($"{where}: 'answer_sha256' matches none of its options; recompute it with Quiz.AnswerHash(\"{q.Id}\", letter).");
            if (string.IsNullOrWhiteSpace(q.Explanation)) throw new InvalidDataException($"{where} has no 'explanation'.");
        }
    }

    /// <summary>Loads a quiz bank (see the class summary); malformed files give one error naming the file and the question.</summary>
    public static Quiz Load(string path) => new(SafeYaml.Load<QuizFile>(path, "Quiz file"), path);

    /// <summary>The stored form of an answer: SHA-256 (hex, lower case) of <c>"safety-notebooks-quiz:{id}:{LETTER}"</c>.</summary>
    public static string AnswerHash(string id, string letter) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"safety-notebooks-quiz:{id}:{letter.Trim().ToUpperInvariant()}")));

    /// <summary>The question with its id.</summary>
    public QuizQuestion this[string id] => _byId.TryGetValue(id, out var q) ? q
        : throw new KeyNotFoundException($"No quiz question '{id}'. Questions: {string.Join(", ", _byId.Keys)}.");

    /// <summary>The question and its options as text, for a notebook cell to display.</summary>
    public string Ask(string id)
    {
        var q = this[id];
        var sb = new StringBuilder().Append(q.Id).Append(" — ").AppendLine(q.Question.Trim());
        foreach (var (k, v) in q.Options.OrderBy(kv => kv.Key, StringComparer.Ordinal)) sb.Append("  ").Append(k).Append(") ").AppendLine(v.Trim());
        if (q.Source.Length > 0) sb.Append("  (").Append(q.Source.Trim()).Append(')');
        return sb.ToString().TrimEnd();
    }

    /// <summary>
    /// Grades the letter <paramref name="answer"/> returns; a function that still throws <see cref="NotImplementedException"/>
    /// (a learner edition's unanswered question) counts as "no answer yet".
    /// </summary>
    public bool Answer(string id, Func<string?> answer)
    {
        string? letter;
        try { letter = answer(); }
        catch (NotImplementedException) { letter = null; }
        return Answer(id, letter);
    }

    /// <summary>
    /// Grades an answer (a letter). Right: prints "✓ id" and the explanation, returns true. Wrong or not given: throws
    /// <see cref="CheckFailedException"/> with the hint (never the letter).
    /// </summary>
    public bool Answer(string id, string? letter)
    {
        var q = this[id];
        if (string.IsNullOrWhiteSpace(letter))
            throw new CheckFailedException($"✗ {id}: no answer yet — set the answer to one of {string.Join(", ", q.Options.Keys)} and run this cell again.");
        var l = letter.Trim().ToUpperInvariant();
        if (!q.Options.ContainsKey(l))
            throw new CheckFailedException($"✗ {id}: '{letter}' is not one of the options {string.Join(", ", q.Options.Keys)}.");
        if (AnswerHash(id, l) != q.AnswerSha256)
            throw new CheckFailedException($"✗ {id}: {l} is not the best answer." + (q.Hint.Length > 0 ? $"\n  hint:     {q.Hint.Trim()}" : ""));
        (Out ?? Console.Out).WriteLine($"✓ {id}: {l} is right. {q.Explanation.Trim()}");
        return true;
    }
}
