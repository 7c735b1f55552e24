// DeepSpeed sections we recognise but have not built. DeepSpeed would act on them; silently ignoring
// one would train something other than what the config asks for, so each is rejected by name when
// it is switched on, and accepted (and ignored) when it is present but off.

export interface UnbuiltSection {
  readonly key: string;
  /** What DeepSpeed does with it, for the message. */
  readonly feature: string;
  /** True when the section's value would make DeepSpeed act. */
  readonly active: (value: unknown) => boolean;
}

/** `true`, or an object with `enabled: true` at any depth (sub-features carry their own switches). */
export function anyEnabled(value: unknown): boolean {
  if (value === true) return true;
  const stack: unknown[] = [value];
  let visited = 0;
  while (stack.length > 0 && visited++ < 100_000) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null) continue;
    if ((v as Record<string, unknown>).enabled === true) return true;
    for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) stack.push(child);
  }
  return false;
}

const present = (v: unknown) => v !== null && v !== undefined && v !== false;
const above = (key: string, limit: number) => (v: unknown) =>
  typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)[key] === 'number' && ((v as Record<string, number>)[key] as number) > limit;

export const UNBUILT_SECTIONS: readonly UnbuiltSection[] = [
  { key: 'compression_training', feature: 'compression (quantization, pruning, layer reduction)', active: anyEnabled },
  { key: 'data_efficiency', feature: 'data efficiency (curriculum sampling, random-LTD)', active: anyEnabled },
  { key: 'curriculum_learning', feature: 'legacy curriculum learning', active: anyEnabled },
  { key: 'autotuning', feature: 'the autotuner', active: anyEnabled },
  { key: 'elasticity', feature: 'elastic training', active: anyEnabled },
  { key: 'eigenvalue', feature: 'eigenvalue computation', active: anyEnabled },
  { key: 'progressive_layer_drop', feature: 'progressive layer drop', active: anyEnabled },
  { key: 'amp', feature: 'NVIDIA Apex AMP (use fp16 or bf16 instead)', active: anyEnabled },
  { key: 'hybrid_engine', feature: 'the hybrid (RLHF) engine', active: anyEnabled },
  { key: 'nebula', feature: 'Nebula checkpointing', active: anyEnabled },
  { key: 'wandb', feature: 'the Weights & Biases monitor', active: anyEnabled },
  { key: 'comet', feature: 'the Comet monitor', active: anyEnabled },
  { key: 'quantize_training', feature: 'MoQ quantize-aware training', active: anyEnabled },
  { key: 'weight_quantization', feature: 'weight quantization', active: present },
  { key: 'sparse_gradients', feature: 'sparse gradients', active: (v) => v === true },
  { key: 'graph_harvesting', feature: 'CUDA graph harvesting', active: (v) => v === true },
  { key: 'tensor_parallel', feature: 'automatic tensor parallelism (AutoTP)', active: above('autotp_size', 1) },
  { key: 'sequence_parallel_size', feature: 'sequence parallelism', active: (v) => typeof v === 'number' && v > 1 },
];

export function unbuiltSection(key: string): UnbuiltSection | undefined {
  return UNBUILT_SECTIONS.find((s) => s.key === key);
}
