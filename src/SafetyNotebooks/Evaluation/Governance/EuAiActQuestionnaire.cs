namespace SafetyNotebooks.Evaluation.Governance;

/// <summary>The risk tiers of Regulation (EU) 2024/1689 (the AI Act) as this questionnaire assigns them.</summary>
public enum EuRiskTier
{
    /// <summary>Outside the Regulation's scope (Art. 2: military/defence/national security only, or scientific research only).</summary>
    OutOfScope,
    /// <summary>A prohibited AI practice (Art. 5).</summary>
    Prohibited,
    /// <summary>High-risk (Art. 6(1) with Annex I, or Art. 6(2) with Annex III): the requirements of Chapter III apply.</summary>
    HighRisk,
    /// <summary>Not high-risk, but transparency obligations apply (Art. 50): "limited risk" in the Commission's shorthand.</summary>
    LimitedRisk,
    /// <summary>None of the above: voluntary codes of conduct (Art. 95); AI literacy (Art. 4) still applies.</summary>
    MinimalRisk,
}

/// <summary>One yes/no question with the provisions it rests on.</summary>
public sealed record EuQuestion(string Id, string Section, string Text, string Articles);

/// <summary>One conclusion of the questionnaire with the provisions it rests on.</summary>
public sealed record EuFinding(string Text, string Articles);

/// <summary>The questionnaire's outcome: a tier, the findings that led to it, the obligations that follow, the model-level (GPAI) duties.</summary>
public sealed record EuAssessment(EuRiskTier Tier, IReadOnlyList<EuFinding> Findings, IReadOnlyList<EuFinding> Obligations, bool GeneralPurposeModel, bool SystemicRisk);

/// <summary>
/// A teaching questionnaire that maps yes/no answers about an AI system to a risk tier of the EU AI Act (Regulation (EU)
/// 2024/1689, OJ L 12.7.2024) and cites the articles each answer rests on: scope (Art. 2), prohibited practices (Art. 5(1)(a)–(h)),
/// high-risk classification (Art. 6(1) and Annex I; Art. 6(2) and the eight areas of Annex III; the Art. 6(3) derogation and its
/// profiling exception), transparency obligations (Art. 50(1)–(4)) and the obligations of providers of general-purpose AI models
/// (Art. 53, Art. 55 with Art. 51 for systemic risk). It is a teaching aid, not legal advice: the Regulation has exceptions and
/// conditions (and Commission guidelines) that a yes/no question cannot carry.
/// </summary>
public static class EuAiActQuestionnaire
{
    /// <summary>What every EU AI Act document says about itself.</summary>
    public const string Disclaimer = "A teaching aid, not legal advice. The questions simplify Regulation (EU) 2024/1689: its articles carry exceptions, " +
        "conditions and Commission guidelines that a yes/no answer cannot. Check the Official Journal text and ask a lawyer before relying on a tier.";

