using SafetyNotebooks.Teaching;
using Xunit;

namespace SafetyNotebooks.Tests.Teaching;

public class QuizTests
{
    static string Bank => Path.Combine(TestPaths.RepoRoot, "data", "quiz", "career-guide.yaml");

    static string Write(string yaml)
    {
        var path = Path.Combine(Path.GetTempPath(), $"quiz-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    const string DemoHash = "17428b1ac760461308d3b4a0e04b1fc269f46a583602b6725ff658d3f4a08775"; // Python: sha256(b"safety-notebooks-quiz:demo:B")

    static string Demo(string id = "demo", string hash = DemoHash, string extra = "") => $"""
        title: t
        questions:
          - id: {id}
            question: Which?
            options:
              A: first
              B: second
            answer_sha256: {hash}
            explanation: Because the second is right.
            hint: Not the first thing you see.
        {extra}
        """;

    [Fact]
    public void Answer_hash_matches_sha256_computed_by_another_implementation()
    {
        Assert.Equal(DemoHash, Quiz.AnswerHash("demo", "B"));
        Assert.Equal(DemoHash, Quiz.AnswerHash("demo", " b "));   // letters are trimmed and upper-cased
    }

    [Fact]
    public void A_right_answer_prints_a_tick_and_the_explanation()
    {
        var quiz = Quiz.Load(Write(Demo()));
        var sw = new StringWriter();
        Quiz.Out = sw;
        try { Assert.True(quiz.Answer("demo", "b")); }
        finally { Quiz.Out = null; }
        Assert.Equal("✓ demo: B is right. Because the second is right.", sw.ToString().Trim());
    }

    [Fact]
    public void A_wrong_answer_fails_with_the_hint_and_without_the_right_letter()
    {
        var quiz = Quiz.Load(Write(Demo()));
        var e = Assert.Throws<CheckFailedException>(() => quiz.Answer("demo", "A"));
        Assert.Contains("A is not the best answer", e.Message);
        Assert.Contains("Not the first thing you see.", e.Message);
        Assert.DoesNotContain("second", e.Message);
        Assert.Contains("no answer yet", Assert.Throws<CheckFailedException>(() => quiz.Answer("demo", (string?)null)).Message);
        Assert.Contains("no answer yet", Assert.Throws<CheckFailedException>(() => quiz.Answer("demo", () => throw new NotImplementedException())).Message);
        Assert.Contains("not one of the options A, B", Assert.Throws<CheckFailedException>(() => quiz.Answer("demo", "E")).Message);
    }

    [Fact]
    public void Malformed_banks_name_the_file_and_the_question()
    {
        var badHash = Write(Demo(hash: new string('0', 64)));
        var e = Assert.Throws<InvalidDataException>(() => Quiz.Load(badHash));
        Assert.Contains(badHash, e.Message);
        Assert.Contains("question 1 ('demo')", e.Message);
        Assert.Contains("matches none of its options", e.Message);

        var dup = Write(Demo(extra: $"""
              - id: demo
                question: Again?
                options: {"{"} A: x, B: y {"}"}
                answer_sha256: {DemoHash}
                explanation: e
            """));
        Assert.Contains("used twice", Assert.Throws<InvalidDataException>(() => Quiz.Load(dup)).Message);
        Assert.Contains("No quiz question 'nope'", Assert.Throws<KeyNotFoundException>(() => Quiz.Load(Write(Demo()))["nope"]).Message);
    }

    [Fact]
    public void The_shipped_bank_loads_and_covers_the_guide_quiz_and_spreads_its_answers()
    {
        var quiz = Quiz.Load(Bank);
        Assert.Equal(5, quiz.Questions.Count(q => q.Source.Contains("§10")));          // the guide's quiz has five questions
        Assert.True(quiz.Questions.Count(q => q.Source.Contains("§8")) >= 5);        // and a set of its interview questions
        // Each answer hash matches exactly one option, and the right letters are not all the same.
        var letters = quiz.Questions.Select(q => Assert.Single(q.Options.Keys, k => Quiz.AnswerHash(q.Id, k) == q.AnswerSha256)).ToList();
        Assert.True(letters.Distinct().Count() >= 3, string.Join(",", letters));
        Assert.Contains("A)", quiz.Ask(quiz.Questions[0].Id));
    }
}
