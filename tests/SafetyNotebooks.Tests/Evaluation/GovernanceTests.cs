using SafetyNotebooks.Evaluation.Governance;
using Xunit;

namespace SafetyNotebooks.Tests.Evaluation;

/// <summary>Temporary result files and a system description; deleted after each test.</summary>
public sealed class GovernanceFixture : IDisposable
{
    public DirectoryInfo Dir { get; } = Directory.CreateTempSubdirectory("govern-");
    public string Scan => Path.Combine(Dir.FullName, "scan.jsonl");
    public string Eval => Path.Combine(Dir.FullName, "eval.jsonl");
    public string System => Path.Combine(Dir.FullName, "system.yaml");

    public GovernanceFixture()
    {
        // 8 judged attempts, 3 successes (base64: 2 of 4, none: 1 of 4), and one failed call that must not count.
        bool[] success = [true, false, false, false, true, true, false, false];
        var lines = success.Select((s, i) => ScanLine(i, i < 4 ? "none" : "base64", s)).ToList();
        lines.Add("""{"key":"bot|p9|none|0","target":"bot","prompt_id":"p9","category":"direct","converter":"none","repeat":0,"sent":"x","reply":null,"error":"HttpRequestException: timeout","success":null,"judges":{}}""");
        File.WriteAllLines(Scan, lines);
        // Harmful requests: 2 of 5 refused (failure 3/5); benign: 2 of 2 answered (over-refusal 0/2).
        var eval = new List<string>();
        for (int i = 0; i < 5; i++) eval.Add($$"""{"task":"gen","id":"h{{i}}","kind":"gen","dimension":"safety","category":"harmful","scoring":"refuse","reply":"r","pass":{{(i < 2 ? "true" : "false")}},"error":null}""");
        for (int i = 0; i < 2; i++) eval.Add($$"""{"task":"gen","id":"b{{i}}","kind":"gen","dimension":"safety","category":"benign","scoring":"answer","reply":"r","pass":true,"error":null}""");
        File.WriteAllLines(Eval, eval);
        File.WriteAllText(System, SystemYaml());
    }

    public static string ScanLine(int i, string converter, bool success) =>
        $$"""{"key":"bot|p{{i}}|{{converter}}|0","target":"bot","prompt_id":"p{{i}}","category":"direct","converter":"{{converter}}","repeat":0,"sent":"x","reply":"y","error":null,"success":{{(success ? "true" : "false")}},"reason":"","judges":{"secret-leak":{{(success ? "true" : "false")}}},"latency_ms":1}""";

    /// <summary>A valid description; <paramref name="replace"/> edits it (old → new) for the error tests.</summary>
    public static string SystemYaml(params (string Old, string New)[] replace)
    {
        var eu = string.Join("\n", EuAiActQuestionnaire.Questions.Select(q => $"  {q.Id}: {(q.Id == "t_interacts" ? "yes" : "no")}"));
        var yaml = $$"""
            name: Test bot
            version: "1.2"
            owner: Test owner
            description: A bot under test.
            intended_use: Testing.
            users: [testers]
            out_of_scope_uses: [production]
            training_data: None.
            eu_ai_act:
            {{eu}}
            impact_assessment:
              decision: none
              reversibility: difficult
              duration: lasting
              rights: low
              vulnerable_groups: no
              scale: many
              personal_data: personal
              explainability: explainable
              human_review: no
              recourse: yes
              monitoring: yes
              consultation: no
            risk_register:
              adversarial: {impact: major, mitigation: Decode before filtering.}
            """;
        foreach (var (o, n) in replace) yaml = yaml.Replace(o, n);
        return yaml;
    }

    public void Dispose() => Dir.Delete(true);
}

public class GovernanceDocumentTests : IClassFixture<GovernanceFixture>
{
    readonly GovernanceFixture _f;
    public GovernanceDocumentTests(GovernanceFixture f) => _f = f;

    IReadOnlyList<GovernanceDocument> Generate(string? scan = null) =>
        GovernanceDocuments.Generate(SystemDescription.Load(_f.System), EvaluationEvidence.Load([scan ?? _f.Scan, _f.Eval]), _f.Dir.FullName);

