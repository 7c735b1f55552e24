# The PyTorch anchor of bench/run.ts: forward + backward of dense causal
# scaled_dot_product_attention on the cpu, f32, same shapes; prints {T: {"ms": best}} as JSON.
import json
import sys
import time

import torch

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
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        y.sum().backward()
        best = min(best, (time.perf_counter() - t0) * 1000)
        q.grad = k.grad = v.grad = None
    out[T] = {"ms": best}
print(json.dumps(out))
