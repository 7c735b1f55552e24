// The cuda benchmarks, in the package so that a GPU machine with no compiler and no TypeScript runs
// them from dist (scripts/device-check/run.mjs), and `tsx bench/cuda.ts` runs the same code:
//   gemm_bf16_8192_cuda             bf16 8192^3 product (f32 accumulate, bf16 out) through cuBLASLt, TFLOP/s
//   gpt2_124m_tokens_per_s_cuda     GPT-2 124M trained on 'cuda' (bf16 autocast, f32 AdamW), seq 1024,
//                                   when the runtime runs tensors on 'cuda'; with its MFU
// Anchors, measured in the same run by `python3 -c` with torch on the same GPU: torch.matmul in bf16 at
// 8192^3, and the same GPT-2 step in PyTorch (bf16 autocast, scaled_dot_product_attention, fused AdamW).
// Rows have the shape of ARCHITECTURE.md section 6 (@ds-internal/bench-kit's Row).
import { spawnSync } from 'node:child_process';

import { zeros, randint } from '../create.js';
import { cudaStatus } from '../native/load-cuda.js';
import { GPT as GPTModel, gptTrainFlopsPerToken } from '../nn/gpt.js';
import { gptTrainer } from '../nn/gpt-trainer.js';
import { readTensorEnv } from '../env.js';
import { createCudaDevice, type CudaDevice } from './cuda.js';
import { DeviceArray } from './device-array.js';

const GEMM_N = 8192;
const GEMM_REPS = 20;
const GPT = { vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, nEmbd: 768 };
const GPT_BATCH = 8;
const GPT_WARMUP = 2;
const GPT_STEPS = 5;

/** One result row: `ratio` above 1 is better; `config.note` is printed, `config.anchorMissing` says why there is no anchor. */
export interface CudaBenchRow {
  metric: string;
  value: number;
  unit: string;
  anchor: string | null;
  anchorValue: number | null;
  ratio: number | null;
  config: Record<string, unknown>;
}

export interface CudaBenchOptions {
  /** The device to measure (default the GPU of LOCAL_RANK, as the runtime opens it; the GPT row uses the runtime's). */
  device?: CudaDevice;
  /** Measure the GPT-2 row too (default true). */
  gpt?: boolean;
  /** Measure the PyTorch anchors with this interpreter (default 'python3'); null skips them. */
  python?: string | null;
  /** Called with each row as soon as it is measured (so a run cut short keeps the rows before). */
  onRow?: (row: CudaBenchRow) => void;
  /** Progress lines (default none). */
  log?: (line: string) => void;
}

export interface CudaBenchResult {
  available: boolean;
  /** Why cuda cannot be used here (null when it can). */
  reason: string | null;
  rows: CudaBenchRow[];
  /** Rows that were not measured, with why. */
  missing: Record<string, string>;
}

/** Dense bf16 tensor-core peaks (NVIDIA datasheets, SXM parts) for MFU; null for other GPUs. */
function bf16Peak(gpu: string): number | null {
  if (/H100|H200|GH200/.test(gpu)) return 989e12;
  if (/A100/.test(gpu)) return 312e12;
  return null;
}


