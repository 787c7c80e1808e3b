using System.ClientModel;
using System.Net;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;

namespace SafetyNotebooks.Chat;

/// <summary>Bounds on calls to a chat model: per-attempt timeout, retries with backoff, concurrency and request rate.</summary>
public sealed record ChatLimits
{
    /// <summary>Longest one attempt may take before it is cancelled and retried. Default 60 s.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>Retries after the first attempt for transient failures (timeouts, connection errors, HTTP 408/429/5xx). Default 3.</summary>
    public int MaxRetries { get; init; } = 3;
    /// <summary>Wait before the first retry; doubles each retry (exponential backoff) up to <see cref="MaxBackoff"/>, with ±25% seeded jitter. Default 0.5 s.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(500);
    /// <summary>Longest wait between retries. Default 20 s.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(20);
    /// <summary>Most calls in flight at once. Default 4.</summary>
    public int MaxConcurrency { get; init; } = 4;
    /// <summary>Most calls started per second (evenly spaced), or null for no limit.</summary>
    public double? RequestsPerSecond { get; init; }
    /// <summary>Seed of the backoff jitter (so a rerun waits the same). Default 0.</summary>
    public int Seed { get; init; }

    /// <summary>Throws a clear error for settings that cannot work.</summary>
    public ChatLimits Validate()
    {
        if (Timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(Timeout), $"ChatLimits.Timeout must be positive, not {Timeout}.");
        if (MaxRetries < 0) throw new ArgumentOutOfRangeException(nameof(MaxRetries), $"ChatLimits.MaxRetries must be ≥ 0, not {MaxRetries}.");
        if (MaxConcurrency < 1) throw new ArgumentOutOfRangeException(nameof(MaxConcurrency), $"ChatLimits.MaxConcurrency must be ≥ 1, not {MaxConcurrency}.");
        if (RequestsPerSecond is double r && !(r > 0)) throw new ArgumentOutOfRangeException(nameof(RequestsPerSecond), $"ChatLimits.RequestsPerSecond must be positive or null, not {r}.");
        if (InitialBackoff < TimeSpan.Zero || MaxBackoff < InitialBackoff)
            throw new ArgumentOutOfRangeException(nameof(MaxBackoff), $"Need 0 ≤ InitialBackoff ≤ MaxBackoff, got {InitialBackoff} and {MaxBackoff}.");
        return this;
    }
}

/// <summary>A chat call that still failed after every retry; names the model, the attempts and the last error.</summary>
public sealed class ChatCallFailedException(string message, int attempts, Exception inner) : Exception(message, inner)
{
    /// <summary>How many attempts were made.</summary>
    public int Attempts { get; } = attempts;
}

/// <summary>
/// <see cref="IChatClient"/> middleware that enforces <see cref="ChatLimits"/> on any inner client: a per-attempt timeout,
/// retries of transient failures with exponential backoff and seeded jitter, a cap on concurrent calls and an even spacing
/// of call starts. Caller cancellation is never retried. Streaming calls are retried only until the first update arrives.
/// </summary>
public sealed class ResilientChatClient : DelegatingChatClient
{
    readonly ChatLimits _limits;
    readonly SemaphoreSlim _concurrency;
    readonly Random _jitter;
    readonly object _rateLock = new();
    DateTime _nextStart = DateTime.MinValue;
    int _inFlight, _maxInFlight, _attempts;

    /// <summary>Wraps <paramref name="inner"/> with <paramref name="limits"/> (default <see cref="ChatLimits"/>).</summary>
    public ResilientChatClient(IChatClient inner, ChatLimits? limits = null) : base(inner)
    {
        _limits = (limits ?? new ChatLimits()).Validate();
        _concurrency = new SemaphoreSlim(_limits.MaxConcurrency, _limits.MaxConcurrency);
        _jitter = new Random(_limits.Seed);
    }

    /// <summary>The limits in force.</summary>
    public ChatLimits Limits => _limits;
    /// <summary>Most calls that were in flight at once so far (for checking the concurrency cap).</summary>
    public int MaxObservedConcurrency => Volatile.Read(ref _maxInFlight);
    /// <summary>Attempts made so far, retries included.</summary>
    public int Attempts => Volatile.Read(ref _attempts);

