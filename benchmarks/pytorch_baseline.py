"""PyTorch baseline for `safety-notebooks bench --baseline`: the same workloads as the .NET side
(src/SafetyNotebooks/Benchmarks/ModelBenchmarks.cs), same shapes, same thread count, printed as one
JSON object per line: {"name": ..., "median_s": ..., "runs": ...} (matmul_peak also has "gflops").

A plain GPT-2-style model written for this benchmark (pre-LN, learned positions, gelu_new,
fused QKV; `generate` keeps its own preallocated key/value cache, as the .NET side does); `cache=True` stores every activation TransformerLens would hook, including per-head
results, to mirror run_with_cache.
"""
import copy, json, math, statistics, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Block(nn.Module):
    def __init__(self, d_model, n_heads, d_mlp, attn_only):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.attn_only = attn_only
        if not attn_only:
            self.ln2 = nn.LayerNorm(d_model)
            self.fc_in = nn.Linear(d_model, d_mlp)
            self.fc_out = nn.Linear(d_mlp, d_model)

    def forward(self, x, mask, cache, layer):
        B, T, D = x.shape
        h = self.ln1(x)
        q, k, v = self.qkv(h).view(B, T, 3, self.n_heads, self.d_head).unbind(2)   # each [B, T, H, dh]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.d_head)
        scores = scores.masked_fill(mask[:T, :T], float("-inf"))
        pattern = scores.softmax(-1)                                                # [B, H, T, T]
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)                             # [B, T, H, dh]
        attn_out = self.out(z.reshape(B, T, D))
        if cache is not None:
            p = f"blocks.{layer}."
            cache.update({p + "hook_resid_pre": x, p + "ln1.hook_normalized": h, p + "attn.hook_q": q,
                          p + "attn.hook_k": k, p + "attn.hook_v": v, p + "attn.hook_attn_scores": scores,
                          p + "attn.hook_pattern": pattern, p + "attn.hook_z": z,
                          p + "hook_attn_out": attn_out})
            # attn.hook_result (per-head outputs) only with TransformerLens' use_attn_result, off by default: not cached.
        x = x + attn_out
        if self.attn_only:
            return x
        if cache is not None:
            cache[f"blocks.{layer}.hook_resid_mid"] = x
        h2 = self.ln2(x)
        pre = self.fc_in(h2)
        post = gelu_new(pre)
        mlp_out = self.fc_out(post)
        if cache is not None:
            p = f"blocks.{layer}."
            cache.update({p + "ln2.hook_normalized": h2, p + "mlp.hook_pre": pre, p + "mlp.hook_post": post,
                          p + "hook_mlp_out": mlp_out})
        x = x + mlp_out
        if cache is not None:
            cache[f"blocks.{layer}.hook_resid_post"] = x
        return x


class GPT(nn.Module):
    def __init__(self, n_layers, d_model, n_heads, d_mlp, d_vocab, n_ctx, attn_only=False):
        super().__init__()
        self.embed = nn.Embedding(d_vocab, d_model)
        self.pos = nn.Embedding(n_ctx, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_mlp, attn_only) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, d_vocab)
        self.register_buffer("mask", torch.triu(torch.ones(n_ctx, n_ctx, dtype=torch.bool), 1))

    def forward(self, tokens, cache=None):
        T = tokens.shape[1]
        e, p = self.embed(tokens), self.pos(torch.arange(T))
        if cache is not None:
            cache["hook_embed"], cache["hook_pos_embed"] = e, p
        x = e + p
        for i, b in enumerate(self.blocks):
            x = b(x, self.mask, cache, i)
        x = self.ln_f(x)
        if cache is not None:
            cache["ln_final.hook_normalized"] = x
        return self.unembed(x)


