namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>A problem with the user's input; the CLI prints its message on one line (no stack trace) and exits non-zero.</summary>
public sealed class UserError(string message) : Exception(message);
