// What every ZeRO stage shares: fp32 master weights and optimizer state for this rank's shard only,
// the global overflow check and gradient norm over disjoint shards (one all-reduce), clipping, the
// optimizer step on the shard, and the partitioned checkpoint state.
//
// With model or pipeline parallelism (DeepSpeed's stage_1_and_2.py get_grad_norm_direct and
// has_overflow, reduced over the data group and then over mpu's model-parallel group, which a
// pipeline's grid makes its pipe x model slice), each rank sums the squares of the elements of its
// shard that belong to parameters it counts (StateManagerArgs.normCounted: split parameters on every
// model rank, replicated ones on model rank 0, a tied weight on its first stage only), and the sum
// and the overflow flag go over the data group, then the model and pipe groups: every element of
// the whole model is counted once. DeepSpeed reduces over the slice group in one collective; the
// two axes here are two small all-reduces with the same sum.
import {
  allocateFlat,
  clipCoefficient,
  gradAccumDtype,
  DSCheckpointError,
  DSError,
  flatArray,
  releaseFlat,
  type FlatBuffer,
  type ModelStateBytes,
  type ModelStateManager,
  type NamedTensor,
  type OffloadWork,
  type OptimizerSlot,
  type PartitionPlan,
  type ProcessGroup,
  type RankState,
  type StateManagerArgs,
  type StepInput,
  type StepOutput,
  type Unit,
} from '@ds/core';
import type { F32, FArray, FloatDType, HostArray, U16 } from '@ds/tensor';

import type { ZeroConfig } from './config.js';
import { optimizerOffloadOf, OptimizerStateOffload } from './offload-state.js';
import { assembleFull, cutShard, describeUnits, readAllRanks, shardTensor, type ShardMeta } from './rank-state.js';

/** A slot's gradient before the gradient blocks are placed (setupShards points every slot at its block). */
const NO_GRAD = new Float32Array(0);

/** A block of elements on the engine's device (a kernel operand: host words or device memory). */
export type Block = FArray;

/** DeepSpeed's gradient dtype under ZeRO: data_types.grad_accum_dtype, else the parameters' dtype. */
export function gradDtypeOf(args: StateManagerArgs): FloatDType {
  return gradAccumDtype(args.config, args.paramDtype, true);
}

export abstract class ShardedState implements ModelStateManager {
  abstract readonly stage: number;
  readonly partitioned = true;
  protected readonly zc: ZeroConfig;
  protected readonly group: ProcessGroup | null;
  protected readonly world: number;
  protected readonly rank: number;
  protected readonly sizes: number[];
  protected master: FlatBuffer | null = null;
  protected slots: OptimizerSlot[] = [];
  /** Unit index of each slot (a unit is split into several slots when larger than sub_group_size). */
  protected slotUnit: number[] = [];
  /** Where each slot starts in its unit's block, and its length. */
  protected slotAt: number[] = [];
  protected slotLen: number[] = [];
  /** The optimizer moments (and, with 16-bit parameters, the fp32 masters) in an offload tier (offload_optimizer.device), or null: resident. */
  protected offload: OptimizerStateOffload | null = null;
  /** The model and pipe groups the norm and the overflow flag are summed over after the data group (empty without model or pipeline parallelism). */
  private readonly slice: ProcessGroup[];
  /** Per unit: the [start, length] runs of this rank's block holding parameters it counts in the norm, or null: the whole block. */
  private readonly normRuns: ([number, number][] | null)[];

  constructor(
    protected readonly args: StateManagerArgs,
    zc: ZeroConfig,
    protected readonly plan: PartitionPlan,
    protected readonly gradDtype: FloatDType,
    sizes?: readonly number[],
  ) {
    this.zc = zc;
    this.group = args.group && args.group.size > 1 ? args.group : null;
    this.world = plan.world;
    this.rank = plan.rank;
    this.sizes = sizes ? [...sizes] : args.params.map((p) => p.numel);
    const { model, pipe } = args.ctx.groups;
    this.slice = [model, pipe].filter((g): g is ProcessGroup => g !== null && g.size > 1);
    this.normRuns = plan.units.map((u) => countedRuns(u, plan.rank, this.sizes, args.normCounted));
  }

