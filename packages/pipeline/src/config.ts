// The `pipeline` ds_config section: DeepSpeed's keys and defaults (runtime/config.py,
// get_pipeline_config). The PipelineModule is built before initialize() and decides the partition,
// so here the keys check the module: `stages` and `partition` must agree with it (or be "auto" /
// "best"), `activation_checkpoint_interval` too when non-zero. `seed_layers` true and
// `pipe_partitioned` / `grad_partitioned` false are rejected by name: layers are seeded by their own
// constructor arguments, and the partitioned send only exists with tensor parallelism, not built yet.
import { DSConfigError } from '@ds/core';
import { z } from 'zod';

export const pipelineSchema = z
  .strictObject({
    stages: z.union([z.literal('auto'), z.number().int().min(1)]).default('auto'),
    partition: z.string().default('best'),
    seed_layers: z.boolean().default(false),
    activation_checkpoint_interval: z.number().int().min(0).default(0),
    pipe_partitioned: z.boolean().default(true),
    grad_partitioned: z.boolean().default(true),
  })
  .superRefine((c, ctx) => {
    if (c.seed_layers) ctx.addIssue({ code: 'custom', path: ['seed_layers'], message: 'recognised but not supported: layers are seeded by their own LayerSpec arguments (give each layer its seed); set it to false' });
    for (const key of ['pipe_partitioned', 'grad_partitioned'] as const) {
      if (!c[key]) ctx.addIssue({ code: 'custom', path: [key], message: 'recognised but not supported: splitting sends across tensor-parallel ranks needs tensor parallelism, not built in this version of @ds/pipeline; leave it at true' });
    }
  });

export type PipelineConfig = z.output<typeof pipelineSchema>;

/** The validated section, or null when the config has none. */
export function pipelineConfigOf(config: Readonly<Record<string, unknown>>): PipelineConfig | null {
  if (config.pipeline === undefined) return null;
  const parsed = pipelineSchema.safeParse(config.pipeline);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  - pipeline.${i.path.join('.')}: ${i.message}`);
    throw new DSConfigError(`pipeline is not valid:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