def block_step(b, x, k_buf, v_buf, past):
    """One block on the new positions x [B, T, D], appending keys/values to the preallocated
    k_buf/v_buf [B, H, capacity, dh] at `past` (same scheme as the .NET KeyValueCacheEntry)."""
    B, T, D = x.shape
    h = b.ln1(x)
    q, k, v = b.qkv(h).view(B, T, 3, b.n_heads, b.d_head).unbind(2)               # each [B, T, H, dh]
    k_buf[:, :, past:past + T] = k.transpose(1, 2)
    v_buf[:, :, past:past + T] = v.transpose(1, 2)
    keys, values = k_buf[:, :, :past + T], v_buf[:, :, :past + T]
    if past == 0:
        z = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, is_causal=True) \
            if hasattr(F, "scaled_dot_product_attention") else None
        if z is None:                                                              # PyTorch 1.13: no fused kernel
            scores = q.transpose(1, 2) @ keys.transpose(2, 3) / math.sqrt(b.d_head)
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            z = scores.softmax(-1) @ values
    else:                                                                          # new queries see every cached key
        scores = q.transpose(1, 2) @ keys.transpose(2, 3) / math.sqrt(b.d_head)
        if T > 1:
            scores = scores.masked_fill(torch.ones(T, past + T, dtype=torch.bool).triu(past + 1), float("-inf"))
        z = scores.softmax(-1) @ values
    x = x + b.out(z.transpose(1, 2).reshape(B, T, D))
    if b.attn_only:
        return x
    return x + b.fc_out(gelu_new(b.fc_in(b.ln2(x))))


def generate(model, prompt, new_tokens, use_cache):
    """Greedy generation; with use_cache each step runs only the new token through the model."""
    B, T0 = prompt.shape
    tokens = prompt
    if not use_cache:
        for _ in range(new_tokens):
            nxt = model(tokens)[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], 1)
        return tokens
    cap = T0 + new_tokens
    d_head, n_heads = model.blocks[0].d_head, model.blocks[0].n_heads
    bufs = [(torch.zeros(B, n_heads, cap, d_head), torch.zeros(B, n_heads, cap, d_head)) for _ in model.blocks]
    past, x_tokens = 0, prompt
    for _ in range(new_tokens):
        T = x_tokens.shape[1]
        x = model.embed(x_tokens) + model.pos(torch.arange(past, past + T))
        for b, (kb, vb) in zip(model.blocks, bufs):
            x = block_step(b, x, kb, vb, past)
        past += T
        nxt = model.unembed(model.ln_f(x[:, -1:]))[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, nxt], 1)
        x_tokens = nxt
    return tokens


def gpt2_small_generate(warmup=1, runs=5, uncached_runs=1):
    """GPT-2 small shape, random weights: 8 prompts of 32 tokens, 96 new tokens each, greedy."""
    torch.manual_seed(0)
    model = GPT(12, 768, 12, 3072, 50257, 1024).eval()
    prompt = torch.randint(0, 50257, (8, 32))
    out = {}

    def step(use_cache):
        with torch.no_grad():
            out[use_cache] = generate(model, prompt, 96, use_cache)
    cached = median_seconds(lambda: step(True), warmup, runs)
    uncached = median_seconds(lambda: step(False), 0, uncached_runs) if uncached_runs > 0 else float("nan")
    same = bool(torch.equal(out[True], out[False])) if uncached_runs > 0 else None
    return cached, runs, uncached, same


def trunk(model, tokens):
    """The residual stream after ln_f [B, T, D]: every block once, no unembedding."""
    x = model.embed(tokens) + model.pos(torch.arange(tokens.shape[1]))
    for i, b in enumerate(model.blocks):
        x = b(x, model.mask, None, i)
    return model.ln_f(x)


