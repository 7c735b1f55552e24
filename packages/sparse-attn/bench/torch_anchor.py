# The PyTorch anchor of bench/run.ts: forward + backward of dense causal attention on the cpu, f32,
# same shapes; prints {T: {"ms": best, "impl": ...}} as JSON. scaled_dot_product_attention where torch
# has it (2.0+); torch 1.13 (Debian 12's, our model anchor) has not: there it is the same math written
# out, softmax(q k^T * scale + causal mask) v, as users of 1.13 write it.
import json
import sys
import time

import torch

SDPA = getattr(torch.nn.functional, "scaled_dot_product_attention", None)


def attention(q, k, v):
    if SDPA is not None:
        return SDPA(q, k, v, is_causal=True)
    t = q.shape[-2]
    scores = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    mask = torch.ones(t, t, dtype=torch.bool).triu(1)
    return torch.matmul(torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1), v)


args = json.loads(sys.argv[1])
B, H, D = args["B"], args["H"], args["D"]
out = {}
for T in args["lengths"]:
    q, k, v = (torch.rand(B, H, T, D, requires_grad=True) - 0.5 for _ in range(3))
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    reps = 1 if args["smoke"] or T >= 8192 else 2 if T >= 4096 else 3
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        y = attention(q, k, v)
        y.sum().backward()
        best = min(best, (time.perf_counter() - t0) * 1000)
        q.grad = k.grad = v.grad = None
    out[T] = {"ms": best, "impl": "scaled_dot_product_attention" if SDPA is not None else "matmul + masked softmax (torch < 2.0)"}
print(json.dumps(out))