  /** This rank's block of unit u in the parameter dtype (views the 16-bit parameters, or the f32 ones). */
  protected abstract paramBlock(u: number): Block;
  /** This rank's reduced gradient block of unit u (valid after a boundary backward). */
  protected abstract gradBlock(u: number): Block;
  /** After the optimizer wrote the updated blocks: make parameters whole again where the stage keeps them. */
  protected abstract afterUpdate(): Promise<void>;
  /** Bytes of the parameter and gradient buffers this rank keeps between steps. */
  protected abstract paramGradBytes(): { parameters: number; gradients: number };

  /**
   * Allocates the fp32 masters (16-bit parameters) from the parameter blocks, builds the slots (one
   * per sub-group of at most sub_group_size elements) and, with offload_optimizer, their regions in
   * the tier, where the masters then live instead of the device.
   */
  protected async setupShards(): Promise<void> {
    const { runtime, paramDtype } = this.args;
    const offloadMasters = paramDtype !== 'f32' && optimizerOffloadOf(this.zc) !== null;
    if (paramDtype !== 'f32' && !offloadMasters) {
      this.master = allocateFlat(runtime, 'f32', this.plan.shardNumel, 'optimizer_states', 'zero fp32 master shard', undefined, this.args.io.device);
      this.refreshMaster();
    }
    const sub = Math.max(1, Math.floor(this.zc.sub_group_size));
    const out16Dtype = paramDtype === 'f16' ? ('f16' as const) : ('bf16' as const);
    this.plan.units.forEach((u, ui) => {
      // Offloaded masters have no device block: each slot's master is its staging view during the step.
      const master = offloadMasters ? null : this.masterBlock(ui);
      const p16 = paramDtype !== 'f32';
      const runs = this.groupRuns(ui);
      for (let at = 0; at < u.block; ) {
        const run = runs.find((r) => r.end > at)!;
        const end = Math.min(u.block, at + sub, run.end);
        this.slots.push({
          master: master ? master.subarray(at, end) : new Float32Array(0),
          grad: NO_GRAD, // pointed at the gradient blocks once they are placed (below)
          gradDtype: this.gradDtype,
          group: run.group,
          ...(p16 ? { out16: this.out16For(ui, at, end), out16Dtype } : {}),
        });
        this.slotUnit.push(ui);
        this.slotAt.push(at);
        this.slotLen.push(end - at);
        at = end;
      }
    });
    this.offload = await OptimizerStateOffload.create(this.args, this.zc, this.slotLen, { withMasters: offloadMasters, out16: this.out16ToTier() });
    await this.placeGradients(this.offload);
    this.repointSlotGrads();
    if (this.offload?.withMasters) this.refreshMaster();
  }

  /**
   * Where the gradient shard lives, decided once the optimizer offload exists (its tier may hold the
   * shard: grad-offload.ts); gradBlock() works from then on. A stage whose gradients are set up in
   * its constructor does nothing.
   */
  protected async placeGradients(_offload: OptimizerStateOffload | null): Promise<void> {}

  /**
   * The 16-bit dtype when the updated 16-bit weights go to a parameter tier (stage 3's offload_param):
   * the optimizer offload then stages them with each sub-group and commitParamPiece writes them out.
   */
  protected out16ToTier(): 'bf16' | 'f16' | null {
    return null;
  }

  /**
   * Whether the offloaded step may leave sub-groups to step after it returns (OptimizerStateOffload.step):
   * only a stage that completes them before it reads a unit's weights (stage 3's fetch) says yes.
   */
  protected get defersStep(): boolean {
    return false;
  }

  /** Slot i's unit and where it starts in that unit's block (for a gradient shard swapped per unit). */
  protected slotPiece(i: number): readonly [number, number] {
    return [this.slotUnit[i]!, this.slotAt[i]!];
  }

  /** Where the optimizer writes the updated 16-bit weights of elements [at, end) of unit u's block (out16). */
  protected out16For(u: number, at: number, end: number): U16 {
    return (this.paramBlock(u) as U16).subarray(at, end);
  }