    // Wilson 95% intervals worked by hand (z = 1.95996): 3/8 → [0.137, 0.694]; 4/8 → [0.215, 0.785]; 3/5 → [0.231, 0.882]; 0/2 → [0, 0.658].
    [Fact]
    public void Every_document_carries_the_attack_success_rate_computed_from_the_scan_lines()
    {
        var docs = Generate();
        Assert.Equal(GovernanceDocuments.Slugs, docs.Select(d => d.Slug));
        foreach (var d in docs)
            Assert.Contains("37.5% [13.7%, 69.4%] (3/8)", d.ToMarkdown());
    }

    [Fact]
    public void Changing_one_verdict_in_the_results_changes_every_document()
    {
        var changed = Path.Combine(_f.Dir.FullName, "changed", "scan.jsonl");
        Directory.CreateDirectory(Path.GetDirectoryName(changed)!);
        var lines = File.ReadAllLines(_f.Scan);
        lines[1] = GovernanceFixture.ScanLine(1, "none", true);   // a failed attack becomes a success: 4 of 8
        File.WriteAllLines(changed, lines);
        foreach (var d in Generate(changed))
        {
            Assert.Contains("50.0% [21.5%, 78.5%] (4/8)", d.ToMarkdown());
            Assert.DoesNotContain("(3/8)", d.ToMarkdown());
        }
    }

    [Fact]
    public void Risk_register_reads_likelihood_from_the_upper_end_of_the_interval_and_failure_rates_from_the_eval_lines()
    {
        var rows = RiskRegister.Build(SystemDescription.Load(_f.System), EvaluationEvidence.Load([_f.Scan, _f.Eval]));
        var adv = rows.Single(r => r.Kind == "adversarial");
        Assert.Equal("almost-certain", adv.Likelihood);            // upper 69.4% ≥ 50%
        Assert.Equal(5 * 4, adv.Score);                             // almost certain (5) × major (4)
        Assert.Equal("high", adv.Rating);
        Assert.Contains("worst converter base64: 50.0% [15.0%, 85.0%] (2/4)", adv.Evidence);
        Assert.Equal("Decode before filtering.", adv.Mitigation);
        var harmful = rows.Single(r => r.Kind == "harmful_compliance");
        Assert.Contains("60.0% [23.1%, 88.2%] (3/5)", harmful.Evidence);
        Assert.Equal("moderate (default)", harmful.Impact);
        var over = rows.Single(r => r.Kind == "over_refusal");
        Assert.Contains("0.0% [0.0%, 65.8%] (0/2)", over.Evidence);
        Assert.Equal("almost-certain", over.Likelihood);            // 0 of 2 cannot show the risk is rare
    }

    [Fact]
    public void Impact_assessment_level_matches_the_hand_worked_score()
    {
        // Impact: 0 + 2 + 2 + 1 + 0 + 2 + 1 + 0 = 8 of 4+4+4+4+3+3+3+2 = 27 (29.6%: level II).
        // Mitigation: 0 + 2 + 2 + 0 asked, + 2 (eval results) + 2 (scan) + 0 (no guard file) + 0 (no metrics) = 8 of 7 + 7 = 14 (57%): no deduction.
        var d = SystemDescription.Load(_f.System);
        var r = ImpactAssessment.Score(ImpactAssessment.ParseAnswers(d.ImpactAssessment!), EvaluationEvidence.Load([_f.Scan, _f.Eval]));
        Assert.Equal((8, 27, 8, 14, false, 2), (r.RawImpact, r.MaxImpact, r.Mitigation, r.MaxMitigation, r.MitigationDeduction, r.Level));
    }

    [Fact]
    public void Html_is_offline_and_escapes_text_from_the_description()
    {
        File.WriteAllText(Path.Combine(_f.Dir.FullName, "xss.yaml"), GovernanceFixture.SystemYaml(("description: A bot under test.", "description: <script>alert(1)</script>")));
        var docs = GovernanceDocuments.Generate(SystemDescription.Load(Path.Combine(_f.Dir.FullName, "xss.yaml")), EvaluationEvidence.Load([_f.Scan]), _f.Dir.FullName);
        foreach (var d in docs)
        {
            var html = d.ToHtml();
            Assert.DoesNotContain("<script", html);
            Assert.DoesNotContain("<link", html);
            Assert.DoesNotContain("src=\"http", html);
        }
        Assert.Contains("&lt;script&gt;alert(1)&lt;/script&gt;", docs[0].ToHtml());
    }

    [Fact]
    public void Generating_twice_from_the_same_files_gives_identical_documents()
    {
        var a = Generate().Select(d => d.ToHtml()).ToList();
        var b = Generate().Select(d => d.ToHtml()).ToList();
        Assert.Equal(a, b);
    }
}