def sample(model, prompt, new_tokens, eos, generator):
    """Sampling (temperature 1) with a preallocated KV cache; returns tokens [B, T0 + n], the raw log-prob of each
    sampled token [B, n] and the generated mask [B, n] (a row stops after its EOS; later steps are padded with EOS)."""
    B, T0 = prompt.shape
    cap = T0 + new_tokens
    d_head, n_heads = model.blocks[0].d_head, model.blocks[0].n_heads
    bufs = [(torch.zeros(B, n_heads, cap, d_head), torch.zeros(B, n_heads, cap, d_head)) for _ in model.blocks]
    finished = torch.zeros(B, dtype=torch.bool)
    past, x_tokens, out, logps, masks = 0, prompt, [], [], []
    for _ in range(new_tokens):
        T = x_tokens.shape[1]
        x = model.embed(x_tokens) + model.pos(torch.arange(past, past + T))
        for b, (kb, vb) in zip(model.blocks, bufs):
            x = block_step(b, x, kb, vb, past)
        past += T
        logits = model.unembed(model.ln_f(x[:, -1]))                               # [B, V]
        logp = logits.log_softmax(-1)
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)        # [B, 1]
        active = ~finished
        chosen_logp = torch.where(active, logp.gather(-1, nxt).squeeze(-1), torch.zeros(B))
        nxt = torch.where(active.unsqueeze(1), nxt, torch.full_like(nxt, eos))
        out.append(nxt); logps.append(chosen_logp); masks.append(active)
        finished = finished | (nxt.squeeze(1) == eos)
        if bool(finished.all()):
            break
        x_tokens = nxt
    return torch.cat([prompt] + out, 1), torch.stack(logps, 1), torch.stack(masks, 1)


def ppo_rollout(warmup=1, runs=3):
    """One PPO-RLHF rollout, GPT-2 small shape, random weights: 16 prompts of 32 tokens, 64 new tokens sampled with
    the KV cache (temperature 1, EOS 50256 ends a row), then the frozen reference's log-probs of the completion tokens
    (ln_f output unembedded from position P - 1 on) and the value pass (trunk + a linear value head), as the .NET
    side's Rollouts.Collect does."""
    torch.manual_seed(0)
    policy = GPT(12, 768, 12, 3072, 50257, 1024).eval()
    reference = copy.deepcopy(policy).requires_grad_(False)
    v_head = nn.Linear(768, 1)
    prompt = torch.randint(0, 50257, (16, 32))
    P = prompt.shape[1]
    gen = torch.Generator().manual_seed(0)

    def step():
        with torch.no_grad():
            tokens, logprobs, mask = sample(policy, prompt, 64, 50256, gen)
            T = tokens.shape[1] - P
            logits = reference.unembed(trunk(reference, tokens)[:, P - 1:])         # [B, T + 1, V]
            ref_logprobs = -F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, P:].reshape(-1),
                                            reduction="none").view(-1, T)
            values = v_head(trunk(policy, tokens)).squeeze(-1)[:, P - 1:-1]
            m = mask.float()
            return logprobs * m, ref_logprobs * m, values * m
    return median_seconds(step, warmup, runs), runs


