using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

namespace SafetyNotebooks.Cli.Tests;

/// <summary>environment/install-jupyter-kernel.sh registers a kernel that is not reachable from the network.</summary>
public class EnvironmentTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("sn-kernel-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    static string[] WriteSpecs(string dir)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false, WorkingDirectory = TestNotebooks.RepoRoot };
        foreach (var a in new[] { Path.Combine(TestNotebooks.RepoRoot, "environment", "install-jupyter-kernel.sh"), "--spec-only", dir }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, err.Result);
        var spec = Path.Combine(dir, ".net-csharp", "kernel.json");
        Assert.True(File.Exists(spec), "no .net-csharp kernel spec written: " + err.Result);
        return ((JsonArray)JsonNode.Parse(File.ReadAllText(spec))!["argv"]!).Select(a => a!.GetValue<string>()).ToArray();
    }

    [Fact]
    public void The_kernel_spec_binds_the_http_api_to_loopback_only()
    {
        var argv = WriteSpecs(_dir);
        Assert.Contains("--http-local-only", argv);
        Assert.Contains("{connection_file}", argv);
    }

    [Fact]
    public async Task A_started_kernel_listens_on_loopback_only()
    {
        if (!OperatingSystem.IsLinux()) Assert.Fail("reads /proc/net/tcp: Linux only");
        var argv = WriteSpecs(_dir);
        var ports = Enumerable.Range(0, 5).Select(i => 41000 + Random.Shared.Next(0, 20000)).ToArray();
        var connection = Path.Combine(_dir, "connection.json");
        File.WriteAllText(connection, $$"""{"shell_port": {{ports[0]}}, "iopub_port": {{ports[1]}}, "stdin_port": {{ports[2]}}, "control_port": {{ports[3]}}, "hb_port": {{ports[4]}}, "ip": "127.0.0.1", "key": "test", "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": ".net-csharp"}""");
        var psi = new ProcessStartInfo(argv[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.Combine(TestNotebooks.RepoRoot, "notebooks") };
        foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a == "{connection_file}" ? connection : a);
        using var kernel = Process.Start(psi)!;
        _ = kernel.StandardOutput.ReadToEndAsync();
        _ = kernel.StandardError.ReadToEndAsync();
        try
        {
            List<(string Address, int Port)> http = new();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(60) && !kernel.HasExited)
            {
                http = ListeningSockets(kernel.Id).Where(s => s.Port is >= 2048 and <= 3000).ToList();
                if (http.Count > 0) break;
                await Task.Delay(250);
            }
            Assert.True(http.Count > 0, "the kernel never opened its HTTP port (2048-3000)");
            Assert.All(http, s => Assert.True(s.Address is "127.0.0.1" or "::1", $"the kernel listens on {s.Address}:{s.Port}, reachable from the network"));
        }
        finally
        {
            try { kernel.Kill(entireProcessTree: true); } catch { }
        }
    }

    /// <summary>The listening TCP sockets of a process tree, from /proc/net/tcp{,6} matched by socket inode.</summary>
    static List<(string Address, int Port)> ListeningSockets(int root)
    {
        var inodes = new HashSet<string>();
        foreach (var pid in Tree(root))
        {
            try
            {
                foreach (var fd in Directory.GetFiles($"/proc/{pid}/fd"))
                    if (new FileInfo(fd).LinkTarget is { } t && t.StartsWith("socket:[")) inodes.Add(t[8..^1]);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        var result = new List<(string, int)>();
        foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
            foreach (var line in File.ReadLines(table).Skip(1))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f[3] != "0A" || !inodes.Contains(f[9])) continue; // 0A = LISTEN
                var (hex, port) = (f[1].Split(':')[0], int.Parse(f[1].Split(':')[1], NumberStyles.HexNumber));
                result.Add((Address(hex), port));
            }
        return result;
    }

    static string Address(string hex)
    {
        var bytes = Convert.FromHexString(hex);
        for (int i = 0; i < bytes.Length; i += 4) Array.Reverse(bytes, i, 4); // /proc prints each 32-bit word in host (little-endian) order
        return new System.Net.IPAddress(bytes).ToString();
    }

    static IEnumerable<int> Tree(int root)
    {
        var all = new List<int> { root };
        for (int i = 0; i < all.Count; i++)
            foreach (var dir in Directory.GetDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), out var p)) continue;
                try
                {
                    var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                    if (int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]) == all[i]) all.Add(p);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
            }
        return all;
    }
}