  /** Where each slot starts in this rank's shard. */
  private slotShardStart(i: number): number {
    return this.plan.units[this.slotUnit[i]!]!.shardStart + this.slotAt[i]!;
  }

  /** Runs fn(i, master) for each slot with its offloaded master read into a host scratch array. */
  private eachOffloadedMaster(fn: (i: number, master: Float32Array) => void): void {
    const scratch = new Float32Array(Math.max(0, ...this.slotLen));
    this.slotLen.forEach((n, i) => {
      const m = scratch.subarray(0, n);
      this.offload!.readMaster(i, m);
      fn(i, m);
    });
  }

  /**
   * This rank's block of unit u cut where the parameter group changes (modelParameters groups): runs
   * [.., end) in block coordinates, each with its group. Padding takes the last parameter's group.
   */
  private groupRuns(u: number): { end: number; group: number }[] {
    const unit = this.plan.units[u]!;
    const from = this.rank * unit.block;
    const runs: { end: number; group: number }[] = [];
    unit.params.forEach((i, k) => {
      const group = this.args.groupOf[i] ?? 0;
      const end = Math.min(unit.block, Math.max(0, unit.offsets[k]! + this.sizes[i]! - from));
      if (end <= 0) return;
      const last = runs[runs.length - 1];
      if (last && last.group === group) last.end = end;
      else if (!last || end > last.end) runs.push({ end, group });
    });
    const last = runs[runs.length - 1];
    if (last) last.end = unit.block;
    else runs.push({ end: unit.block, group: this.args.groupOf[unit.params[unit.params.length - 1]!] ?? 0 });
    return runs;
  }

  /** Unit u's resident fp32 masters (the parameters themselves in an fp32 model); not for offloaded masters. */
  protected masterBlock(u: number): F32 {
    const unit = this.plan.units[u]!;
    if (this.offload?.withMasters) throw new DSError(`ZeRO: the fp32 masters of unit ${u} live in the ${this.offload.tierName} offload tier, not on the device`, { code: 'DS_ZERO_INTERNAL' });
    if (!this.master) return this.paramBlock(u) as F32;
    return flatArray(this.master, unit.shardStart, unit.block) as F32;
  }

  /** This rank's fp32 master shard as one host array (an explicit copy from the device). */
  protected masterShardOnHost(): Float32Array {
    const shard = new Float32Array(this.plan.shardNumel);
    if (this.offload?.withMasters) this.slotLen.forEach((n, i) => this.offload!.readMaster(i, shard.subarray(this.slotShardStart(i), this.slotShardStart(i) + n)));
    else this.plan.units.forEach((u, ui) => shard.set(this.args.io.toHost(this.masterBlock(ui)), u.shardStart));
    return shard;
  }

  /** Masters := this rank's shard of fp32 values (host), resident or in the tier. */
  private writeMasterShard(shard: Float32Array): void {
    if (this.offload?.withMasters) this.slotLen.forEach((n, i) => this.offload!.writeMaster(i, shard.subarray(this.slotShardStart(i), this.slotShardStart(i) + n)));
    else this.plan.units.forEach((u, ui) => this.args.io.fromHost(shard.subarray(u.shardStart, u.shardStart + u.block), this.masterBlock(ui)));
  }

  /** Masters := the parameter blocks (after loading 16-bit weights). */
  protected refreshMaster(): void {
    const { kernels, paramDtype } = this.args;
    if (this.offload?.withMasters) {
      const scratch = new Float32Array(Math.max(0, ...this.slotLen));
      this.slotLen.forEach((n, i) => {
        const m = scratch.subarray(0, n);
        kernels.cast(paramDtype, this.readParamPiece(i), 'f32', m, n);
        this.offload!.writeMaster(i, m);
      });
      return;
    }
    if (!this.master) return;
    this.plan.units.forEach((u, ui) => kernels.cast(paramDtype, this.paramBlock(ui), 'f32', this.masterBlock(ui), u.block));
  }