    /// <inheritdoc/>
    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var list = messages as IList<ChatMessage> ?? messages.ToList();
        for (int attempt = 0; ; attempt++)
        {
            Exception failure;
            bool timedOut;
            var lease = await EnterAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                return await base.GetResponseAsync(list, options, lease.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested && IsTransient(e, lease.TimedOut))
            {
                failure = e;
                timedOut = lease.TimedOut;
            }
            finally { lease.Dispose(); }
            if (attempt >= _limits.MaxRetries) throw Failed(failure, attempt + 1, timedOut);
            await Task.Delay(Backoff(attempt), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc/>
    public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var list = messages as IList<ChatMessage> ?? messages.ToList();
        for (int attempt = 0; ; attempt++)
        {
            var lease = await EnterAsync(cancellationToken).ConfigureAwait(false);
            IAsyncEnumerator<ChatResponseUpdate>? e = null;
            bool first;
            Exception? failure = null;
            bool timedOut = false;
            try
            {
                e = base.GetStreamingResponseAsync(list, options, lease.Token).GetAsyncEnumerator(lease.Token);
                first = await e.MoveNextAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested && IsTransient(ex, lease.TimedOut))
            {
                failure = ex;
                timedOut = lease.TimedOut;
                first = false;
            }
            catch
            {
                if (e is not null) await e.DisposeAsync().ConfigureAwait(false);
                lease.Dispose();
                throw;
            }
            if (failure is not null)
            {
                if (e is not null) await e.DisposeAsync().ConfigureAwait(false);
                lease.Dispose();
                if (attempt >= _limits.MaxRetries) throw Failed(failure, attempt + 1, timedOut);
                await Task.Delay(Backoff(attempt), cancellationToken).ConfigureAwait(false);
                continue;
            }
            try
            {
                if (first)
                {
                    yield return e!.Current;
                    while (await e.MoveNextAsync().ConfigureAwait(false)) yield return e.Current;
                }
            }
            finally
            {
                await e!.DisposeAsync().ConfigureAwait(false);
                lease.Dispose();
            }
            yield break;
        }
    }

    /// <summary>One attempt's hold on a concurrency slot and its timeout; disposing releases both (once).</summary>
    sealed class Lease(ResilientChatClient owner, CancellationTokenSource cts, CancellationToken caller) : IDisposable
    {
        int _disposed;
        public CancellationToken Token => cts.Token;
        /// <summary>Whether the attempt's own timeout fired (not the caller's cancellation).</summary>
        public bool TimedOut => cts.IsCancellationRequested && !caller.IsCancellationRequested;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
            cts.Dispose();
            Interlocked.Decrement(ref owner._inFlight);
            owner._concurrency.Release();
        }
    }

    async Task<Lease> EnterAsync(CancellationToken cancellationToken)
    {
        await _concurrency.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_limits.RequestsPerSecond is double rps)
            {
                TimeSpan wait;
                lock (_rateLock)
                {
                    var now = DateTime.UtcNow;
                    var start = _nextStart > now ? _nextStart : now;
                    _nextStart = start + TimeSpan.FromSeconds(1 / rps);
                    wait = start - now;
                }
                if (wait > TimeSpan.Zero) await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
            }
        }
        catch { _concurrency.Release(); throw; }
        int current = Interlocked.Increment(ref _inFlight), seen;
        while (current > (seen = Volatile.Read(ref _maxInFlight)) && Interlocked.CompareExchange(ref _maxInFlight, current, seen) != seen) { }
        Interlocked.Increment(ref _attempts);
        var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(_limits.Timeout);
        return new Lease(this, cts, cancellationToken);
    }

    TimeSpan Backoff(int attempt)
    {
        double baseMs = Math.Min(_limits.MaxBackoff.TotalMilliseconds, _limits.InitialBackoff.TotalMilliseconds * Math.Pow(2, attempt));
        double factor;
        lock (_jitter) factor = 0.75 + 0.5 * _jitter.NextDouble();
        return TimeSpan.FromMilliseconds(Math.Min(_limits.MaxBackoff.TotalMilliseconds, baseMs * factor));
    }

    /// <summary>Whether a failure is worth retrying: the attempt's own timeout, a connection error, or HTTP 408, 429 or 5xx.</summary>
    /// <param name="e">The failure.</param>
    /// <param name="attemptTimedOut">Whether the attempt's own timeout fired (a cancellation is transient only then).</param>
    public static bool IsTransient(Exception e, bool attemptTimedOut) => e switch
    {
        OperationCanceledException => attemptTimedOut,
        HttpRequestException h => h.StatusCode is null || IsTransientStatus((int)h.StatusCode),
        ClientResultException c => c.Status == 0 || IsTransientStatus(c.Status),
        IOException => true,
        _ => e.InnerException is { } inner && IsTransient(inner, attemptTimedOut),
    };

    static bool IsTransientStatus(int status) => status is (int)HttpStatusCode.RequestTimeout or 429 || status >= 500;

    ChatCallFailedException Failed(Exception e, int attempts, bool timedOut)
    {
        var model = InnerClient.GetService(typeof(ChatClientMetadata)) as ChatClientMetadata;
        string where = model?.ProviderUri is { } uri ? $" at {uri}" : "";
        string what = e is OperationCanceledException && timedOut
            ? $"each attempt timed out after {_limits.Timeout.TotalSeconds:0.#} s (raise ChatLimits.Timeout for slow models)"
            : $"last error: {e.GetType().Name}: {e.Message}";
        return new ChatCallFailedException($"Chat call to '{model?.DefaultModelId ?? "the model"}'{where} failed after {attempts} attempt(s); {what}. " +
            "Check that the server is running and reachable, or raise ChatLimits.MaxRetries.", attempts, e);
    }
}
