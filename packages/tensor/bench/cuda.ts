// The cuda benchmarks, run by scripts/device-check.sh on a GPU machine (`npx tsx bench/cuda.ts [outDir]`):
//   gemm_bf16_8192_cuda             bf16 8192^3 product (f32 accumulate, bf16 out) through cuBLASLt, TFLOP/s
//   gpt2_124m_tokens_per_s_cuda     GPT-2 124M trained on 'cuda' (bf16 autocast, f32 AdamW), seq 1024,
//                                   when the runtime runs tensors on 'cuda'; with its MFU
// Anchors, measured in the same run by `python3 -c` with torch on the same GPU: torch.matmul in bf16 at
// 8192^3, and the same GPT-2 step in PyTorch (bf16 autocast, scaled_dot_product_attention, fused AdamW).
// Prints the table last and writes the rows to <outDir>/results.cuda.json (default bench/).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { table, type Row } from '@ds-internal/bench-kit';

import { DeviceArray } from '../src/devices/device-array.js';
import { createCudaDevice, type CudaDevice } from '../src/devices/cuda.js';
import { cudaStatus } from '../src/native/load-cuda.js';

const GEMM_N = 8192;
const GEMM_REPS = 20;
const GPT = { vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, nEmbd: 768 };
const GPT_BATCH = 8;
const GPT_WARMUP = 2;
const GPT_STEPS = 5;

/** Dense bf16 tensor-core peaks (NVIDIA datasheets, SXM parts) for MFU; null for other GPUs. */
function bf16Peak(gpu: string): number | null {
  if (/H100|H200|GH200/.test(gpu)) return 989e12;
  if (/A100/.test(gpu)) return 312e12;
  return null;
}

/** Runs a Python snippet that prints one JSON line last; a string says why there is no figure. */
function python<T>(src: string, timeoutMs: number): T | string {
  const r = spawnSync('python3', ['-c', src], { encoding: 'utf8', timeout: timeoutMs });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0) return `python3 -c failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' ')}`;
  try {
    return JSON.parse(last) as T;
  } catch {
    return `python3 -c printed no JSON: ${last.slice(0, 200)}`;
  }
}

const TORCH_GEMM = `
import json, torch
n = ${GEMM_N}
a = torch.randn(n, n, device='cuda', dtype=torch.bfloat16); b = torch.randn(n, n, device='cuda', dtype=torch.bfloat16)
for _ in range(3): c = a @ b
torch.cuda.synchronize()
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(${GEMM_REPS}): c = a @ b
e.record(); torch.cuda.synchronize()
print(json.dumps({'tflops': 2 * n**3 * ${GEMM_REPS} / (s.elapsed_time(e) / 1e3) / 1e12, 'torch': torch.__version__}))
`;

function gemmRow(d: CudaDevice, gpu: string): Row {
  const n = GEMM_N;
  const bytes = n * n * 2;
  const arr = () => new DeviceArray<Uint16Array>(d.alloc(bytes, { uninitialized: true }), 'u16', 0, n * n);
  const [a, b, c] = [arr(), arr(), arr()];
  const k = d.kernels;
  k.fill('bf16', a, n * n, 0.01);
  k.fill('bf16', b, n * n, -0.02);
  const g = { dtype: 'bf16', outDtype: 'bf16', transA: false, transB: false, batch: 1, m: n, n, k: n, alpha: 1, beta: 0, a, strideA: 0, b, strideB: 0, c, strideC: 0 } as const;
  for (let i = 0; i < 3; i++) k.gemm(g);
  d.synchronize();
  const t0 = performance.now();
  for (let i = 0; i < GEMM_REPS; i++) k.gemm(g);
  d.synchronize();
  const value = (2 * n ** 3 * GEMM_REPS) / ((performance.now() - t0) / 1000) / 1e12;
  for (const x of [a, b, c]) d.free(x.allocation);
  const torch = python<{ tflops: number; torch: string }>(TORCH_GEMM, 120_000);
  const anchorValue = typeof torch === 'string' ? null : torch.tflops;
  const peak = bf16Peak(gpu);
  return {
    metric: 'gemm_bf16_8192_cuda',
    value,
    unit: 'TFLOP/s',
    anchor: anchorValue === null ? null : `torch.matmul bf16 ${n}^3 (torch ${typeof torch === 'string' ? '' : torch.torch}), same GPU, same run`,
    anchorValue,
    ratio: anchorValue ? value / anchorValue : null,
    config: {
      n, reps: GEMM_REPS, gpu, path: 'cuBLASLt, CUBLAS_COMPUTE_32F, bf16 in/out',
      ...(typeof torch === 'string' ? { anchorMissing: torch } : {}),
      note: `${GEMM_REPS} products after 3 warm-up${peak ? `; ${(100 * value * 1e12 / peak).toFixed(0)}% of the ${peak / 1e12} TFLOP/s dense bf16 peak` : ''}`,
    },
  };
}