  /** Slot i's 16-bit parameters (a view; a stage whose shard is offloaded returns a copy). */
  protected readParamPiece(i: number): U16 {
    return (this.paramBlock(this.slotUnit[i]!) as U16).subarray(this.slotAt[i]!, this.slotAt[i]! + this.slotLen[i]!);
  }

  /**
   * After `piece` (from readParamPiece(i), or slot i's out16) was changed: makes the change stick.
   * Resident pieces are views, changed in place already (null); a stage whose shard is offloaded
   * starts writing the piece to its tier and returns that write (`piece` must not change until it completes).
   */
  protected commitParamPiece(_i: number, _piece: U16): OffloadWork | null {
    return null;
  }

  /** The 16-bit parameters := the masters, rounded (after the masters were loaded). */
  protected mastersTo16(): void {
    const { kernels, paramDtype } = this.args;
    if (this.offload?.withMasters) {
      this.eachOffloadedMaster((i, m) => {
        const p = this.readParamPiece(i);
        kernels.cast('f32', m, paramDtype, p, m.length);
        this.commitParamPiece(i, p)?.waitSync();
      });
    } else if (this.master) this.plan.units.forEach((u, ui) => kernels.cast('f32', this.masterBlock(ui), paramDtype, this.paramBlock(ui), u.block));
  }

  /** Slot grads are views taken at setup; a stage whose gradient blocks move re-points them here. */
  protected repointSlotGrads(): void {
    const cursor = new Map<number, number>();
    this.slots.forEach((s, i) => {
      const u = this.slotUnit[i]!;
      const at = cursor.get(u) ?? 0;
      s.grad = this.gradBlock(u).subarray(at, at + this.slotLen[i]!);
      cursor.set(u, at + this.slotLen[i]!);
    });
  }

  /** Unit u's part of the global norm from its gradient block g: [sum of squares of the counted elements, 1 when the block holds inf or NaN]. */
  protected normTerms(ui: number, g: Block): readonly [number, number] {
    const { kernels } = this.args;
    const n = this.plan.units[ui]!.block;
    if (kernels.hasInfNan(this.gradDtype, g, n)) return [0, 1];
    const runs = this.normRuns[ui]!;
    if (runs === null) return [kernels.sumSquares(this.gradDtype, g, n), 0];
    let sq = 0;
    for (const [start, len] of runs) sq += kernels.sumSquares(this.gradDtype, g.subarray(start, start + len), len);
    return [sq, 0];
  }

  /** Unit u's norm terms taken earlier (a swapped gradient shard folds them in as blocks settle), or null: read the block. */
  protected foldedNormTerms(_ui: number): readonly [number, number] | null {
    return null;
  }

  async step(input: StepInput): Promise<StepOutput> {
    let sumSq = 0;
    let bad = 0;
    this.plan.units.forEach((_u, ui) => {
      // A swapped shard's terms were taken as each block settled in the boundary backward; else the block is read here.
      const [sq, flag] = this.foldedNormTerms(ui) ?? this.normTerms(ui, this.gradBlock(ui));
      sumSq += sq;
      bad |= flag;
    });
    // Shards are disjoint over the data group and counted parameters over the slice, so the sum over
    // all of them is the global squared norm; the flag is a logical or.
    const totals = Float32Array.of(sumSq, bad);
    for (const g of this.group ? [this.group, ...this.slice] : this.slice) await g.allReduce({ dtype: 'f32', array: totals }, { op: 'sum' });
    if (totals[1]! > 0 || !Number.isFinite(totals[0]!)) return { overflow: true, gradNorm: NaN };
    const gradNorm = Math.sqrt(totals[0]!) / input.lossScale;
    const coeff = clipCoefficient(gradNorm, input.clip);
    if (this.offload) await this.offload.step(this.args.optimizer, this.slots, coeff / input.lossScale, (i) => (this.slots[i]!.out16 ? this.commitParamPiece(i, this.slots[i]!.out16!) : null), this.defersStep);
    else this.args.optimizer.step(this.slots, { gradScale: coeff / input.lossScale });
    await this.afterUpdate();
    return { overflow: false, gradNorm };
  }

