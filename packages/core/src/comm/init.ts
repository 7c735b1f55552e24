// initDistributed(): rendezvous through the TCP store and the world group. The returned
// Distributed object is the job's comm context; pass it around (there is no global one).
import { DSCommError, DSTimeoutError } from '../errors.js';
import { readCoreEnv, type DistEnv } from '../env.js';
import { corePlugin } from '../plugin/builtin.js';
import { withDeviceStaging } from './staging.js';
import { PrefixStore, type Store } from './store/store.js';
import { TCPStore } from './store/tcp-store.js';
import type { CommBackend, ProcessGroup } from './types.js';

export interface InitOptions {
  /** Where RANK, WORLD_SIZE, MASTER_ADDR, ... come from; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Default: core's cpu backend (initialize() passes the one chosen by name from the registry). */
  backend?: CommBackend;
  /** Default op and rendezvous timeout; default DS_COMM_TIMEOUT or 300 s. */
  timeoutMs?: number;
}

export interface NewGroupOptions {
  /** Shown in errors and logs; default `group[r0,r1,...]`. */
  name?: string;
  timeoutMs?: number;
}

export class Distributed {
  private readonly groupCounts = new Map<string, number>();
  private readonly groups = new Set<ProcessGroup>();
  private closed = false;
  /**
   * A script ends when it ends, as a Python DeepSpeed script does: nothing of the comm layer keeps
   * the event loop alive while idle, so when the script's own work is over Node emits 'beforeExit'
   * and the job's exit handshake runs here (rank 0 serves the store until every rank has left).
   * An explicit destroy() removes this listener.
   */
  private readonly exitHandshake = (): void => {
    this.destroy().catch((err: unknown) => process.stderr.write(`ds: rank ${this.rank}: closing the process group at exit failed: ${String(err)}\n`));
  };

  constructor(
    readonly dist: DistEnv,
    readonly store: Store,
    readonly world: ProcessGroup,
    readonly backend: CommBackend,
    readonly timeoutMs: number,
  ) {
    this.groups.add(world);
    process.once('beforeExit', this.exitHandshake);
  }

  get rank(): number {
    return this.dist.rank;
  }
  get size(): number {
    return this.dist.worldSize;
  }
  get localRank(): number {
    return this.dist.localRank;
  }
  get localSize(): number {
    return this.dist.localSize;
  }

  /**
   * A group of the given global ranks (ascending order not required; group rank = position).
   * Collective over the members only; a rank not in `ranks` gets null and takes no part. Creating
   * the same rank list again makes a new, independent group.
   */
  async newGroup(ranks: readonly number[], opts: NewGroupOptions = {}): Promise<ProcessGroup | null> {
    const seen = new Set<number>();
    for (const r of ranks) {
      if (!Number.isInteger(r) || r < 0 || r >= this.size || seen.has(r)) {
        throw new DSCommError(`newGroup: ranks [${ranks.join(', ')}] must be distinct integers in [0, ${this.size})`);
      }
      seen.add(r);
    }
    if (ranks.length === 0) throw new DSCommError('newGroup: ranks must not be empty');
    const key = ranks.join(',');
    const n = this.groupCounts.get(key) ?? 0;
    this.groupCounts.set(key, n + 1);
    const at = ranks.indexOf(this.rank);
    if (at < 0) return null;
    const name = opts.name ?? `group[${key}]${n ? `#${n}` : ''}`;
    const group = withDeviceStaging(
      await this.backend.createGroup({
        name,
        ranks: [...ranks],
        rank: at,
        store: new PrefixStore(`group/${key}/${n}`, this.store),
        timeoutMs: opts.timeoutMs ?? this.timeoutMs,
      }),
      this.backend.deviceMemory,
    );
    this.groups.add(group);
    return group;
  }

  /**
   * Destroys every group, then waits (up to `timeoutMs`, default the job's) for all ranks to get
   * here before rank 0 stops serving the store, so no rank loses the store while it still needs it.
   */
  async destroy(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    process.removeListener('beforeExit', this.exitHandshake);
    for (const g of this.groups) await g.destroy();
    try {
      await this.store.set(`exit/${this.rank}`, '1');
      if (this.rank === 0) {
        // After a failure some ranks may never come: pass a short timeout then.
        const keys = Array.from({ length: this.size }, (_, r) => `exit/${r}`);
        await this.store.wait(keys, opts.timeoutMs ?? this.timeoutMs);
      }
    } catch (err) {
      if (!(err instanceof DSTimeoutError) && !(err instanceof DSCommError)) throw err;
    } finally {
      await this.store.close();
    }
  }
}

/**
 * Joins the job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_SIZE,
 * MASTER_ADDR, MASTER_PORT, as the `ds` launcher sets them): rank 0 serves the store, every rank
 * connects (retrying until the timeout), and the world group is built. Without RANK/WORLD_SIZE it
 * is a world of one on a private store.
 */
export async function initDistributed(opts: InitOptions = {}): Promise<Distributed> {
  const env = readCoreEnv(opts.env ?? process.env);
  const timeoutMs = opts.timeoutMs ?? env.commTimeoutMs;
  const dist: DistEnv = env.dist ?? { rank: 0, worldSize: 1, localRank: 0, localSize: 1, crossRank: 0, crossSize: 1, masterAddr: '127.0.0.1', masterPort: 0 };
  const backend = opts.backend ?? (await corePlugin.contributes.commBackends!.cpu!({ env }));
  const store = await TCPStore.create({
    host: dist.masterAddr,
    port: env.dist ? dist.masterPort : 0,
    isServer: dist.rank === 0,
    timeoutMs,
  });
  try {
    const ranks = Array.from({ length: dist.worldSize }, (_, r) => r);
    const world = withDeviceStaging(await backend.createGroup({ name: 'world', ranks, rank: dist.rank, store: new PrefixStore('world', store), timeoutMs }), backend.deviceMemory);
    return new Distributed(dist, store, world, backend, timeoutMs);
  } catch (err) {
    await store.close();
    throw err;
  }
}
