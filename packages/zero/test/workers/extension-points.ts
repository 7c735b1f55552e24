// One rank of the extension-point test: the probe plugin's comm backend (chosen by DS_COMM_BACKEND),
// engine (the model carries the marker), offload tier (offload_optimizer.device 'cpu') and attention
// kernel (the GPT is built with its name) against a plain run with core's defaults, same seeds.
// Prints {"probe": {...losses, record}, "plain": {...losses}} as one JSON line.
import { trainSteps, TINY_GPT } from '@ds-internal/gpt-fixtures';
import { initialize, type Distributed } from '@ds/core';
import { GPT } from '@ds/tensor';

import { zero } from '../../src/index.js';
import { newRecord, PROBE_MODEL, probePlugin, ProbeEngine } from '../probe-plugin.js';

const steps = 4;
const config = (offload: boolean) => ({
  train_micro_batch_size_per_gpu: 1,
  gradient_accumulation_steps: 2,
  optimizer: { type: 'AdamW', params: { lr: 1e-2, weight_decay: 0.01 } },
  zero_optimization: { stage: 2, reduce_bucket_size: 700, sub_group_size: 300, ...(offload ? { offload_optimizer: { device: 'cpu', pin_memory: true } } : {}) },
  ...(offload ? { probe: { reducer: true } } : {}),
});

const rec = newRecord();
const model = new GPT({ ...TINY_GPT, attentionKernel: 'probe-attention' });
(model as unknown as Record<symbol, unknown>)[PROBE_MODEL] = true;
const probe = await initialize({ model, config: config(true), plugins: [zero(), probePlugin(rec)], log: () => {} });
const probeLosses = await trainSteps(probe.engine, 0, steps, probe.engine.rank);
const probeMasters = Object.fromEntries([...(await probe.engine.stateManager.masterWeights())].map(([k, v]) => [k, [...v]]));
const isProbeEngine = probe.engine instanceof ProbeEngine;
const backendName = probe.engine.groups.data?.backend;
const dist: Distributed | null = probe.engine.dist;
probe.engine.destroy();

// The same job with core's defaults: cpu backend (this rank's existing group), dense kernel, no offload.
const plain = await initialize({ model: new GPT(TINY_GPT), config: config(false), plugins: [zero()], dist, log: () => {} });
const plainLosses = await trainSteps(plain.engine, 0, steps, plain.engine.rank);
const plainMasters = Object.fromEntries([...(await plain.engine.stateManager.masterWeights())].map(([k, v]) => [k, [...v]]));
plain.engine.destroy();

// Only the tier: the offloaded optimizer state must give the plain run's weights exactly.
const tierOnly = await initialize({ model: new GPT(TINY_GPT), config: config(true), plugins: [zero(), probePlugin(newRecord())], dist, log: () => {} });
await trainSteps(tierOnly.engine, 0, steps, tierOnly.engine.rank);
const tierMasters = Object.fromEntries([...(await tierOnly.engine.stateManager.masterWeights())].map(([k, v]) => [k, [...v]]));
tierOnly.engine.destroy();
console.log(JSON.stringify({ probe: { losses: probeLosses, masters: probeMasters, isProbeEngine, backendName, record: rec }, plain: { losses: plainLosses, masters: plainMasters }, tierMasters }));
await dist?.destroy();