def median_seconds(step, warmup, runs):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def attn_only_train_step(warmup=3, runs=20):
    torch.manual_seed(0)
    model = GPT(2, 64, 8, 0, 64, 65, attn_only=True)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    tokens = torch.randint(0, 64, (64, 65))

    def step():
        opt.zero_grad()
        logits = model(tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, 64), tokens[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
    return median_seconds(step, warmup, runs), runs


def gpt2_small(cache, warmup=1, runs=5):
    torch.manual_seed(0)
    model = GPT(12, 768, 12, 3072, 50257, 1024).eval()
    tokens = torch.randint(0, 50257, (4, 128))

    def step():
        with torch.no_grad():
            model(tokens, {} if cache else None)
    return median_seconds(step, warmup, runs), runs


def gpt2_small_cache_overhead(warmup=2, pairs=11):
    """run_with_cache / forward measured in interleaved pairs on one model (order alternating within each pair),
    the median of the per-pair ratios: drift in machine load hits both halves of a pair alike."""
    torch.manual_seed(0)
    model = GPT(12, 768, 12, 3072, 50257, 1024).eval()
    tokens = torch.randint(0, 50257, (4, 128))

    def timed(cache):
        with torch.no_grad():
            t = time.perf_counter()
            model(tokens, {} if cache else None)
            return time.perf_counter() - t
    for _ in range(warmup):
        timed(False), timed(True)
    ratios = []
    for i in range(pairs):
        if i % 2 == 0:
            f = timed(False); c = timed(True)
        else:
            c = timed(True); f = timed(False)
        ratios.append(c / f)
    return statistics.median(ratios), pairs


def matmul_peak(n=2048, warmup=5, runs=15):
    a, b = torch.randn(n, n), torch.randn(n, n)
    s = median_seconds(lambda: a @ b, warmup, runs)
    return s, runs, 2.0 * n ** 3 / s / 1e9


def dpo_step(warmup=1, runs=5):
    """Sigmoid DPO, GPT-2 small shape (random weights): 4 pairs x (64 prompt + 64 completion) tokens, policy forward
    with autograd, frozen reference under no_grad, summed completion log-probs, TRL's loss and metrics, AdamW step."""
    torch.manual_seed(0)
    policy = GPT(12, 768, 12, 3072, 50257, 1024).train()
    reference = GPT(12, 768, 12, 3072, 50257, 1024).eval()
    reference.load_state_dict(policy.state_dict())
    for p in reference.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), 1e-6)
    pairs, prompt_len, completion_len, beta = 4, 64, 64, 0.1
    prompt = torch.randint(0, 50257, (pairs, prompt_len))
    tokens = torch.cat([torch.cat([prompt, torch.randint(0, 50257, (pairs, completion_len))], 1),
                        torch.cat([prompt, torch.randint(0, 50257, (pairs, completion_len))], 1)], 0)
    mask = torch.cat([torch.zeros(2 * pairs, prompt_len), torch.ones(2 * pairs, completion_len)], 1)[:, 1:]

    def logps(logits):
        per_token = -F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                                     reduction="none").view(tokens.shape[0], -1)
        return (per_token * mask).sum(1)

    def step():
        opt.zero_grad()
        logits = policy(tokens)
        policy_logps = logps(logits)
        with torch.no_grad():
            ref_logps = logps(reference(tokens))
        chosen, rejected = policy_logps.chunk(2)
        ref_chosen, ref_rejected = ref_logps.chunk(2)
        delta = (chosen - ref_chosen) - (rejected - ref_rejected)
        loss = -F.logsigmoid(beta * delta).mean()
        with torch.no_grad():   # TRL's metrics
            chosen_rewards, rejected_rewards = beta * (chosen - ref_chosen), beta * (rejected - ref_rejected)
            metrics = [chosen_rewards.mean(), rejected_rewards.mean(), (chosen_rewards > rejected_rewards).float().mean(),
                       (chosen_rewards - rejected_rewards).mean(), chosen.mean(), rejected.mean()]
            mean_logit = (logits[:, :-1].mean(-1) * mask).sum(1)
            metrics += [mean_logit[:pairs].sum() / mask[:pairs].sum(), mean_logit[pairs:].sum() / mask[pairs:].sum()]
        loss.backward()
        opt.step()
    return median_seconds(step, warmup, runs), runs