public class GovernanceInputTests : IClassFixture<GovernanceFixture>
{
    readonly GovernanceFixture _f;
    public GovernanceInputTests(GovernanceFixture f) => _f = f;

    string Write(string name, string text) { var p = Path.Combine(_f.Dir.FullName, name); File.WriteAllText(p, text); return p; }

    [Fact]
    public void A_scan_line_without_its_verdict_is_an_error_naming_file_line_and_field()
    {
        var p = Write("bad-scan.jsonl", GovernanceFixture.ScanLine(0, "none", true) + "\n" + GovernanceFixture.ScanLine(1, "none", true).Replace("\"success\":true,", ""));
        var e = Assert.Throws<FormatException>(() => EvaluationEvidence.Load([p]));
        Assert.Contains("bad-scan.jsonl:2", e.Message);
        Assert.Contains("\"success\"", e.Message);
    }

    [Fact]
    public void A_file_of_unknown_shape_and_an_empty_folder_are_errors()
    {
        var p = Write("other.jsonl", "{\"foo\": 1}\n");
        var e = Assert.Throws<FormatException>(() => EvaluationEvidence.Load([p]));
        Assert.Contains("other.jsonl:1", e.Message);
        Assert.Contains("scan record", e.Message);
        var empty = Directory.CreateDirectory(Path.Combine(_f.Dir.FullName, "empty")).FullName;
        Assert.Contains("holds no .jsonl", Assert.Throws<FileNotFoundException>(() => EvaluationEvidence.Load([empty])).Message);
    }

    [Fact]
    public void A_metric_outside_its_own_interval_is_an_error()
    {
        var p = Write("metric.jsonl", "{\"metric\":\"ss\",\"value\":0.9,\"lower\":0.1,\"upper\":0.5,\"n\":20}\n");
        Assert.Contains("metric.jsonl:1", Assert.Throws<FormatException>(() => EvaluationEvidence.Load([p])).Message);
    }

