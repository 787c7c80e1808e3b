using System.Reflection;
using NetArchTest.Rules;
using static SafetyNotebooks.Architecture.Tests.LayerRules;

namespace SafetyNotebooks.Architecture.Tests;

/// <summary>
/// Enforces docs/architecture.md. Each failure message starts with the rule's name, then the types that break it
/// and what they use, so a wrong <c>using</c> in a new file fails CI with the rule it breaks.
/// </summary>
public class LayerRulesTests
{
    public static TheoryData<string> ModuleNames() => new(Library.Select(m => m.Name));

    [Theory]
    [MemberData(nameof(ModuleNames))]
    public void Module_uses_only_the_modules_below_it(string name)
    {
        var module = Get(name);
        var rule = $"layer rule '{module.Name} may use only: {(module.MayUse.Length == 0 ? "nothing else in the library" : string.Join(", ", module.MayUse))}'";
        var broken = new List<string>();
        foreach (var other in Library.Where(o => o.Name != name && !module.MayUse.Contains(o.Name)))
        {
            var failing = module.Namespaces.SelectMany(ns => Failing(Types.InAssembly(LibraryAssembly)
                .That().ResideInNamespace(ns).ShouldNot().HaveDependencyOnAny(other.Namespaces).GetResult()));
            foreach (var type in failing.Distinct())
                broken.Add($"{type} uses {other.Name} ({string.Join(", ", other.Namespaces)})");
        }
        Assert.True(broken.Count == 0, $"{rule} is broken:\n  " + string.Join("\n  ", broken) +
            "\nMove the code to a lower layer, or change the layering in docs/architecture.md and tests/SafetyNotebooks.Architecture.Tests/LayerRules.cs together.");
    }

    [Fact]
    public void Every_library_namespace_belongs_to_a_module()
    {
        var orphans = NamespacesOf(LibraryAssembly)
            .Where(ns => ns.StartsWith("SafetyNotebooks", StringComparison.Ordinal))
            .Where(ns => !Library.Any(m => m.Namespaces.Any(owner => Owns(owner, ns))))
            .ToList();
        Assert.True(orphans.Count == 0,
            "layer rule 'every namespace belongs to a module' is broken by: " + string.Join(", ", orphans) +
            ". Add the module to docs/architecture.md and LayerRules.Library with the modules it may use.");
    }

    [Fact]
    public void The_layering_itself_has_no_cycles()
    {
        // A module may only use modules listed before it: the table is a topological order.
        for (int i = 0; i < Library.Length; i++)
            foreach (var used in Library[i].MayUse)
                Assert.True(Array.FindIndex(Library, m => m.Name == used) is var j && j >= 0 && j < i,
                    $"layer rule 'modules use only modules below them' is broken in the table: {Library[i].Name} may use {used}, which is not below it.");
    }

    [Fact]
    public void Capabilities_do_not_use_each_other()
    {
        string[] side = ["Interpretability", "Sae", "Alignment", "Evaluation"];
        foreach (var a in side)
            foreach (var b in side.Where(b => b != a))
                Assert.DoesNotContain(b, Get(a).MayUse);
    }

    [Fact]
    public void Plotting_and_teaching_are_used_by_no_lower_module()
    {
        foreach (var m in Library.Where(m => m.Layer != "presentation"))
        {
            Assert.DoesNotContain("Plotting", m.MayUse);
            Assert.DoesNotContain("Teaching", m.MayUse);
        }
    }

    [Theory]
    [InlineData("Microsoft.DotNet.Interactive")]
    [InlineData("SafetyNotebooks.Interactive")]
    [InlineData("safety-notebooks")]
    [InlineData("Markdig")]
    public void Core_library_does_not_reference(string assemblyPrefix)
    {
        var refs = LibraryAssembly.GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith(assemblyPrefix, StringComparison.Ordinal)).ToList();
        Assert.True(refs.Count == 0, $"layer rule 'the core library never references {assemblyPrefix}' is broken: it references {string.Join(", ", refs)}.");
    }

    [Fact]
    public void Nothing_references_the_cli()
    {
        foreach (var asm in new[] { LibraryAssembly, InteractiveAssembly })
            Assert.True(!asm.GetReferencedAssemblies().Any(a => a.Name == CliAssembly.GetName().Name),
                $"layer rule 'nothing imports the CLI' is broken: {asm.GetName().Name} references {CliAssembly.GetName().Name}.");
    }

    public static TheoryData<string> TopAssemblies() => new() { "SafetyNotebooks.Interactive", "safety-notebooks" };

    [Theory]
    [MemberData(nameof(TopAssemblies))]
    public void Namespaces_of_the_top_assemblies_have_no_cycles(string assemblyName)
    {
        var asm = assemblyName == "safety-notebooks" ? CliAssembly : InteractiveAssembly;
        var namespaces = NamespacesOf(asm).Where(n => n.StartsWith("SafetyNotebooks", StringComparison.Ordinal)).ToArray();
        var uses = namespaces.ToDictionary(n => n, _ => new HashSet<string>());
        foreach (var a in namespaces)
            foreach (var b in namespaces.Where(b => b != a))
            {
                var targets = TypeNamesIn(asm, [b]);
                if (targets.Length == 0) continue;
                var inA = TypeNamesIn(asm, [a]).ToHashSet();
                var failing = Failing(Types.InAssembly(asm).That().ResideInNamespace(a).ShouldNot().HaveDependencyOnAny(targets).GetResult());
                if (failing.Any(t => inA.Contains(t.Replace('+', '/')) || inA.Contains(t))) uses[a].Add(b);
            }
        var cycles = (from a in namespaces from b in uses[a] where string.CompareOrdinal(a, b) < 0 && uses[b].Contains(a) select $"{a} <-> {b}").ToList();
        Assert.True(cycles.Count == 0, $"layer rule 'no namespace cycles in {assemblyName}' is broken: {string.Join("; ", cycles)}.");
    }
}
