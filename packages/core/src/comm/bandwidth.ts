// Bandwidth definitions. Two conventions exist and both are kept, each where it belongs:
// - nccl-tests (ds-bench, bench/): algbw = S / t with S the full array (allGather: the gathered
//   output, reduceScatter: the input), busbw = algbw x factor; GB/s = 1e9 bytes/s.
// - DeepSpeed's comms logger: message size is the per-rank buffer; allGather/reduceScatter scale it
//   by n; allReduce algbw counts 2 x size; units are Gbps (bytes * 8 / 1e9 per second).
import type { CommOpName } from './types.js';

/** nccl-tests' bus bandwidth factor for an op over n ranks. */
export function busFactor(op: CommOpName, n: number): number {
  if (n <= 1) return op === 'allReduce' || op === 'reduceScatter' || op === 'allGather' || op === 'allToAll' ? 0 : 1;
  switch (op) {
    case 'allReduce':
      return (2 * (n - 1)) / n;
    case 'reduceScatter':
    case 'allGather':
    case 'allToAll':
      return (n - 1) / n;
    default:
      return 1;
  }
}

/** nccl-tests: algbw and busbw in GB/s for `bytes` (the full array) moved in `seconds`. */
export function ncclBandwidth(op: CommOpName, n: number, bytes: number, seconds: number): { algbw: number; busbw: number } {
  const algbw = bytes / seconds / 1e9;
  return { algbw, busbw: algbw * busFactor(op, n) };
}

/** DeepSpeed comms logger: algbw and busbw in Gbps for a per-rank message of `bytes` in `ms`. */
export function deepspeedBandwidth(op: CommOpName, n: number, bytes: number, ms: number): { algbw: number; busbw: number } {
  const gbps = (b: number): number => (ms > 0 ? (b * 8) / 1e6 / ms : 0);
  switch (op) {
    case 'allReduce':
      return { algbw: gbps(2 * bytes), busbw: gbps(bytes) * ((2 * (n - 1)) / Math.max(n, 1)) };
    case 'allGather':
    case 'reduceScatter':
      return { algbw: gbps(bytes * n), busbw: gbps(bytes * n) * ((n - 1) / Math.max(n, 1)) };
    case 'allToAll':
      return { algbw: gbps(bytes), busbw: gbps(bytes) * ((n - 1) / Math.max(n, 1)) };
    default:
      return { algbw: gbps(bytes), busbw: gbps(bytes) };
  }
}
