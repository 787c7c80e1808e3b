using static TorchSharp.torch;
var a = randn(1024, 1024);
var sw = System.Diagnostics.Stopwatch.StartNew();
for (int i = 0; i < 10; i++) { using var c = a.matmul(a); }
Console.WriteLine($"ok {sw.Elapsed.TotalSeconds} threads {TorchSharp.torch.get_num_threads()}");