def sae_train_step(topk=False, warmup=2, runs=5, bdec_vector_grad=False):
    """Standard SAE (d_in 512, d_sae 4096, batch 2048): x - b_dec, addmm encoder, ReLU, addmm decoder, MSE summed over
    d_in + L1 scaled by decoder row norms (SAELens' standard training SAE), backward, Adam. topk: TopK (k 64) instead, no L1.
    bdec_vector_grad: the same values, but b_dec's gradient through the encoder comes from a vector product (as the .NET
    library computes it) instead of autograd's gradient of the whole input x - b_dec (one matmul fewer)."""
    torch.manual_seed(0)
    d_in, d_sae, n = 512, 4096, 2048
    w_dec = torch.empty(d_sae, d_in).uniform_(-math.sqrt(6 / d_in), math.sqrt(6 / d_in))
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * 0.1
    W_dec = nn.Parameter(w_dec.clone())
    W_enc = nn.Parameter(w_dec.t().contiguous())
    b_enc, b_dec = nn.Parameter(torch.zeros(d_sae)), nn.Parameter(torch.zeros(d_in))
    opt = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=3e-4)
    x = torch.randn(n, d_in)

    def step():
        opt.zero_grad()
        if bdec_vector_grad:
            shift = b_dec.detach() - b_dec                      # zero; carries b_dec's gradient
            pre = torch.addmm(b_enc + shift @ W_enc.detach(), x - b_dec.detach(), W_enc)
        else:
            pre = torch.addmm(b_enc, x - b_dec, W_enc)
        if topk:
            v, i = pre.topk(64, dim=-1, sorted=False)
            acts = torch.zeros_like(pre).scatter(-1, i, v.relu())
        else:
            acts = pre.relu()
        out = torch.addmm(b_dec, acts, W_dec)
        loss = F.mse_loss(out, x, reduction="sum") / n
        if not topk:
            loss = loss + 5.0 * acts.sum(0).dot(W_dec.norm(dim=1)) / n
        loss.backward()
        opt.step()
    return median_seconds(step, warmup, runs), runs


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2
    torch.set_num_threads(threads)
    quick = "--quick" in sys.argv
    # --only a,b runs just those workloads (the names bench uses); default: all of them.
    only = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")), None)
    want = (lambda n: True) if not only else (lambda n: n in only.split(","))

    def emit(line):
        print(json.dumps(line), flush=True)
    if want("matmul_peak"):
        s, runs, gflops = matmul_peak()
        emit({"name": "matmul_peak", "median_s": s, "runs": runs, "gflops": gflops,
              "side": "pytorch", "version": torch.__version__, "threads": threads})
    if want("attn_only_train_step"):
        s, runs = attn_only_train_step()
        emit({"name": "attn_only_train_step", "median_s": s, "runs": runs, "side": "pytorch"})
    if want("gpt2_small_forward"):
        s, runs = gpt2_small(cache=False)
        emit({"name": "gpt2_small_forward", "median_s": s, "runs": runs, "side": "pytorch"})
    if want("gpt2_small_run_with_cache"):
        s, runs = gpt2_small(cache=True)
        emit({"name": "gpt2_small_run_with_cache", "median_s": s, "runs": runs, "side": "pytorch"})
    if want("gpt2_small_forward") and want("gpt2_small_run_with_cache"):
        r, pairs = gpt2_small_cache_overhead(pairs=5 if quick else 11)
        emit({"name": "gpt2_small_cache_overhead", "ratio": r, "pairs": pairs, "side": "pytorch"})
    if want("gpt2_small_generate"):
        s, runs, uncached, same = gpt2_small_generate(runs=1 if quick else 5, uncached_runs=0 if quick else 1)
        line = {"name": "gpt2_small_generate", "median_s": s, "runs": runs, "side": "pytorch"}
        if not math.isnan(uncached):
            line.update({"uncached_s": uncached, "cache_speedup": round(uncached / s, 2), "same_tokens": same})
        emit(line)
    if want("dpo_step"):
        s, runs = dpo_step(runs=3 if quick else 7)
        emit({"name": "dpo_step", "median_s": s, "runs": runs, "side": "pytorch"})
    if want("ppo_rollout"):
        s, runs = ppo_rollout(runs=1 if quick else 3)
        emit({"name": "ppo_rollout", "median_s": s, "runs": runs, "side": "pytorch"})
    if want("sae_train_step"):
        s, runs = sae_train_step(runs=3 if quick else 7)
        topk_s, _ = sae_train_step(topk=True, runs=3 if quick else 7)
        vec_s, _ = sae_train_step(runs=3 if quick else 7, bdec_vector_grad=True)
        emit({"name": "sae_train_step", "median_s": s, "runs": runs, "side": "pytorch", "topk_s": topk_s,
              "bdec_vector_grad_s": vec_s})


if __name__ == "__main__":
    main()