  modelStateBytes(): ModelStateBytes {
    const { parameters, gradients } = this.paramGradBytes();
    const masters = this.master ? this.master.storage.byteLength : 0;
    const moments = this.offload ? this.offload.residentBytes : this.plan.shardNumel * 4 * this.args.optimizer.stateNames.length;
    return { parameters, gradients, optimizerStates: masters + moments };
  }

  rankState(): RankState {
    this.offload?.finish(); // a deferred step's sub-groups first: their step counters are saved below
    const tensors = new Map<string, NamedTensor>();
    tensors.set('fp32', shardTensor(this.masterShardOnHost()));
    const opt = this.args.optimizer.stateDict();
    // Offloaded moments are read back from the tier, slot by slot (the optimizer holds only staging views).
    if (this.offload) opt.slots.forEach((s, i) => (s.tensors = this.offload!.readSlot(i)));
    const stateNames = opt.slots.length === this.slots.length ? [...this.args.optimizer.stateNames] : [];
    for (const name of stateNames) {
      const all = new Float32Array(this.plan.shardNumel);
      let at = 0;
      opt.slots.forEach((s) => {
        all.set(s.tensors[name]!, at);
        at += s.tensors[name]!.length;
      });
      tensors.set(`optimizer.${name}`, shardTensor(all));
    }
    const shapes: Record<string, number[]> = {};
    this.args.names.forEach((n, i) => (shapes[n] = [...this.shapeOf(i)]));
    const meta: ShardMeta = {
      format: 'ds-zero-shard',
      version: 1,
      zero_stage: this.stage,
      world: this.world,
      rank: this.rank,
      units: describeUnits(this.plan, this.args.names, this.sizes),
      shapes,
      state_names: stateNames,
      optimizer: { type: opt.type, paramGroups: opt.paramGroups, step: opt.slots[0]?.step ?? 0 },
    };
    return { tensors, meta: meta as unknown as Record<string, unknown> };
  }

  /** Parameter i's shape (stage 3 keeps it aside while the parameter is released). */
  protected shapeOf(i: number): readonly number[] {
    return this.args.params[i]!.shape;
  }

  /** Re-partitions from any number of saved ranks: whole tensors by name, then this rank's cut. */
  loadRankStates(savedWorld: number, read: (rank: number) => RankState): void {
    this.offload?.finish(); // a deferred step must not land on the loaded state
    const { meta, fp32, states } = readAllRanks(savedWorld, read, { names: this.args.names, sizes: this.sizes, stateNames: this.args.optimizer.stateNames });
    for (const [name, numel] of this.args.names.map((n, i): [string, number] => [n, this.sizes[i]!])) {
      const got = fp32.get(name);
      if (!got) throw new DSCheckpointError(`the partitioned checkpoint has no parameter '${name}' (it has ${[...fp32.keys()].slice(0, 5).join(', ')}, ...)`);
      if (got.length !== numel) throw new DSCheckpointError(`checkpoint parameter '${name}' has ${got.length} elements, the model has ${numel}`);
    }
    const units = describeUnits(this.plan, this.args.names, this.sizes);
    const shard = new Float32Array(this.plan.shardNumel);
    if (this.zc.load_from_fp32_weights) {
      cutShard(units, this.rank, fp32, shard);
      this.writeMasterShard(shard);
      this.mastersLoaded(fp32);
    } else this.refreshMaster();
    if (meta.state_names.length === 0) return;
    const cut = new Map<string, Float32Array>();
    for (const [name, full] of states) {
      const s = new Float32Array(this.plan.shardNumel);
      cutShard(units, this.rank, full, s);
      cut.set(name, s);
    }
    let at = 0;
    const slots = this.slotLen.map((n) => {
      const tensors: Record<string, Float32Array> = {};
      for (const name of this.args.optimizer.stateNames) {
        const s = cut.get(name);
        if (!s) throw new DSCheckpointError(`the partitioned checkpoint has no optimizer state '${name}' (saved by ${meta.optimizer.type})`);
        tensors[name] = s.slice(at, at + n);
      }
      at += n;
      return { step: meta.optimizer.step, tensors };
    });
    this.args.optimizer.loadStateDict({ type: meta.optimizer.type, paramGroups: meta.optimizer.paramGroups as never, slots });
    if (this.offload) slots.forEach((s, i) => this.offload!.writeSlot(i, s.tensors));
  }

