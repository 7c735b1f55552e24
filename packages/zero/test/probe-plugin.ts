// A plugin written the way a third party would write one, contributing to every extension point
// initialize() consumes: a comm backend (core's cpu backend, counting the ops it runs), an engine
// (core's Engine, counting forward calls), an offload tier (host memory, counting swaps) and an
// attention kernel (dense attention through the composed, unfused path). Each records what it did,
// so the tests assert that initialize() used it by its effect.
import { cpuBackend, Engine, standardUnitReduce, type CommBackend, type OffloadRegion, type OffloadStats, type OffloadTier, type Plugin, type ProcessGroup } from '@ds/core';
import { maskedAttention, zeros, type AttentionKernel, type Module } from '@ds/tensor';
import { z } from 'zod';

export interface ProbeRecord {
  /** Collective calls per op name on the counting backend's groups. */
  ops: Record<string, number>;
  backendCreated: number;
  forwards: number;
  attentionCalls: number;
  /** Units reduced by the plugin's gradient reducer (on when the config's `probe.reducer` is true). */
  unitsReduced: number;
  /** The optimizer state's traffic through the probe tier. */
  tier: OffloadStats & { sections: Record<string, unknown>[] };
  /** The gradient shard's (regions labelled "... gradient shard ..."): a tier that lends no memory gets it swapped. */
  gradients: OffloadStats;
}

export function newRecord(): ProbeRecord {
  return { ops: {}, backendCreated: 0, forwards: 0, attentionCalls: 0, unitsReduced: 0, tier: { regions: 0, bytesReserved: 0, bytesWritten: 0, bytesRead: 0, swapOuts: 0, swapIns: 0, sections: [] }, gradients: { regions: 0, bytesReserved: 0, bytesWritten: 0, bytesRead: 0, swapOuts: 0, swapIns: 0 } };
}

const OPS = ['allReduce', 'reduceScatter', 'allGather', 'broadcast', 'allToAll', 'send', 'recv', 'barrier'] as const;

function countingBackend(inner: CommBackend, rec: ProbeRecord): CommBackend {
  return {
    name: 'counting',
    async createGroup(spec) {
      const g = await inner.createGroup(spec);
      return new Proxy(g, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          if (typeof prop === 'string' && (OPS as readonly string[]).includes(prop) && typeof v === 'function') {
            return (...args: unknown[]) => {
              rec.ops[prop] = (rec.ops[prop] ?? 0) + 1;
              return (v as (...a: unknown[]) => unknown).apply(target, args);
            };
          }
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }) as ProcessGroup;
    },
  };
}

/** Host memory regions; swaps complete at once. It lends no memory (no residentStorage), so the gradient shard is swapped through it. */
function memoryTier(rec: ProbeRecord): OffloadTier {
  const stats = (r: { label: string }): OffloadStats => (/gradient shard/.test(r.label) ? rec.gradients : rec.tier);
  const store = new Map<number, Uint8Array>();
  let next = 0;
  const done = { wait: async () => {}, waitSync: () => {}, isCompleted: () => true };
  const region = (r: OffloadRegion, offset: number, n: number): Uint8Array => {
    const bytes = store.get(r.id);
    if (!bytes || offset + n > bytes.length) throw new RangeError(`probe tier: region ${r.id} (${r.label}) has no bytes ${offset}..${offset + n}`);
    return bytes.subarray(offset, offset + n);
  };
  return {
    name: 'cpu',
    allocate(bytes, label) {
      const id = next++;
      store.set(id, new Uint8Array(bytes));
      stats({ label }).regions += 1;
      stats({ label }).bytesReserved += bytes;
      return { tier: 'cpu', id, bytes, label };
    },
    swapOut(r, offset, src) {
      region(r, offset, src.length).set(src);
      stats(r).swapOuts += 1;
      stats(r).bytesWritten += src.length;
      return done;
    },
    swapIn(r, offset, dst) {
      dst.set(region(r, offset, dst.length));
      stats(r).swapIns += 1;
      stats(r).bytesRead += dst.length;
      return done;
    },
    free(r) {
      store.delete(r.id);
    },
    describe: () => 'the probe tier (host memory)',
    stats: () => ({ ...rec.tier }),
    close: async () => store.clear(),
  };
}

export class ProbeEngine extends Engine {
  constructor(
    parts: ConstructorParameters<typeof Engine>[0],
    private readonly rec: ProbeRecord,
  ) {
    super(parts);
  }
  override forward<Out>(...args: unknown[]): Out {
    this.rec.forwards += 1;
    return super.forward<Out>(...args);
  }
}

/** Dense attention computed by composed ops (a zero additive mask keeps it off the fused kernel). */
function referenceAttention(rec: ProbeRecord): AttentionKernel {
  return {
    name: 'probe-attention',
    attend: (q, k, v, opts) => {
      rec.attentionCalls += 1;
      const t = q.shape[2]!;
      return maskedAttention(q, k, v, { ...opts, attnMask: zeros([t, t], { runtime: q.runtime }) });
    },
  };
}

/** `engineFor` claims models that carry this marker. */
export const PROBE_MODEL = Symbol.for('ds-test.probe-model');

export function probePlugin(rec: ProbeRecord): Plugin {
  return {
    name: 'probe',
    package: '@ds-test/probe',
    configSections: { probe: z.strictObject({ reducer: z.boolean().default(false) }) },
    contributes: {
      gradientReducers: {
        probe: {
          appliesTo: (config) => (config.probe as { reducer?: boolean } | undefined)?.reducer === true,
          // Core's reduction, counted: a compressing plugin would send fewer bytes here.
          create: (spec) => {
            const inner = standardUnitReduce(spec);
            return (message, unit, keep) => {
              rec.unitsReduced += 1;
              return inner(message, unit, keep);
            };
          },
        },
      },
      commBackends: {
        counting: ({ env }) => {
          rec.backendCreated += 1;
          return countingBackend(cpuBackend({ transport: env.commTransport, hostId: env.hostId, shmDir: env.shmDir }), rec);
        },
      },
      engines: {
        probe: {
          appliesTo: (model: Module) => (model as unknown as Record<symbol, unknown>)[PROBE_MODEL] === true,
          create: ({ parts }) => new ProbeEngine(parts, rec),
        },
      },
      offloadTiers: {
        cpu: (options) => {
          rec.tier.sections.push({ kind: options.kind, ...options.section });
          return memoryTier(rec);
        },
      },
      attentionKernels: {
        'probe-attention': { create: () => referenceAttention(rec) },
      },
    },
  };
}
