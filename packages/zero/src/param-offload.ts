// Stage 3's partitioned 16-bit parameter shard in an offload tier (ZeRO-Infinity's parameter
// offload, DeepSpeed's AsyncPartitionedParameterSwapper): one region per partition unit holding this
// rank's block. The coordinator (stage3-fetch.ts) swaps a unit's block straight into the own part of
// the gathered buffer before the all-gather, and the optimizer step writes each updated sub-group back.
//
// DeepSpeed's keys, as they act here (zero_optimization.offload_param):
// - device: the tier of the blocks; with 'nvme', `max_in_cpu` elements of them (units in order, whole
//   units) stay in host memory instead (the registry's 'cpu' tier), and a unit whose block is larger
//   than `buffer_size` elements is not swappable: it stays in host memory too, as in DeepSpeed;
// - buffer_count: how many units may have a swap-in in flight at once (the read-ahead of the prefetch).
// With device 'cpu' everything is in host memory: buffer_size and max_in_cpu then have no effect.
import { bytesOf, DSConfigError, type OffloadRegion, type OffloadTier, type OffloadWork, type PartitionPlan, type StateManagerArgs } from '@ds/core';

import type { ZeroConfig } from './config.js';
import { optimizerOffloadOf, tierFor } from './offload-state.js';

export interface ParamOffloadSection {
  device: string;
  buffer_count: number;
  buffer_size: number;
  max_in_cpu: number;
  [key: string]: unknown;
}

/** The offload_param section when it names a tier, else null. */
export function paramOffloadOf(zc: ZeroConfig): ParamOffloadSection | null {
  const s = zc.offload_param as ParamOffloadSection | null | undefined;
  return s && s.device !== 'none' ? s : null;
}

export class ParamShardOffload {
  /** Per unit: writes not yet known to be complete (the step's updated weights stay in flight into the next forward). */
  private readonly writing: OffloadWork[][];

  private constructor(
    private readonly tiers: OffloadTier[],
    private readonly regions: OffloadRegion[],
    /** Units whose swap-in may be in flight at once (offload_param.buffer_count). */
    readonly readAhead: number,
    readonly summary: string,
  ) {
    this.writing = regions.map(() => []);
  }

  static async create(args: StateManagerArgs, zc: ZeroConfig, plan: PartitionPlan): Promise<ParamShardOffload | null> {
    const section = paramOffloadOf(zc);
    if (!section) return null;
    if (args.paramDtype === 'f32') {
      throw new DSConfigError("zero_optimization.offload_param with fp32 parameters is not supported: the fp32 parameters are the optimizer's masters here; enable bf16 or fp16, or remove offload_param");
    }
    if (!optimizerOffloadOf(zc)) {
      throw new DSConfigError("zero_optimization.offload_param needs offload_optimizer too (the step writes the updated 16-bit blocks through the optimizer's offload pipeline): set offload_optimizer.device to 'cpu' or 'nvme' as well");
    }
    if (!(section.buffer_count >= 1)) throw new DSConfigError(`zero_optimization.offload_param.buffer_count ${section.buffer_count}: at least one unit must be readable at a time; use 1 or more (DeepSpeed's default 5)`);
    const rank = args.group?.rank ?? 0;
    const main = await tierFor(args, 'param', section);
    const tiers = [main];
    let host: OffloadTier | null = null;
    let inCpu = 0;
    // With nvme, units that fit max_in_cpu (in order), or do not fit buffer_size, stay in host memory;
    // the host tier is asked for only when some unit goes there.
    const place: boolean[] = [];
    for (const u of plan.units) {
      const tooBig = u.block > section.buffer_size;
      const fits = inCpu + u.block <= section.max_in_cpu;
      const toHost = section.device === 'nvme' && (tooBig || fits);
      if (toHost && !tooBig) inCpu += u.block;
      place.push(toHost);
    }
    if (place.some(Boolean)) {
      host = await tierFor(args, 'param', section, 'cpu');
      tiers.push(host);
    }
    const out = plan.units.map((u, i) => (place[i] ? host! : main).allocate(u.block * 2, `rank ${rank} unit ${i} 16-bit parameter block`));
    const held = place.filter(Boolean).length;
    const summary = `16-bit parameter shard offloaded to ${main.describe()}${held ? ` (${held} of ${plan.units.length} unit(s) kept in host memory: max_in_cpu ${section.max_in_cpu}, buffer_size ${section.buffer_size})` : ''}, read-ahead ${section.buffer_count} unit(s)`;
    args.ctx.log('info', `ZeRO-3: ${summary}`);
    return new ParamShardOffload(tiers, out, Math.floor(section.buffer_count), summary);
  }

  private tierOf(region: OffloadRegion): OffloadTier {
    return this.tiers.find((t) => t.name === region.tier)!;
  }

  /**
   * Starts reading unit u's block (`dst`: its 16-bit words) from byte `offset` of its region, once
   * the unit's writes in flight have landed (the tier does not order a read after a write; blocking).
   */
  read(u: number, dst: Uint16Array, offset = 0): OffloadWork {
    for (const w of this.writing[u]!.splice(0)) w.waitSync();
    const r = this.regions[u]!;
    return this.tierOf(r).swapIn(r, offset, bytesOf(dst));
  }

  /** Starts writing `src` into unit u's block at byte `offset` (`src` must not change until the write completes). */
  write(u: number, src: Uint16Array, offset = 0): OffloadWork {
    const r = this.regions[u]!;
    const pending = this.writing[u]!;
    for (let k = pending.length - 1; k >= 0; k--) if (pending[k]!.isCompleted()) pending.splice(k, 1);
    const w = this.tierOf(r).swapOut(r, offset, bytesOf(src));
    pending.push(w);
    return w;
  }

  async close(): Promise<void> {
    const errors: unknown[] = [];
    for (const w of this.writing.flatMap((p) => p.splice(0))) await w.wait().catch((e: unknown) => errors.push(e));
    this.regions.forEach((r) => this.tierOf(r).free(r));
    for (const t of this.tiers) await t.close();
    if (errors.length > 0) throw errors[0];
  }
}
