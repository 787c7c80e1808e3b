namespace SafetyNotebooks.Teaching;

/// <summary>An experiment check or an exercise check failed; the message says what, expected vs got, and a hint.</summary>
public sealed class CheckFailedException(string message) : Exception(message);