    /// <summary>The questions, in the order they are asked.</summary>
    public static readonly IReadOnlyList<EuQuestion> Questions =
    [
        new("scope_military", "Scope", "Is the system placed on the market, put into service or used exclusively for military, defence or national-security purposes?", "Art. 2(3)"),
        new("scope_research", "Scope", "Is it developed and put into service solely for scientific research and development (not placed on the market)?", "Art. 2(6)"),
        new("p_manipulation", "Prohibited practices", "Does it deploy subliminal, purposefully manipulative or deceptive techniques that materially distort behaviour and are likely to cause significant harm?", "Art. 5(1)(a)"),
        new("p_vulnerabilities", "Prohibited practices", "Does it exploit vulnerabilities due to age, disability or a specific social or economic situation to distort behaviour, likely causing significant harm?", "Art. 5(1)(b)"),
        new("p_social_scoring", "Prohibited practices", "Does it evaluate or classify people over time by social behaviour or personal characteristics, with a social score leading to detrimental or unfavourable treatment in unrelated contexts or out of proportion?", "Art. 5(1)(c)"),
        new("p_crime_prediction", "Prohibited practices", "Does it assess the risk that a person will commit a criminal offence based solely on profiling or personality traits?", "Art. 5(1)(d)"),
        new("p_face_scraping", "Prohibited practices", "Does it create or expand facial recognition databases through untargeted scraping of facial images from the internet or CCTV footage?", "Art. 5(1)(e)"),
        new("p_emotion_work_education", "Prohibited practices", "Does it infer emotions of people in the workplace or in education institutions (other than for medical or safety reasons)?", "Art. 5(1)(f)"),
        new("p_biometric_categorisation", "Prohibited practices", "Does it categorise people by biometric data to deduce race, political opinions, trade-union membership, religious or philosophical beliefs, sex life or sexual orientation?", "Art. 5(1)(g)"),
        new("p_realtime_biometric_id", "Prohibited practices", "Is it used for real-time remote biometric identification in publicly accessible spaces for law enforcement (outside the narrow exceptions)?", "Art. 5(1)(h)"),
        new("hr_product_safety", "High-risk (Art. 6(1))", "Is it a safety component of a product, or itself a product, covered by the Union harmonisation legislation of Annex I and required to undergo third-party conformity assessment?", "Art. 6(1), Annex I"),
        new("hr_biometrics", "High-risk (Art. 6(2), Annex III)", "Biometrics: remote biometric identification, biometric categorisation by sensitive attributes, or emotion recognition (where permitted)?", "Art. 6(2), Annex III point 1"),
        new("hr_critical_infrastructure", "High-risk (Art. 6(2), Annex III)", "A safety component in the management and operation of critical digital infrastructure, road traffic, or the supply of water, gas, heating or electricity?", "Art. 6(2), Annex III point 2"),
        new("hr_education", "High-risk (Art. 6(2), Annex III)", "Education and vocational training: admission, assessment of learning outcomes, level of education, or monitoring of students during tests?", "Art. 6(2), Annex III point 3"),
        new("hr_employment", "High-risk (Art. 6(2), Annex III)", "Employment: recruitment or selection (e.g. filtering applications), decisions on promotion, termination or task allocation, or monitoring of workers?", "Art. 6(2), Annex III point 4"),
        new("hr_essential_services", "High-risk (Art. 6(2), Annex III)", "Essential services: eligibility for public benefits, creditworthiness or credit scoring, life/health insurance pricing, or triage of emergency calls?", "Art. 6(2), Annex III point 5"),
        new("hr_law_enforcement", "High-risk (Art. 6(2), Annex III)", "Law enforcement: assessing victims' risk, polygraph-like tools, evaluating evidence, assessing offending risk, or profiling in investigations?", "Art. 6(2), Annex III point 6"),
        new("hr_migration", "High-risk (Art. 6(2), Annex III)", "Migration, asylum and border control: risk assessments of persons, examining applications, or detecting and identifying persons?", "Art. 6(2), Annex III point 7"),
        new("hr_justice_democracy", "High-risk (Art. 6(2), Annex III)", "Administration of justice and democratic processes: assisting judicial authorities with facts and law, or influencing elections or voting behaviour?", "Art. 6(2), Annex III point 8"),
        new("hr_narrow_task", "Art. 6(3) derogation", "For an Annex III use: does it only perform a narrow procedural task, improve a completed human activity, detect decision patterns without replacing human assessment, or do a preparatory task, so that it poses no significant risk?", "Art. 6(3)"),
        new("hr_profiling", "Art. 6(3) derogation", "For an Annex III use: does it perform profiling of natural persons?", "Art. 6(3), last subparagraph"),
        new("t_interacts", "Transparency (Art. 50)", "Does it interact directly with natural persons (e.g. a chatbot)?", "Art. 50(1)"),
        new("t_synthetic_content", "Transparency (Art. 50)", "Does it generate synthetic audio, image, video or text content?", "Art. 50(2)"),
        new("t_emotion_biometric", "Transparency (Art. 50)", "Is it an emotion recognition or biometric categorisation system (where not prohibited)?", "Art. 50(3)"),
        new("t_deep_fake", "Transparency (Art. 50)", "Does it generate or manipulate image, audio or video content constituting a deep fake, or text published to inform the public on matters of public interest?", "Art. 50(4)"),
        new("gpai_model", "General-purpose AI models", "Is the organisation the provider of a general-purpose AI model (significant generality, competently performs a wide range of distinct tasks)?", "Art. 3(63), Art. 53"),
        new("gpai_systemic_risk", "General-purpose AI models", "Does that model have high-impact capabilities (presumed when training compute exceeds 10^25 FLOP) or has the Commission designated it as having systemic risk?", "Art. 51, Art. 55"),
        new("gpai_open_source", "General-purpose AI models", "Is the model released under a free and open-source licence with its weights, architecture and usage information public?", "Art. 53(2)"),
    ];

