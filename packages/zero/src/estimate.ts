// ZeRO's memory model for model states (parameters, gradients, optimizer states), per rank.
//
// Two views, both printed by `ds-zero estimate`:
// - the ZeRO paper's count for mixed-precision Adam (16-bit params and grads, K = 12 bytes of fp32
//   master weights + momentum + variance): 16 Psi, 4 Psi + 12 Psi/N, 2 Psi + 14 Psi/N, 16 Psi/N;
// - DeepSpeed's estimators (estimate_zero2/zero3_model_states_mem_needs), which also count an fp32
//   gradient buffer (18 bytes per parameter instead of 16), offload and a buffer factor.
import { DSConfigError } from '@ds/core';

/** The `ds-zero estimate` flag of each input, named in errors. */
const FLAG: Record<string, string> = {
  ranks: '--gpus-per-node x --nodes',
  params: '--params',
  totalParams: '--params',
  largestLayerParams: '--largest-layer-params',
  gpusPerNode: '--gpus-per-node',
  nodes: '--nodes',
  bufferFactor: '--buffer-factor',
};

function badInput(name: string, value: number, must: string): DSConfigError {
  const message = `${name} must be ${must}, got ${value}`;
  return new DSConfigError(`${message} (ds-zero estimate ${FLAG[name]})`, [{ path: name, message, value }]);
}

/** Bytes per parameter of fp32 optimizer state for mixed-precision Adam: master 4 + m 4 + v 4. */
export const ADAM_K = 12;

export type ZeroStage = 0 | 1 | 2 | 3;

/** The paper's per-rank model-state bytes at `stage` for `params` parameters over `ranks` data-parallel ranks. */
export function modelStateBytes(stage: ZeroStage, params: number, ranks: number, k = ADAM_K): number {
  if (!(ranks >= 1) || !Number.isInteger(ranks)) throw badInput('ranks', ranks, 'a positive integer');
  if (!(params >= 0)) throw badInput('params', params, '>= 0');
  switch (stage) {
    case 0:
      return (2 + 2 + k) * params;
    case 1:
      return 2 * params + 2 * params + (k * params) / ranks;
    case 2:
      return 2 * params + ((2 + k) * params) / ranks;
    case 3:
      return ((2 + 2 + k) * params) / ranks;
  }
}

export interface EstimateRow {
  /** Options column, in DeepSpeed's words, e.g. "offload_param=none, offload_optimizer=cpu, zero_init=1". */
  options: string;
  perCpuBytes: number;
  perGpuBytes: number;
}

export interface EstimateInput {
  totalParams: number;
  /** Parameters of the largest single layer (tensor gathered whole under stage 3). */
  largestLayerParams: number;
  gpusPerNode: number;
  nodes: number;
  /** DeepSpeed's additional_buffer_factor (1.5). */
  bufferFactor?: number;
}

function check(input: EstimateInput): Required<EstimateInput> {
  const { totalParams, largestLayerParams, gpusPerNode, nodes } = input;
  const bufferFactor = input.bufferFactor ?? 1.5;
  for (const [k, v] of Object.entries({ totalParams, largestLayerParams, bufferFactor })) {
    if (!(Number.isFinite(v) && v >= 0)) throw badInput(k, v, 'a number >= 0');
  }
  for (const [k, v] of Object.entries({ gpusPerNode, nodes })) {
    if (!(Number.isInteger(v) && v >= 1)) throw badInput(k, v, 'an integer >= 1');
  }
  return { totalParams, largestLayerParams, gpusPerNode, nodes, bufferFactor };
}

/** DeepSpeed's ZeRO-2 estimate: rows for offload_optimizer = cpu and none. */
export function estimateZero2(input: EstimateInput): EstimateRow[] {
  const { totalParams: p, gpusPerNode: gpn, nodes, bufferFactor: f } = check(input);
  const gpus = gpn * nodes;
  return [
    { options: 'offload_optimizer=cpu', perGpuBytes: 2 * p, perCpuBytes: Math.floor(p * Math.max(4 * gpus, 16) * f) },
    { options: 'offload_optimizer=none', perGpuBytes: 2 * p + Math.floor((18 * p) / gpus), perCpuBytes: Math.floor(p * 4 * gpn * f) },
  ];
}

/** DeepSpeed's ZeRO-3 estimate: offload_param x offload_optimizer x zero_init, six rows. */
export function estimateZero3(input: EstimateInput): EstimateRow[] {
  const { totalParams: p, largestLayerParams: llp, gpusPerNode: gpn, nodes, bufferFactor: f } = check(input);
  const gpus = gpn * nodes;
  const perNode = 1 / nodes;
  const largest = 4 * llp;
  const rows: EstimateRow[] = [];
  for (const zeroInit of [1, 0]) {
    rows.push({
      options: `offload_param=cpu , offload_optimizer=cpu , zero_init=${zeroInit}`,
      perGpuBytes: largest,
      perCpuBytes: Math.floor(p * (zeroInit ? 18 * perNode : Math.max(4 * gpn, 18 * perNode)) * f),
    });
  }
  for (const zeroInit of [1, 0]) {
    rows.push({
      options: `offload_param=none, offload_optimizer=cpu , zero_init=${zeroInit}`,
      perGpuBytes: largest + Math.floor((2 * p) / gpus),
      perCpuBytes: Math.floor(p * (zeroInit ? 16 * perNode : Math.max(4 * gpn, 16 * perNode)) * f),
    });
  }
  for (const zeroInit of [1, 0]) {
    rows.push({
      options: `offload_param=none, offload_optimizer=none, zero_init=${zeroInit}`,
      perGpuBytes: largest + Math.floor((18 * p) / gpus),
      perCpuBytes: Math.floor(zeroInit ? llp * 4 * gpn * f : p * 4 * gpn * f),
    });
  }
  return rows;
}
