namespace SafetyNotebooks.Cli.Commands;

/// <summary><c>safety-notebooks bench</c>: filled in with the model benchmarks.</summary>
public static class BenchCommand
{
    public static Task<int> Run(string[] args, TextWriter o)
    {
        o.WriteLine("bench: no benchmarks yet.");
        return Task.FromResult(1);
    }
}