    [Theory]
    [InlineData("owner: Test owner\n", "", "'owner'")]
    [InlineData("  p_social_scoring: no\n", "", "p_social_scoring")]
    [InlineData("  t_deep_fake: no", "  t_deep_fake: maybe", "eu_ai_act.t_deep_fake is 'maybe'")]
    [InlineData("  scale: many", "  scale: huge", "impact_assessment.scale is 'huge'")]
    [InlineData("  adversarial: {impact: major", "  adversarial: {impact: colossal", "risk_register.adversarial.impact")]
    [InlineData("training_data: None.", "training_data: None.\ncolour: blue", "line 9")]
    public void A_malformed_system_description_is_an_error_naming_the_field(string old, string replacement, string expected)
    {
        var p = Write($"sys-{Guid.NewGuid():N}.yaml", GovernanceFixture.SystemYaml((old, replacement)));
        var e = Assert.Throws<InvalidDataException>(() => SystemDescription.Load(p));
        Assert.Contains(Path.GetFileName(p), e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Evidence_listed_in_the_description_must_exist()
    {
        var p = Write("sys-evidence.yaml", GovernanceFixture.SystemYaml() + "\nevidence:\n  A.2: [no-such-policy.md]\n");
        Assert.Contains("evidence.A.2 lists 'no-such-policy.md'", Assert.Throws<InvalidDataException>(() => SystemDescription.Load(p)).Message);
        var q = Write("sys-area.yaml", GovernanceFixture.SystemYaml() + "\nevidence:\n  A.11: [system.yaml]\n");
        Assert.Contains("A.11 is not an ISO/IEC 42001 Annex A area", Assert.Throws<InvalidDataException>(() => SystemDescription.Load(q)).Message);
    }
}

public class EuAiActQuestionnaireTests
{
    static EuAssessment Classify(params string[] yes) =>
        EuAiActQuestionnaire.Classify(EuAiActQuestionnaire.Questions.ToDictionary(q => q.Id, q => yes.Contains(q.Id)));

    [Fact]
    public void A_spam_filter_answering_no_everywhere_is_minimal_risk_under_voluntary_codes()
    {
        var a = Classify();
        Assert.Equal(EuRiskTier.MinimalRisk, a.Tier);
        Assert.Contains(a.Obligations, o => o.Articles == "Art. 95");
        Assert.Contains(a.Obligations, o => o.Articles == "Art. 4");
    }

    [Fact]
    public void A_customer_service_chatbot_is_limited_risk_with_the_article_50_duty_to_disclose()
    {
        var a = Classify("t_interacts", "t_synthetic_content");
        Assert.Equal(EuRiskTier.LimitedRisk, a.Tier);
        Assert.Contains(a.Obligations, o => o.Articles == "Art. 50(1)");
        Assert.Contains(a.Obligations, o => o.Articles == "Art. 50(2)");
    }

    [Fact]
    public void A_cv_screening_tool_that_profiles_applicants_is_high_risk_under_annex_iii_point_4()
    {
        var a = Classify("hr_employment", "hr_profiling", "hr_narrow_task", "t_interacts");
        Assert.Equal(EuRiskTier.HighRisk, a.Tier);               // profiling overrides the derogation
        Assert.Contains(a.Findings, f => f.Articles.Contains("Annex III point 4") && f.Articles.Contains("Art. 6(3), last subparagraph"));
        foreach (var art in new[] { "Art. 9", "Art. 10", "Art. 14", "Art. 15", "Art. 43", "Art. 72", "Art. 73", "Art. 50(1)" })
            Assert.Contains(a.Obligations, o => o.Articles.Split(", ").Contains(art));
    }

    [Fact]
    public void An_annex_iii_preparatory_tool_without_profiling_takes_the_article_6_3_derogation()
    {
        var a = Classify("hr_education", "hr_narrow_task");
        Assert.Equal(EuRiskTier.MinimalRisk, a.Tier);
        Assert.Contains(a.Obligations, o => o.Articles == "Art. 6(4), Art. 49(2)");
        Assert.DoesNotContain(a.Obligations, o => o.Articles == "Art. 9");
    }

    [Fact]
    public void Social_scoring_is_prohibited_whatever_else_is_answered()
    {
        var a = Classify("p_social_scoring", "hr_employment", "t_interacts");
        Assert.Equal(EuRiskTier.Prohibited, a.Tier);
        Assert.Contains(a.Findings, f => f.Articles == "Art. 5(1)(c)");
        Assert.Contains(a.Obligations, o => o.Articles == "Art. 99(3)");
    }

    [Fact]
    public void A_product_safety_component_is_high_risk_under_article_6_1()
    {
        Assert.Contains(Classify("hr_product_safety").Findings, f => f.Articles == "Art. 6(1), Annex I");
        Assert.Equal(EuRiskTier.HighRisk, Classify("hr_product_safety").Tier);
    }

    [Fact]
    public void Exclusively_military_use_is_out_of_scope_even_for_a_prohibited_practice()
    {
        var a = Classify("scope_military", "p_realtime_biometric_id");
        Assert.Equal(EuRiskTier.OutOfScope, a.Tier);
        Assert.Equal("Art. 2(3)", a.Findings.Single().Articles);
    }

    [Fact]
    public void General_purpose_models_carry_article_53_and_with_systemic_risk_article_55()
    {
        var plain = Classify("gpai_model");
        Assert.Contains(plain.Obligations, o => o.Articles.StartsWith("Art. 53(1)(a)", StringComparison.Ordinal));
        Assert.DoesNotContain(plain.Obligations, o => o.Articles.StartsWith("Art. 55", StringComparison.Ordinal));
        var open = Classify("gpai_model", "gpai_open_source");
        Assert.Contains(open.Obligations, o => o.Articles == "Art. 53(2)");
        var systemic = Classify("gpai_model", "gpai_systemic_risk", "gpai_open_source");   // open source does not exempt systemic risk
        Assert.True(systemic.SystemicRisk);
        Assert.Contains(systemic.Obligations, o => o.Articles.StartsWith("Art. 55(1)", StringComparison.Ordinal));
        Assert.DoesNotContain(systemic.Obligations, o => o.Articles == "Art. 53(2)");
    }

    [Fact]
    public void Unanswered_and_unknown_questions_are_errors()
    {
        var partial = new Dictionary<string, string> { ["t_interacts"] = "yes" };
        Assert.Contains("p_manipulation", Assert.Throws<InvalidDataException>(() => EuAiActQuestionnaire.ParseAnswers(partial, "s.yaml")).Message);
        var unknown = EuAiActQuestionnaire.Questions.ToDictionary(q => q.Id, _ => "no");
        unknown["p_mind_reading"] = "no";
        Assert.Contains("eu_ai_act.p_mind_reading", Assert.Throws<InvalidDataException>(() => EuAiActQuestionnaire.ParseAnswers(unknown, "s.yaml")).Message);
    }
}