const TORCH_GPT = `
import json, math, time, torch, torch.nn as nn, torch.nn.functional as F
V, T, L, H, C, B = ${GPT.vocabSize}, ${GPT.blockSize}, ${GPT.nLayer}, ${GPT.nHead}, ${GPT.nEmbd}, ${GPT_BATCH}
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.ln1 = nn.LayerNorm(C); s.qkv = nn.Linear(C, 3 * C); s.proj = nn.Linear(C, C)
        s.ln2 = nn.LayerNorm(C); s.fc = nn.Linear(C, 4 * C); s.out = nn.Linear(4 * C, C)
    def forward(s, x):
        q, k, v = s.qkv(s.ln1(x)).split(C, dim=2)
        q, k, v = [t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + s.proj(y)
        return x + s.out(F.gelu(s.fc(s.ln2(x)), approximate='tanh'))
class GPT(nn.Module):
    def __init__(s):
        super().__init__(); s.wte = nn.Embedding(V, C); s.wpe = nn.Embedding(T, C)
        s.h = nn.ModuleList([Block() for _ in range(L)]); s.ln = nn.LayerNorm(C)
    def forward(s, idx, tgt):
        x = s.wte(idx) + s.wpe(torch.arange(T, device=idx.device))
        for b in s.h: x = b(x)
        logits = F.linear(s.ln(x), s.wte.weight)
        return F.cross_entropy(logits.float().view(-1, V), tgt.view(-1))
m = GPT().cuda(); opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
idx = torch.randint(0, V, (B, T), device='cuda'); tgt = torch.randint(0, V, (B, T), device='cuda')
def step():
    with torch.autocast('cuda', dtype=torch.bfloat16): loss = m(idx, tgt)
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
for _ in range(${GPT_WARMUP} + 1): step()
torch.cuda.synchronize(); t0 = time.perf_counter()
for _ in range(${GPT_STEPS}): step()
torch.cuda.synchronize()
print(json.dumps({'tokens_per_s': B * T * ${GPT_STEPS} / (time.perf_counter() - t0), 'params': sum(p.numel() for p in m.parameters()), 'torch': torch.__version__}))
`;

