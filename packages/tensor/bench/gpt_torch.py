#!/usr/bin/env python3
"""Anchor for gpt_train_tokens_per_s: the same GPT-2 trained in PyTorch with bf16 autocast on CPU
(or in f32, when the setup asks for "precision": "f32": the bench does on CPUs without AVX-512, where
PyTorch's bf16 has no fast path).

Usage: python3 gpt_torch.py, then requests on stdin (see main): a worker the bench keeps for the run.
Same model as @ds/tensor's GPT (learned positions, pre-LN, tied embedding, tanh GELU, biases,
no dropout), forward + backward + torch.optim.AdamW on f32 parameters, torch.set_num_threads(threads).
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from worker_env import allocator


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.c_attn, self.attn_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.c_fc, self.mlp_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True) if hasattr(F, "scaled_dot_product_attention") else self._attn(q, k, v)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    @staticmethod
    def _attn(q, k, v):
        t = q.size(-2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        att = att.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        return att.softmax(dim=-1) @ v


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["nEmbd"]
        self.wte, self.wpe = nn.Embedding(cfg["vocabSize"], c), nn.Embedding(cfg["blockSize"], c)
        self.blocks = nn.ModuleList(Block(c, cfg["nHead"]) for _ in range(cfg["nLayer"]))
        self.ln_f = nn.LayerNorm(c)

    def forward(self, ids, targets):
        x = self.wte(ids) + self.wpe(torch.arange(ids.size(1)))
        for blk in self.blocks:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))


def main():
    """Serves requests, one JSON object per line on stdin, one JSON answer per line on stdout:
    {"setup": cfg} builds the model, optimizer and batch (seeded); {"steps": n} runs n training steps
    and answers their wall seconds. Kept alive across requests so the bench can alternate rounds of
    its own steps with rounds of these on a shared machine, without paying torch's import each time."""
    state = {}
    for line in sys.stdin:
        req = json.loads(line)
        if "setup" in req:
            cfg = req["setup"]
            torch.manual_seed(0)
            torch.set_num_threads(cfg["threads"])
            model = GPT(cfg)
            state = {
                "cfg": cfg,
                "model": model,
                "opt": torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1),
                "ids": torch.randint(0, cfg["vocabSize"], (cfg["batch"], cfg["seq"])),
                "targets": torch.randint(0, cfg["vocabSize"], (cfg["batch"], cfg["seq"])),
            }
            answer = {"torch": torch.__version__, "allocator": allocator()}
        else:
            t0 = time.perf_counter()
            for _ in range(req["steps"]):
                loss = step(state)
            answer = {"seconds": time.perf_counter() - t0, "loss": loss}
        print(json.dumps(answer), flush=True)


def step(state):
    model, opt = state["model"], state["opt"]
    if state["cfg"].get("precision", "bf16") == "f32":
        loss = model(state["ids"], state["targets"])
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(state["ids"], state["targets"])
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


if __name__ == "__main__":
    main()