  /** Whole fp32 masters by parameter name (collective: every rank must call it). */
  async masterWeights(): Promise<Map<string, Float32Array>> {
    const shard = this.masterShardOnHost();
    const all = new Float32Array(this.plan.shardNumel * this.world);
    if (this.group) await this.group.allGather({ dtype: 'f32', array: all }, { dtype: 'f32', array: shard });
    else all.set(shard);
    return assembleFull(describeUnits(this.plan, this.args.names, this.sizes), this.world, (r) => all.subarray(r * this.plan.shardNumel, (r + 1) * this.plan.shardNumel));
  }

  /**
   * Collective: rank `root`'s current parameter values become every rank's, in the 16-bit parameters
   * and the fp32 masters (so the next optimizer step starts from them). The parameters must be whole
   * (gathered, under stage 3) and changed in place; this is gatheredParameters' modifierRank.
   */
  async adoptParametersFrom(root: number): Promise<void> {
    if (!Number.isInteger(root) || root < 0 || root >= this.world) {
      throw new DSError(`gatheredParameters: modifierRank ${root} is not a rank of this data-parallel group (ranks 0-${this.world - 1})`, { code: 'DS_ZERO_BAD_RANK' });
    }
    const weights = new Map<string, NamedTensor>();
    const works: Promise<void>[] = [];
    for (const [i, p] of this.args.params.entries()) {
      const data = p.operand() as FArray;
      if (this.group && this.world > 1 && p.numel > 0) works.push(this.group.broadcast({ dtype: p.dtype, array: data }, { root }).wait());
    }
    await Promise.all(works);
    // The broadcast values, read back through an explicit copy, become the loaded weights.
    for (const [i, p] of this.args.params.entries()) {
      weights.set(this.args.names[i]!, { dtype: p.dtype as FloatDType, shape: [...p.shape], data: this.args.io.toHost(p.operand() as FArray) as HostArray });
    }
    await this.loadModuleState(weights, true);
  }

  /** After loadRankStates replaced the masters from the saved fp32 weights (`full`, whole by name): the 16-bit copies follow. */
  protected abstract mastersLoaded(full: Map<string, Float32Array>): void;

  /** Releases the tier's regions and staging buffers (the tier's own close is awaited in the background; a failure is logged). */
  protected releaseOffload(): void {
    const offload = this.offload;
    this.offload = null;
    offload?.close().catch((err: unknown) => this.args.ctx.log('warn', `ZeRO: closing the ${offload.tierName} offload tier failed: ${String(err)}`));
  }

  protected releaseMaster(): void {
    if (this.master) releaseFlat(this.master);
    this.master = null;
  }

  abstract beforeBackward(boundary: boolean): void;
  abstract afterBackward(): Promise<void>;
  abstract zeroGrad(): void;
  abstract moduleState(): Promise<Map<string, NamedTensor>>;
  abstract loadModuleState(weights: Map<string, NamedTensor>, refreshMaster: boolean): Promise<void>;
  abstract destroy(): void;
}

/**
 * The runs [start, length] of rank `rank`'s block of unit `u` that hold parameters counted in the
 * norm (`counted[i]`), adjacent ones merged; null when every parameter in the block is counted, so
 * the block is summed whole (its padding is zero).
 */
function countedRuns(u: Unit, rank: number, sizes: readonly number[], counted: readonly boolean[]): [number, number][] | null {
  const lo = rank * u.block;
  const runs: [number, number][] = [];
  let all = true;
  u.params.forEach((i, k) => {
    const from = Math.max(lo, u.offsets[k]!);
    const to = Math.min(lo + u.block, u.offsets[k]! + sizes[i]!);
    if (to <= from) return;
    if (!counted[i]) {
      all = false;
      return;
    }
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === from - lo) last[1] += to - from;
    else runs.push([from - lo, to - from]);
  });
  return all ? null : runs;
}
