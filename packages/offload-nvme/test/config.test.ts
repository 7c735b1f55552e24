// The `aio` section: DeepSpeed's keys and defaults through core's validator with the plugin
// registered, thread_count read as intra_op_parallelism, use_gds and unknown keys rejected by name.
import { describe, expect, it } from 'vitest';

import { createRegistry, DSConfigError, validateConfig } from '@ds/core';

import { aioConfigOf, offloadNvme } from '../src/index.js';

const aio = (section: unknown) => validateConfig({ train_batch_size: 1, aio: section } as never, { registry: createRegistry([offloadNvme()]) }).config.aio;
const rejected = (section: unknown): string => {
  try {
    aio(section);
  } catch (e) {
    expect(e).toBeInstanceOf(DSConfigError);
    return (e as Error).message;
  }
  throw new Error('expected the aio section to be rejected');
};

describe('aio section', () => {
  it("fills DeepSpeed's defaults", () => {
    expect(aio({})).toEqual({ block_size: 1048576, queue_depth: 8, intra_op_parallelism: 1, single_submit: false, overlap_events: true, use_gds: false });
    expect(aioConfigOf(undefined)).toEqual(aio({}));
  });

  it('reads the documented thread_count as intra_op_parallelism, and refuses two different values', () => {
    expect(aio({ thread_count: 4 })).toMatchObject({ intra_op_parallelism: 4 });
    expect(aio({ intra_op_parallelism: 2, queue_depth: 32, block_size: 262144, single_submit: true, overlap_events: false })).toEqual({
      block_size: 262144,
      queue_depth: 32,
      intra_op_parallelism: 2,
      single_submit: true,
      overlap_events: false,
      use_gds: false,
    });
    expect(rejected({ thread_count: 2, intra_op_parallelism: 3 })).toMatch(/thread_count \(2\) is the documented name of intra_op_parallelism \(3\)/);
  });

  it('rejects use_gds by name, a block size O_DIRECT cannot use, and unknown keys with the nearest one', () => {
    expect(rejected({ use_gds: true })).toMatch(/aio\.use_gds.*GPUDirect Storage needs CUDA/);
    expect(rejected({ block_size: 1000 })).toMatch(/aio\.block_size/);
    expect(rejected({ queue_depht: 8 })).toMatch(/queue_depth/);
  });

  it('needs the plugin: without it the section names the package that owns it', () => {
    expect(() => validateConfig({ train_batch_size: 1, aio: {} } as never, { registry: createRegistry([]) })).toThrow(/@ds\/offload-nvme/);
  });
});
