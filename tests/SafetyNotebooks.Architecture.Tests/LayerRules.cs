using System.Reflection;
using NetArchTest.Rules;

namespace SafetyNotebooks.Architecture.Tests;

/// <summary>
/// The layers of docs/architecture.md, as data. Each module lists the modules it may use; every other
/// module of the library is forbidden to it. A namespace that belongs to no module fails
/// <see cref="LayerRulesTests.EveryNamespaceBelongsToAModule"/>, so a new module must be placed here (and in the
/// doc) before it can land.
/// </summary>
public static class LayerRules
{
    /// <summary>One module: a name, the namespaces it owns (with their sub-namespaces), the modules it may use.</summary>
    public sealed record Module(string Name, string Layer, string[] Namespaces, string[] MayUse)
    {
        public override string ToString() => Name;
    }

    const string P = "SafetyNotebooks.";

    static readonly string[] Bottom = ["Runtime", "IO", "Tokenization", "Statistics"];
    static readonly string[] ModelsAndBelow = [.. Bottom, "Models"];
    static readonly string[] DataAndBelow = [.. ModelsAndBelow, "Data"];
    static readonly string[] TrainingAndBelow = [.. DataAndBelow, "Chat", "Training"];
    static readonly string[] Capabilities = ["Interpretability", "Sae", "Alignment", "Evaluation"];

    /// <summary>The library's modules, bottom to top.</summary>
    public static readonly Module[] Library =
    [
        // Bottom: runtime (native loading, seeds, progress, quick mode, name suggestions), file formats, tokenizers.
        new("Runtime", "bottom", [P + "Runtime", P + "Native"], []),
        new("IO", "bottom", [P + "IO"], ["Runtime"]),
        new("Tokenization", "bottom", [P + "Tokenization"], ["Runtime"]),
        // Statistics for evaluations: intervals, tests, corrections, power (MathNet.Numerics distributions).
        new("Statistics", "bottom", [P + "Statistics"], ["Runtime"]),
        // Models: the hooked transformer, its cache, loading, the next-token loss, inference (generation).
        new("Models", "models", [P + "Models"], Bottom),
        // Data: seeded tasks and token streams; a task scores model outputs with the models' loss, never trains.
        new("Data", "data", [P + "Data"], ModelsAndBelow),
        // Chat: any model behind Microsoft.Extensions.AI's IChatClient (our HookedTransformer with a chat template, or an
        // OpenAI-compatible server), with timeouts, retries and rate limits. Alignment (RLAIF) and Evaluation share it.
        new("Chat", "data", [P + "Chat"], ModelsAndBelow),
        // Training: one loop, an objective per method.
        new("Training", "training", [P + "Training"], DataAndBelow),
        // Capabilities side by side: none uses another.
        new("Interpretability", "capabilities", [P + "Interpretability"], TrainingAndBelow),
        new("Sae", "capabilities", [P + "Sae"], TrainingAndBelow),
        new("Alignment", "capabilities", [P + "Alignment"], TrainingAndBelow),
        new("Evaluation", "capabilities", [P + "Evaluation"], TrainingAndBelow),
        // Presentation consumes results; nothing below imports it.
        new("Plotting", "presentation", [P + "Plotting"], [.. TrainingAndBelow, .. Capabilities]),
        new("Teaching", "presentation", [P + "Teaching"], [.. TrainingAndBelow, .. Capabilities, "Plotting"]),
    ];

    public static Module Get(string name) => Library.Single(m => m.Name == name);

    /// <summary>The library's compiled assembly.</summary>
    public static Assembly LibraryAssembly => typeof(SafetyNotebooks.Runtime.TorchRuntime).Assembly;
    /// <summary>The notebook integration.</summary>
    public static Assembly InteractiveAssembly => typeof(SafetyNotebooks.Interactive.NotebookSetup).Assembly;
    /// <summary>The CLI (assembly name safety-notebooks).</summary>
    public static Assembly CliAssembly => typeof(SafetyNotebooks.Cli.Program).Assembly;

    /// <summary>True when <paramref name="ns"/> is <paramref name="owner"/> or one of its sub-namespaces.</summary>
    public static bool Owns(string owner, string? ns) => ns != null && (ns == owner || ns.StartsWith(owner + ".", StringComparison.Ordinal));

    /// <summary>Runs one NetArchTest condition and returns the failing type names (empty when the rule holds).</summary>
    public static IReadOnlyList<string> Failing(TestResult r) => r.IsSuccessful ? [] : (r.FailingTypeNames ?? []).ToList();

    /// <summary>Types of an assembly whose namespace is exactly one of <paramref name="namespaces"/> (no sub-namespaces).</summary>
    public static string[] TypeNamesIn(Assembly asm, IEnumerable<string> namespaces) =>
        AllTypes(asm).Where(t => namespaces.Contains(NamespaceOf(t))).Select(t => t.FullName).ToArray();

    /// <summary>Every namespace that holds a type of the assembly (nested types count for their outer type's namespace).</summary>
    public static string[] NamespacesOf(Assembly asm) =>
        AllTypes(asm).Select(NamespaceOf).Where(n => n.Length > 0).Distinct().OrderBy(n => n).ToArray();

    /// <summary>Every type definition of an assembly, nested ones included, read with Mono.Cecil (nothing is loaded or run).</summary>
    public static IEnumerable<Mono.Cecil.TypeDefinition> AllTypes(Assembly asm)
    {
        using var module = Mono.Cecil.ModuleDefinition.ReadModule(asm.Location);
        var all = new List<Mono.Cecil.TypeDefinition>();
        void Walk(Mono.Cecil.TypeDefinition t) { all.Add(t); foreach (var n in t.NestedTypes) Walk(n); }
        foreach (var t in module.Types) Walk(t);
        return all;
    }

    /// <summary>A type's namespace, through its declaring types for nested ones (Cecil gives nested types none).</summary>
    public static string NamespaceOf(Mono.Cecil.TypeDefinition t)
    {
        while (t.DeclaringType != null) t = t.DeclaringType;
        return t.Namespace ?? "";
    }
}
