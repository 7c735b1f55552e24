#!/usr/bin/env python3
"""Writes test/fixtures/gpt_tiny.safetensors: a tiny GPT-2, its inputs, and PyTorch's loss and gradients.

Run by hand (CI only reads the committed fixture):
    /usr/bin/python3 packages/tensor/scripts/golden/make_gpt_fixture.py
Pinned to Debian's python3-torch 1.13. No safetensors package is needed: the format (8-byte
little-endian header length, JSON header, raw little-endian data) is written directly.

The model is nanoGPT's GPT-2 (learned positions, pre-LN, tied embedding, tanh GELU, bias, no
dropout), so parameter names match @ds/tensor's GPT. Weights are drawn in float32 from a seeded
generator; the forward and backward then run in float64 from those float32 values, so the stored
loss and gradients are the exact answers our float32 and bf16 runs are measured against.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

CONFIG = dict(vocabSize=64, blockSize=16, nLayer=2, nHead=2, nEmbd=32, batch=2, seq=16)
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "gpt_tiny.safetensors")


def make_weights(gen):
    c, v, t, L = CONFIG["nEmbd"], CONFIG["vocabSize"], CONFIG["blockSize"], CONFIG["nLayer"]
    w = {}

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * std

    w["transformer.wte.weight"] = normal(v, c, std=0.1)
    w["transformer.wpe.weight"] = normal(t, c, std=0.1)
    for i in range(L):
        p = f"transformer.h.{i}."
        # LayerNorm affine and biases are randomised too, so every gradient path is exercised.
        w[p + "ln_1.weight"] = 1 + normal(c, std=0.1)
        w[p + "ln_1.bias"] = normal(c, std=0.1)
        w[p + "attn.c_attn.weight"] = normal(3 * c, c, std=0.1)
        w[p + "attn.c_attn.bias"] = normal(3 * c, std=0.05)
        w[p + "attn.c_proj.weight"] = normal(c, c, std=0.1)
        w[p + "attn.c_proj.bias"] = normal(c, std=0.05)
        w[p + "ln_2.weight"] = 1 + normal(c, std=0.1)
        w[p + "ln_2.bias"] = normal(c, std=0.1)
        w[p + "mlp.c_fc.weight"] = normal(4 * c, c, std=0.1)
        w[p + "mlp.c_fc.bias"] = normal(4 * c, std=0.05)
        w[p + "mlp.c_proj.weight"] = normal(c, 4 * c, std=0.1)
        w[p + "mlp.c_proj.bias"] = normal(c, std=0.05)
    w["transformer.ln_f.weight"] = 1 + normal(c, std=0.1)
    w["transformer.ln_f.bias"] = normal(c, std=0.1)
    return w


def forward(p, ids, targets):
    """nanoGPT's forward written out functionally (float64)."""
    c, h = CONFIG["nEmbd"], CONFIG["nHead"]
    b, t = ids.shape
    x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][torch.arange(t)]
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for i in range(CONFIG["nLayer"]):
        q = f"transformer.h.{i}."
        a = F.layer_norm(x, (c,), p[q + "ln_1.weight"], p[q + "ln_1.bias"], 1e-5)
        qkv = F.linear(a, p[q + "attn.c_attn.weight"], p[q + "attn.c_attn.bias"])
        qq, kk, vv = qkv.split(c, dim=2)
        qq, kk, vv = (z.view(b, t, h, c // h).transpose(1, 2) for z in (qq, kk, vv))
        att = (qq @ kk.transpose(-2, -1)) / math.sqrt(c // h)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ vv).transpose(1, 2).contiguous().view(b, t, c)
        x = x + F.linear(y, p[q + "attn.c_proj.weight"], p[q + "attn.c_proj.bias"])
        m = F.layer_norm(x, (c,), p[q + "ln_2.weight"], p[q + "ln_2.bias"], 1e-5)
        m = F.gelu(F.linear(m, p[q + "mlp.c_fc.weight"], p[q + "mlp.c_fc.bias"]), approximate="tanh")
        x = x + F.linear(m, p[q + "mlp.c_proj.weight"], p[q + "mlp.c_proj.bias"])
    x = F.layer_norm(x, (c,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], 1e-5)
    logits = F.linear(x, p["transformer.wte.weight"])
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
    return logits, loss


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, (dtype, t) in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for raw in blobs:
            f.write(raw)


def main():
    gen = torch.Generator().manual_seed(1234)
    w32 = make_weights(gen)
    ids = torch.randint(0, CONFIG["vocabSize"], (CONFIG["batch"], CONFIG["seq"]), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, CONFIG["vocabSize"], (CONFIG["batch"], CONFIG["seq"]), generator=gen, dtype=torch.int64)
    targets[1, 3] = -1  # one ignored position
    p64 = {k: v.double().requires_grad_(True) for k, v in w32.items()}
    _, loss = forward(p64, ids, targets)
    loss.backward()
    tensors = {"ids": ("I32", ids.int()), "targets": ("I32", targets.int())}
    for k, v in w32.items():
        tensors["weight." + k] = ("F32", v)
    for k, v in p64.items():
        tensors["grad." + k] = ("F64", v.grad.detach())
    meta = {"config": json.dumps(CONFIG), "loss": repr(loss.item()), "torch": torch.__version__}
    write_safetensors(OUT, tensors, meta)
    print(f"loss {loss.item():.10f}; wrote {os.path.getsize(OUT)} bytes to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