    static readonly Dictionary<string, EuQuestion> ById = Questions.ToDictionary(q => q.Id);

    /// <summary>
    /// Reads yes/no answers (<c>yes</c>/<c>no</c>/<c>true</c>/<c>false</c>) for every question; an unknown id, a missing question or
    /// another value is an error naming the field in <paramref name="where"/>.
    /// </summary>
    public static IReadOnlyDictionary<string, bool> ParseAnswers(IReadOnlyDictionary<string, string> raw, string where = "answers")
    {
        var answers = new Dictionary<string, bool>();
        foreach (var (id, value) in raw)
        {
            if (!ById.ContainsKey(id))
                throw new InvalidDataException($"{where}: eu_ai_act.{id} is not a question of the EU AI Act questionnaire; questions: {string.Join(", ", Questions.Select(q => q.Id))}.");
            answers[id] = (value ?? "").Trim().ToLowerInvariant() switch
            {
                "yes" or "true" or "y" => true,
                "no" or "false" or "n" => false,
                var v => throw new InvalidDataException($"{where}: eu_ai_act.{id} is '{v}'; answer yes or no."),
            };
        }
        var missing = Questions.Where(q => !answers.ContainsKey(q.Id)).Select(q => q.Id).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{where}: eu_ai_act is missing answers to {string.Join(", ", missing)}; every question needs yes or no (a tier cannot rest on a question left open).");
        return answers;
    }