/** GPT-2 124M on 'cuda' through the tensor runtime, or why it cannot run here yet. */
async function gptRow(gpu: string): Promise<Row | string> {
  const runtime = (await import('../src/runtime.js')) as Record<string, unknown>;
  const register = runtime.registerDeviceFactory as ((name: string, make: () => unknown) => void) | undefined;
  if (typeof register !== 'function') return 'the runtime has no registerDeviceFactory: tensors cannot live on cuda yet';
  register('cuda', () => createCudaDevice());
  const { zeros, randint } = await import('../src/create.js');
  try {
    const probe = zeros([2], { device: 'cuda' });
    if (probe.device !== 'cuda') return `zeros([2], { device: 'cuda' }) made a tensor on '${probe.device}'`;
    probe.dispose();
  } catch (err) {
    return `tensors on 'cuda' are not supported by the runtime yet: ${(err as Error).message}`;
  }
  const { GPT: Model } = await import('../src/nn/gpt.js');
  const { adamwStep } = await import('../src/ops/optim.js');
  const { tidy } = await import('../src/memory/scope.js');
  const { autocast } = runtime as unknown as { autocast: <T>(d: 'bf16', f: () => T) => T };
  const { trainFlopsPerToken } = await import('./gpt.bench.js');
  const gpt = new Model({ ...GPT, seed: 0 }).to('cuda');
  const params = gpt.parameters();
  const moments = new Map(params.map((p) => [p, [zeros(p.shape, { device: 'cuda' }).keep(), zeros(p.shape, { device: 'cuda' }).keep()] as const]));
  const ids = randint([GPT_BATCH, GPT.blockSize], GPT.vocabSize, { seed: 1 }).to('cuda').keep();
  const targets = randint([GPT_BATCH, GPT.blockSize], GPT.vocabSize, { seed: 2 }).to('cuda').keep();
  let stepNo = 0;
  let loss = NaN;
  const step = () => {
    loss = tidy(() => {
      const l = autocast('bf16', () => gpt.call(ids, targets).loss!);
      l.backward();
      return l.item();
    });
    stepNo++;
    for (const p of params) {
      const [m, v] = moments.get(p)!;
      adamwStep(p, p.grad!, m, v, { lr: 1e-4, weightDecay: 0.1, step: stepNo });
    }
    gpt.zeroGrad();
  };
  for (let i = 0; i < GPT_WARMUP + 1; i++) step();
  const t0 = performance.now();
  for (let i = 0; i < GPT_STEPS; i++) step();
  const value = (GPT_BATCH * GPT.blockSize * GPT_STEPS) / ((performance.now() - t0) / 1000);
  const parameters = gpt.numParameters();
  const flops = trainFlopsPerToken(parameters, GPT, GPT.blockSize);
  const peak = bf16Peak(gpu);
  const torch = python<{ tokens_per_s: number; torch: string }>(TORCH_GPT, 240_000);
  const anchorValue = typeof torch === 'string' ? null : torch.tokens_per_s;
  const mfu = peak ? (value * flops) / peak : null;
  return {
    metric: 'gpt2_124m_tokens_per_s_cuda',
    value,
    unit: 'tokens/s',
    anchor: anchorValue === null ? null : `PyTorch ${typeof torch === 'string' ? '' : torch.torch} eager, bf16 autocast, SDPA, fused AdamW, same model and GPU, same run`,
    anchorValue,
    ratio: anchorValue ? value / anchorValue : null,
    config: {
      ...GPT, batch: GPT_BATCH, seq: GPT.blockSize, steps: GPT_STEPS, warmup: GPT_WARMUP, gpu, parameters, flopsPerToken: flops, lastLoss: loss, mfu,
      torchMfu: anchorValue && peak ? (anchorValue * flops) / peak : null,
      ...(typeof torch === 'string' ? { anchorMissing: torch } : {}),
      note: `batch ${GPT_BATCH} x seq ${GPT.blockSize}, ${GPT_STEPS} steps${mfu !== null ? `; MFU ${(100 * mfu).toFixed(1)}%${anchorValue ? `, PyTorch ${(100 * anchorValue * flops / peak!).toFixed(1)}%` : ''}` : ''}`,
    },
  };
}

async function main(): Promise<void> {
  const outDir = process.argv[2] ?? new URL('.', import.meta.url).pathname;
  const status = cudaStatus();
  if (!status.available) {
    console.log(`cuda bench skipped: ${status.reason}`);
    return;
  }
  const d = createCudaDevice();
  console.log(d.describe());
  const gpu = status.gpu ?? 'unknown GPU';
  const rows: Row[] = [gemmRow(d, gpu)];
  console.log(`gemm_bf16_8192_cuda: ${rows[0]!.value.toFixed(1)} TFLOP/s (torch ${rows[0]!.anchorValue?.toFixed(1) ?? '-'})`);
  let gpt: Row | string;
  try {
    gpt = await gptRow(gpu);
  } catch (err) {
    gpt = `the GPT-2 run failed: ${(err as Error).stack ?? (err as Error).message}`;
  }
  if (typeof gpt === 'string') console.log(`gpt2_124m_tokens_per_s_cuda: not measured: ${gpt}`);
  else rows.push(gpt);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'results.cuda.json'), `${JSON.stringify(rows, null, 2)}\n`);
  console.log(`\n${table(rows)}`);
}

await main();
