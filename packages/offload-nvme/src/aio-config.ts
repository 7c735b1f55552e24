// The `aio` section (DeepSpeed's runtime/swap_tensor/aio_config.py): block size, queue depth and
// parallelism of the async I/O engine behind the nvme tier. DeepSpeed's code reads
// `intra_op_parallelism`; its docs still say `thread_count`, which is accepted here as the same key.
// `use_gds` (GPUDirect Storage) needs CUDA and cuFile and is rejected by name.
import { z } from 'zod';

import { DSConfigError } from '@ds/core';

export const AIO_DEFAULTS = {
  block_size: 1048576,
  queue_depth: 8,
  intra_op_parallelism: 1,
  single_submit: false,
  overlap_events: true,
  use_gds: false,
} as const;

export interface AioConfig {
  /** Bytes per I/O request (a multiple of 4096, the O_DIRECT alignment). */
  block_size: number;
  /** Requests in flight per I/O thread. */
  queue_depth: number;
  /** I/O threads each transfer is split over. */
  intra_op_parallelism: number;
  /** One io_uring_enter per request instead of one per batch. */
  single_submit: boolean;
  /** Submit new requests as earlier ones complete, instead of batch by batch. */
  overlap_events: boolean;
  use_gds: false;
}

const shape = {
  block_size: z.number().int().min(4096).max(1 << 30).multipleOf(4096, 'must be a multiple of 4096 (the O_DIRECT alignment)').default(AIO_DEFAULTS.block_size),
  queue_depth: z.number().int().min(1).max(1024).default(AIO_DEFAULTS.queue_depth),
  intra_op_parallelism: z.number().int().min(1).max(64).optional(),
  thread_count: z.number().int().min(1).max(64).optional(),
  single_submit: z.boolean().default(AIO_DEFAULTS.single_submit),
  overlap_events: z.boolean().default(AIO_DEFAULTS.overlap_events),
  use_gds: z.boolean().default(AIO_DEFAULTS.use_gds),
};

export const aioSchema = z
  .strictObject(shape)
  .superRefine((c, ctx) => {
    if (c.use_gds) {
      ctx.addIssue({ code: 'custom', path: ['use_gds'], message: 'recognised but not supported: GPUDirect Storage needs CUDA and cuFile; @ds/offload-nvme moves bytes between host memory and files (set use_gds to false)' });
    }
    if (c.thread_count !== undefined && c.intra_op_parallelism !== undefined && c.thread_count !== c.intra_op_parallelism) {
      ctx.addIssue({ code: 'custom', path: ['thread_count'], message: `thread_count (${c.thread_count}) is the documented name of intra_op_parallelism (${c.intra_op_parallelism}); give one of them` });
    }
  })
  .transform(
    (c): AioConfig => ({
      block_size: c.block_size,
      queue_depth: c.queue_depth,
      intra_op_parallelism: c.intra_op_parallelism ?? c.thread_count ?? AIO_DEFAULTS.intra_op_parallelism,
      single_submit: c.single_submit,
      overlap_events: c.overlap_events,
      use_gds: false,
    }),
  );

/** The typed `aio` section: the tier's options carry it already parsed; absent means DeepSpeed's defaults. */
export function aioConfigOf(section: Readonly<Record<string, unknown>> | undefined): AioConfig {
  const r = aioSchema.safeParse(section ?? {});
  if (!r.success) throw new DSConfigError(`aio: ${r.error.issues.map((i) => `${i.path.join('.') || '(section)'}: ${i.message}`).join('; ')}`);
  return r.data;
}