    /// <summary>Assigns the tier; see the class summary for the order of the rules.</summary>
    public static EuAssessment Classify(IReadOnlyDictionary<string, bool> answers)
    {
        bool A(string id) => answers.TryGetValue(id, out var v) ? v : throw new ArgumentException($"No answer to EU AI Act question '{id}'.", nameof(answers));
        foreach (var q in Questions) A(q.Id);
        var findings = new List<EuFinding>();
        var obligations = new List<EuFinding>();
        bool gpai = A("gpai_model"), systemic = gpai && A("gpai_systemic_risk");

        void GpaiDuties()
        {
            if (!gpai) return;
            bool open = A("gpai_open_source") && !systemic;
            findings.Add(new("The organisation provides a general-purpose AI model" + (systemic ? " with systemic risk." : "."), systemic ? "Art. 51, Art. 53, Art. 55" : "Art. 53"));
            if (!open) obligations.Add(new("Keep technical documentation of the model for the AI Office and national authorities, and information for downstream providers.", "Art. 53(1)(a)–(b), Annexes XI and XII"));
            else obligations.Add(new("Open-source release: the documentation duties of Art. 53(1)(a)–(b) do not apply (the model has no systemic risk).", "Art. 53(2)"));
            obligations.Add(new("Put in place a policy to comply with Union copyright law and publish a sufficiently detailed summary of the training content.", "Art. 53(1)(c)–(d)"));
            if (systemic)
            {
                obligations.Add(new("Notify the Commission that the model meets the systemic-risk threshold.", "Art. 52(1)"));
                obligations.Add(new("Evaluate the model with state-of-the-art protocols including adversarial testing, assess and mitigate systemic risks, report serious incidents, ensure cybersecurity.", "Art. 55(1)(a)–(d)"));
            }
        }

        if (A("scope_military") || A("scope_research"))
        {
            findings.Add(new(A("scope_military") ? "Used exclusively for military, defence or national security: outside the Regulation." : "Solely for scientific research and development: outside the Regulation.",
                A("scope_military") ? "Art. 2(3)" : "Art. 2(6)"));
            return new EuAssessment(EuRiskTier.OutOfScope, findings, obligations, gpai, systemic);
        }

        var prohibited = Questions.Where(q => q.Id.StartsWith("p_", StringComparison.Ordinal) && A(q.Id)).ToList();
        if (prohibited.Count > 0)
        {
            foreach (var q in prohibited) findings.Add(new($"Prohibited practice: {q.Text.TrimEnd('?')}.", q.Articles));
            obligations.Add(new("The practice may not be placed on the market, put into service or used in the Union (applies since 2 February 2025).", "Art. 5, Art. 113"));
            obligations.Add(new("Fines up to EUR 35 million or 7% of total worldwide annual turnover, whichever is higher.", "Art. 99(3)"));
            GpaiDuties();
            return new EuAssessment(EuRiskTier.Prohibited, findings, obligations, gpai, systemic);
        }

        bool high = false;
        if (A("hr_product_safety"))
        {
            high = true;
            findings.Add(new("Safety component of (or itself) a product under Annex I legislation requiring third-party conformity assessment: high-risk.", "Art. 6(1), Annex I"));
        }
        var annex3 = Questions.Where(q => q.Id.StartsWith("hr_", StringComparison.Ordinal) && q.Id is not ("hr_product_safety" or "hr_narrow_task" or "hr_profiling") && A(q.Id)).ToList();
        if (annex3.Count > 0)
        {
            var cites = string.Join("; ", annex3.Select(q => q.Articles));
            if (A("hr_profiling"))
            {
                high = true;
                findings.Add(new("An Annex III use that profiles natural persons: always high-risk, the derogation does not apply.", cites + "; Art. 6(3), last subparagraph"));
            }
            else if (A("hr_narrow_task"))
            {
                findings.Add(new("An Annex III use that poses no significant risk (narrow, preparatory or pattern-detecting task, no profiling): not high-risk under the derogation.", cites + "; Art. 6(3)"));
                obligations.Add(new("Document the assessment that the system is not high-risk before placing it on the market, and register it in the EU database.", "Art. 6(4), Art. 49(2)"));
            }
            else
            {
                high = true;
                findings.Add(new("A use listed in Annex III: high-risk.", cites));
            }
        }
        if (high)
        {
            obligations.Add(new("Risk management system over the whole life cycle.", "Art. 9"));
            obligations.Add(new("Data and data governance: training, validation and test data relevant, representative, examined for bias.", "Art. 10"));
            obligations.Add(new("Technical documentation (Annex IV) and automatic record-keeping (logs).", "Art. 11, Art. 12"));
            obligations.Add(new("Transparency and instructions for use to deployers; human oversight by design.", "Art. 13, Art. 14"));
            obligations.Add(new("Appropriate accuracy, robustness and cybersecurity, declared in the instructions for use.", "Art. 15"));
            obligations.Add(new("Provider obligations: quality management system, conformity assessment, EU declaration of conformity, CE marking, registration.", "Art. 16, Art. 17, Art. 43, Art. 47, Art. 48, Art. 49"));
            obligations.Add(new("Post-market monitoring and reporting of serious incidents.", "Art. 72, Art. 73"));
            obligations.Add(new("Deployers: use per instructions, human oversight, keep logs; public bodies and some private deployers carry out a fundamental rights impact assessment.", "Art. 26, Art. 27"));
        }

        var transparency = Questions.Where(q => q.Id.StartsWith("t_", StringComparison.Ordinal) && A(q.Id)).ToList();
        foreach (var q in transparency)
        {
            findings.Add(new($"Transparency duty: {q.Text.TrimEnd('?')}.", q.Articles));
            obligations.Add(new(q.Id switch
            {
                "t_interacts" => "Inform people that they are interacting with an AI system, unless obvious from the context.",
                "t_synthetic_content" => "Mark outputs in a machine-readable format as artificially generated or manipulated.",
                "t_emotion_biometric" => "Inform the people exposed to the system of its operation.",
                _ => "Disclose that the content has been artificially generated or manipulated.",
            }, q.Articles));
        }

        var tier = high ? EuRiskTier.HighRisk : transparency.Count > 0 ? EuRiskTier.LimitedRisk : EuRiskTier.MinimalRisk;
        if (tier == EuRiskTier.MinimalRisk)
        {
            findings.Add(new("No prohibited practice, no high-risk use, no transparency trigger: minimal risk.", "Art. 5, Art. 6, Art. 50"));
            obligations.Add(new("No mandatory requirements for the system; voluntary codes of conduct are encouraged.", "Art. 95"));
        }
        obligations.Add(new("Providers and deployers take measures to ensure sufficient AI literacy of their staff.", "Art. 4"));
        GpaiDuties();
        return new EuAssessment(tier, findings, obligations, gpai, systemic);
    }

    /// <summary>A tier's name as the documents print it.</summary>
    public static string Name(EuRiskTier tier) => tier switch
    {
        EuRiskTier.OutOfScope => "Out of scope",
        EuRiskTier.Prohibited => "Prohibited practice",
        EuRiskTier.HighRisk => "High-risk",
        EuRiskTier.LimitedRisk => "Limited risk (transparency obligations)",
        _ => "Minimal risk",
    };
}
