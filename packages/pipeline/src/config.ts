// The `pipeline` ds_config section: DeepSpeed's keys and defaults (runtime/config.py,
// get_pipeline_config). The PipelineModule is built before initialize() and decides the partition,
// so here the keys check the module: `stages` and `partition` must agree with it (or be "auto" /
// "best"), `activation_checkpoint_interval` too when non-zero. `seed_layers` true is rejected by
// name: layers are seeded by their own constructor arguments. `pipe_partitioned` / `grad_partitioned`
// split the sends between stages over the model-parallel ranks (p2p.ts); as in DeepSpeed they only
// matter with a model degree above 1.
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
