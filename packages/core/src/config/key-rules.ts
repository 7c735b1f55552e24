// "No key without effect": what a core key set to a non-default value does when this port does not
// act on it. Either DeepSpeed would act and we have not built it, and the key is rejected by name
// with what to do instead (as unbuilt.ts does for whole sections); or DeepSpeed's own effect is none
// (or none on the cpu device), and the key is accepted with a one-line warning saying so. Keys that
// do act are not listed here; packages/core/CONFIG.md names the test that shows each key's effect.
import type { ConfigProblem } from '../errors.js';
import { readPath } from './problems.js';

export interface KeyRule {
  /** Dotted key path, e.g. "checkpoint.load_universal". */
  readonly path: string;
  /** 'unbuilt': an error; 'no-effect': a warning. */
  readonly kind: 'unbuilt' | 'no-effect';
  /** True when the (parsed) value is one the rule is about; `config` is the parsed config so far. */
  readonly applies: (value: unknown, config: Readonly<Record<string, unknown>>) => boolean;
  /** Follows "'<path>' ": what DeepSpeed does with it and why it is rejected or inert here. */
  readonly why: string;
}

const isTrue = (v: unknown) => v === true;
const isFalse = (v: unknown) => v === false;
const fp16On = (c: Readonly<Record<string, unknown>>) => (c.fp16 as { enabled?: boolean } | undefined)?.enabled === true;

export const KEY_RULES: readonly KeyRule[] = [
  // activation_checkpointing: the switches that need what is not built.
  {
    path: 'activation_checkpointing.contiguous_memory_optimization',
    kind: 'unbuilt',
    applies: isTrue,
    why: 'copies partitioned checkpoints into preallocated contiguous buffers (one slot per layer), which is not built (partition_activations is: it splits the checkpoints without those buffers); set it to false',
  },
  {
    path: 'activation_checkpointing.profile',
    kind: 'unbuilt',
    applies: isTrue,
    why: 'times each checkpointed forward and recomputation; that profiling is not built (wall_clock_breakdown times forward and backward as a whole); set it to false',
  },
  {
    path: 'activation_checkpointing.synchronize_checkpoint_boundary',
    kind: 'no-effect',
    applies: isTrue,
    why: 'has no effect on the cpu device: it synchronizes the device at each checkpoint, and cpu kernels are synchronous',
  },
  // checkpoint
  {
    path: 'checkpoint.load_universal',
    kind: 'unbuilt',
    applies: isTrue,
    why:
      "loads DeepSpeed's universal format (ds_to_universal.py output named by 'latest_universal'), which is not built; " +
      'checkpoints of this port load on any number of data-parallel ranks as they are (ZeRO partitions are re-cut on load), so remove the key',
  },
  {
    path: 'checkpoint.use_node_local_storage',
    kind: 'unbuilt',
    applies: isTrue,
    why:
      "has each node's local rank 0 write the non-partitioned files to a node-local disk, which is not built: global rank 0 writes them and " +
      "loading reads every rank's partition file, so the checkpoint directory must be shared by all nodes; remove the key",
  },
  {
    path: 'checkpoint.parallel_write.pipeline_stage',
    kind: 'no-effect',
    applies: isTrue,
    why: 'has no effect: it lets each pipeline stage write its own layers, and only a pipeline engine (@ds/pipeline, not built) writes per-stage checkpoints',
  },
  // precision
  {
    path: 'fp16.auto_cast',
    kind: 'no-effect',
    applies: (v, c) => v === true && !fp16On(c),
    why: 'has no effect: DeepSpeed reads it only when fp16.enabled is true',
  },
  {
    path: 'fp16.fp16_master_weights_and_grads',
    kind: 'no-effect',
    applies: (v, c) => v === true && !fp16On(c),
    why: 'has no effect: DeepSpeed reads it only when fp16.enabled is true',
  },
  {
    path: 'bf16.immediate_grad_update',
    kind: 'no-effect',
    applies: isTrue,
    why:
      "has no effect: it makes DeepSpeed's bf16 optimizer add each 16-bit gradient into fp32 as soon as backward produces it, " +
      'which is how gradients always accumulate here (into fp32 gradient buffers)',
  },
  // top level
  {
    path: 'disable_allgather',
    kind: 'no-effect',
    applies: isTrue,
    why: 'has no effect: DeepSpeed parses it but nothing in DeepSpeed reads it',
  },
  {
    path: 'seq_parallel_communication_data_type',
    kind: 'no-effect',
    applies: (v) => v !== 'fp32',
    why: 'has no effect: it is the dtype of sequence-parallel communication, and sequence parallelism (sequence_parallel_size > 1) is not built',
  },
  {
    path: 'use_data_before_expert_parallelism',
    kind: 'no-effect',
    applies: isTrue,
    why: 'has no effect: it orders the expert-parallel groups of mixture-of-experts models, which are not built',
  },
  {
    path: 'zero_force_ds_cpu_optimizer',
    kind: 'no-effect',
    applies: isFalse,
    why: 'has no effect: DeepSpeed checks it only when ZeRO-Offload runs a client optimizer instead of DeepSpeedCPUAdam, and no offload tier here makes that check',
  },
  {
    path: 'optimizer.legacy_fusion',
    kind: 'no-effect',
    applies: isTrue,
    why: "has no effect: it selects how DeepSpeed's fp16 optimizer hands the loss scale to Apex's fused Adam kernel; the optimizers here unscale in their own step either way",
  },
  {
    path: 'timers.throughput.synchronized',
    kind: 'no-effect',
    applies: isFalse,
    why: 'has no effect on the cpu device: kernels are synchronous, so the throughput timer never waits for the device',
  },
];

/** Problems (unbuilt keys set) and warnings (inert keys set) of a parsed config. */
export function keyRuleFindings(config: Readonly<Record<string, unknown>>): { problems: ConfigProblem[]; warnings: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  for (const rule of KEY_RULES) {
    const value = readPath(config, rule.path.split('.'));
    if (value === undefined || !rule.applies(value, config)) continue;
    (rule.kind === 'unbuilt' ? problems : warnings).push({ path: rule.path, value, message: `'${rule.path}' ${rule.why}` });
  }
  return { problems, warnings };
}