/** Runs a Python snippet that prints one JSON line last; a string says why there is no figure. */
function python<T>(exe: string | null, src: string, timeoutMs: number): T | string {
  if (exe === null) return 'anchors were not asked for (python: null)';
  const r = spawnSync(exe, ['-c', src], { encoding: 'utf8', timeout: timeoutMs });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0) return `${exe} -c failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' ')}`;
  try {
    return JSON.parse(last) as T;
  } catch {
    return `${exe} -c printed no JSON: ${last.slice(0, 200)}`;
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

function gemmRow(d: CudaDevice, gpu: string, exe: string | null): CudaBenchRow {
  const n = GEMM_N;
  const arr = () => new DeviceArray<Uint16Array>(d.alloc(n * n * 2, { uninitialized: true }), 'u16', 0, n * n);
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
  const torch = python<{ tflops: number; torch: string }>(exe, TORCH_GEMM, 120_000);
  const anchorValue = typeof torch === 'string' ? null : torch.tflops;
  const peak = bf16Peak(gpu);
  return {
    metric: 'gemm_bf16_8192_cuda',
    value,
    unit: 'TFLOP/s',
    anchor: typeof torch === 'string' ? null : `torch.matmul bf16 ${n}^3 (torch ${torch.torch}), same GPU, same run`,
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

/** GPT-2 124M on 'cuda' through the default runtime, or why it cannot run here yet. */
function gptRow(gpu: string, exe: string | null): CudaBenchRow | string {
  try {
    const probe = zeros([2], { device: 'cuda' });
    const on = probe.device;
    probe.dispose();
    if (on !== 'cuda') return `zeros([2], { device: 'cuda' }) made a tensor on '${on}'`;
  } catch (err) {
    return `tensors on 'cuda' are not supported by the runtime yet: ${(err as Error).message}`;
  }
  const gpt = new GPTModel({ ...GPT, seed: 0 }).to('cuda');
  const ids = randint([GPT_BATCH, GPT.blockSize], GPT.vocabSize, { seed: 1 }).to('cuda').keep();
  const targets = randint([GPT_BATCH, GPT.blockSize], GPT.vocabSize, { seed: 2 }).to('cuda').keep();
  const trainer = gptTrainer(gpt, ids, targets);
  let loss = NaN;
  const step = () => void (loss = trainer.step());
  for (let i = 0; i < GPT_WARMUP + 1; i++) step();
  const t0 = performance.now();
  for (let i = 0; i < GPT_STEPS; i++) step();
  const value = (GPT_BATCH * GPT.blockSize * GPT_STEPS) / ((performance.now() - t0) / 1000);
  trainer.dispose();
  const parameters = gpt.numParameters();
  const flops = gptTrainFlopsPerToken(parameters, GPT, GPT.blockSize);
  const peak = bf16Peak(gpu);
  const torch = python<{ tokens_per_s: number; torch: string }>(exe, TORCH_GPT, 240_000);
  const anchorValue = typeof torch === 'string' ? null : torch.tokens_per_s;
  const mfu = peak ? (value * flops) / peak : null;
  return {
    metric: 'gpt2_124m_tokens_per_s_cuda',
    value,
    unit: 'tokens/s',
    anchor: typeof torch === 'string' ? null : `PyTorch ${torch.torch} eager, bf16 autocast, SDPA, fused AdamW, same model and GPU, same run`,
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

/**
 * Measures the cuda rows (with their PyTorch anchors). Where cuda is unavailable it returns at once
 * with the reason; a row that cannot be measured is named in `missing` with why.
 */
export function cudaBench(opts: CudaBenchOptions = {}): CudaBenchResult {
  const status = cudaStatus();
  if (!opts.device && !status.available) return { available: false, reason: status.reason, rows: [], missing: {} };
  const log = opts.log ?? (() => {});
  const exe = opts.python === undefined ? 'python3' : opts.python;
  let d: CudaDevice;
  try {
    d = opts.device ?? createCudaDevice({ index: readTensorEnv().localRank });
  } catch (err) {
    return { available: false, reason: (err as Error).message, rows: [], missing: {} };
  }
  log(d.describe());
  const gpu = status.gpu ?? 'unknown GPU';
  const rows: CudaBenchRow[] = [];
  const missing: Record<string, string> = {};
  const add = (metric: string, measure: () => CudaBenchRow | string) => {
    let row: CudaBenchRow | string;
    try {
      row = measure();
    } catch (err) {
      row = `the run failed: ${(err as Error).stack ?? (err as Error).message}`;
    }
    if (typeof row === 'string') {
      missing[metric] = row;
      log(`${metric}: not measured: ${row}`);
      return;
    }
    rows.push(row);
    log(`${metric}: ${row.value.toFixed(1)} ${row.unit} (torch ${row.anchorValue?.toFixed(1) ?? '-'})`);
    opts.onRow?.(row);
  };
  add('gemm_bf16_8192_cuda', () => gemmRow(d, gpu, exe));
  if (opts.gpt !== false) add('gpt2_124m_tokens_per_s_cuda', () => gptRow(gpu, exe));
  return { available: true, reason: null, rows, missing };
}
