// Stage 0: plain data parallelism over flat buffers, the model-state manager used when no ZeRO
// plugin claims the config.
//
// Every rank holds everything: 16-bit parameters (or fp32), gradients, fp32 master weights and the
// optimizer state. Gradients accumulate in one flat buffer laid out in units (partition.ts, with a
// world of one: nothing is partitioned); on the accumulation boundary core's gradient reduction
// (reduction.ts) all-reduces each unit from the gradient-ready hooks, so the reduction of late
// layers overlaps the backward of early ones.
//
// DeepSpeed requires fp32 gradient accumulation for a bf16 model without ZeRO; that is our default
// for bf16 and fp16 (data_types.grad_accum_dtype may choose the parameters' 16-bit type instead).
import { Tensor, type F32, type FloatDType, type HostArray, type U16 } from '@ds/tensor';

import { DSCheckpointError } from '../errors.js';
import type { NamedTensor } from '../checkpoint/safetensors.js';
import type { ProcessGroup } from '../comm/types.js';
import type { OptimizerSlot } from '../optim/types.js';
import { adoptParameters, allocateFlat, attachGradients, flatArray, releaseFlat, type FlatBuffer, type FlatLayout } from './flat.js';
import { clipCoefficient } from './grads.js';
import { bucketGroups, planUnits, type PartitionPlan } from './partition.js';
import { gradAccumDtype, gradientReductionFor, type GradientReduction } from './reduction.js';
import type { ModelStateBytes, ModelStateManager, RankState, StateManagerArgs, StepInput, StepOutput } from './types.js';

/** Elements per gradient bucket of stage 0 (DeepSpeed reduces non-ZeRO gradients in 5e8-element
 *  buckets; smaller ones let the reduction start during backward on the models this runs). */
export const DP_BUCKET_ELEMENTS = 1 << 22;

export class DataParallelState implements ModelStateManager {
  readonly stage = 0;
  readonly partitioned = false;
  private readonly layout: FlatLayout;
  private readonly plan: PartitionPlan;
  private readonly params: FlatBuffer;
  private readonly grads: FlatBuffer;
  private readonly gradDtype: FloatDType;
  private readonly master: FlatBuffer | null;
  private readonly gradViews: Tensor[];
  private readonly slots: OptimizerSlot[];
  private readonly reduction: GradientReduction;
  /** The model and pipe groups the norm and the overflow flag are summed over (empty without model or pipeline parallelism). */
  private readonly slice: ProcessGroup[];
  /** [start, length] runs of the flat gradients this rank counts in the norm (args.normCounted, adjacent parameters merged). */
  private readonly normRuns: [number, number][];

  private constructor(
    private readonly args: StateManagerArgs,
    plan: PartitionPlan,
    gradBuffer: ArrayBuffer | undefined,
  ) {
    const { runtime, kernels, params, paramDtype } = args;
    const device = args.io.device;
    this.plan = plan;
    this.layout = { offsets: plan.flatOffset, sizes: params.map((p) => p.numel), numel: plan.flatNumel };
    const n = this.layout.numel;
    this.gradDtype = gradAccumDtype(args.config, paramDtype, false);
    this.params = allocateFlat(runtime, paramDtype, n, 'parameters', 'flat parameters', undefined, device);
    adoptParameters(runtime, kernels, params, this.layout, this.params);
    this.grads = allocateFlat(runtime, this.gradDtype, n, 'gradients', 'flat gradients', gradBuffer, device);
    kernels.fill(this.gradDtype, flatArray(this.grads), n, 0);
    this.gradViews = attachGradients(runtime, params, this.layout, this.grads);
    if (paramDtype === 'f32') {
      this.master = null;
    } else {
      this.master = allocateFlat(runtime, 'f32', n, 'optimizer_states', 'fp32 master weights', undefined, device);
      kernels.cast(paramDtype, flatArray(this.params), 'f32', flatArray(this.master), n);
    }
    this.slots = this.makeSlots();
    this.reduction = gradientReductionFor(args, { plan, gradDtype: this.gradDtype, collective: 'allReduce', mode: 'inPlace', flat: this.grads, overlap: true });
    const { model, pipe } = args.ctx.groups;
    this.slice = [model, pipe].filter((g): g is ProcessGroup => g !== null && g.size > 1);
    this.normRuns = countedRuns(this.layout, args.normCounted);
  }

  /** Collective when a group is given: rank 0's parameters are broadcast so every rank starts equal. */
  static async create(args: StateManagerArgs): Promise<DataParallelState> {
    const sizes = args.params.map((p) => p.numel);
    // One unit per bucket, back to front; a world of one: every rank keeps whole units.
    const plan = planUnits(bucketGroups(sizes, DP_BUCKET_ELEMENTS), sizes, 1, 0, 1);
    const gradBytes = plan.flatNumel * (gradAccumDtype(args.config, args.paramDtype, false) === 'f32' ? 4 : 2);
    // Registered (shared) memory is host memory: a device engine's gradients stay on the device.
    const gradBuffer = args.group && args.group.size > 1 && args.io.device === 'cpu' ? await args.group.allocRegistered(gradBytes) : undefined;
    const state = new DataParallelState(args, plan, gradBuffer);
    if (args.group && args.group.size > 1) {
      await args.group.broadcast({ dtype: args.paramDtype, array: flatArray(state.params) }, { root: 0 });
      if (state.master) args.kernels.cast(args.paramDtype, flatArray(state.params), 'f32', flatArray(state.master), plan.flatNumel);
    }
    return state;
  }

  private masterArray(): F32 {
    return flatArray(this.master ?? this.params) as F32;
  }

  private makeSlots(): OptimizerSlot[] {
    const master = this.masterArray();
    const grad = flatArray(this.grads);
    const out16 = this.master ? (flatArray(this.params) as U16) : undefined;
    const out16Dtype = this.args.paramDtype === 'f16' ? ('f16' as const) : ('bf16' as const);
    const slot = (start: number, n: number, group: number): OptimizerSlot => ({
      master: master.subarray(start, start + n),
      grad: grad.subarray(start, start + n),
      gradDtype: this.gradDtype,
      group,
      ...(out16 ? { out16: out16.subarray(start, start + n), out16Dtype } : {}),
    });
    const { groupOf } = this.args;
    if (!this.args.optimizer.elementwise) return this.args.params.map((_, i) => slot(this.layout.offsets[i]!, this.layout.sizes[i]!, groupOf[i]!));
    // Elementwise: one slot per run of parameters of one group, in layout order (one slot without groups).
    const order = this.args.params.map((_, i) => i).sort((a, b) => this.layout.offsets[a]! - this.layout.offsets[b]!);
    const slots: OptimizerSlot[] = [];
    let start = 0;
    order.forEach((i, k) => {
      const next = order[k + 1];
      if (next !== undefined && groupOf[next] === groupOf[i]) return;
      const end = next === undefined ? this.layout.numel : this.layout.offsets[next]!;
      slots.push(slot(start, end - start, groupOf[i]!));
      start = end;
    });
    return slots;
  }

  beforeBackward(boundary: boolean): void {
    this.reduction.begin(boundary);
  }

  afterBackward(): Promise<void> {
    return this.reduction.finish();
  }

  async step(input: StepInput): Promise<StepOutput> {
    const { kernels } = this.args;
    const grad = flatArray(this.grads);
    const n = this.layout.numel;
    let gradNorm: number;
    if (this.slice.length === 0) {
      // After the all-reduce every data rank holds the same gradients, so these agree without more communication.
      if (kernels.hasInfNan(this.gradDtype, grad, n)) return { overflow: true, gradNorm: NaN };
      gradNorm = Math.sqrt(kernels.sumSquares(this.gradDtype, grad, n)) / input.lossScale;
    } else {
      // Model or pipeline parallelism: this rank holds part of the model. Its counted squares and its
      // overflow flag are summed over the model and pipe groups, so every rank of the slice gets the
      // whole model's norm and skips the same steps.
      const bad = kernels.hasInfNan(this.gradDtype, grad, n);
      let sumSq = 0;
      if (!bad) for (const [start, len] of this.normRuns) sumSq += kernels.sumSquares(this.gradDtype, flatArray(this.grads, start, len), len);
      const totals = Float32Array.of(sumSq, bad ? 1 : 0);
      for (const g of this.slice) await g.allReduce({ dtype: 'f32', array: totals }, { op: 'sum' });
      if (totals[1]! > 0 || !Number.isFinite(totals[0]!)) return { overflow: true, gradNorm: NaN };
      gradNorm = Math.sqrt(totals[0]!) / input.lossScale;
    }
    const coeff = clipCoefficient(gradNorm, input.clip);
    this.args.optimizer.step(this.slots, { gradScale: coeff / input.lossScale });
    return { overflow: false, gradNorm };
  }

  zeroGrad(): void {
    this.args.kernels.fill(this.gradDtype, flatArray(this.grads), this.layout.numel, 0);
  }

  /** Every rank holds the whole masters: no communication. */
  async masterWeights(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    const master = this.masterArray();
    this.args.params.forEach((p, i) => out.set(this.args.names[i]!, this.args.io.toHost(master.subarray(this.layout.offsets[i]!, this.layout.offsets[i]! + p.numel))));
    return out;
  }

  modelStateBytes(): ModelStateBytes {
    const n = this.layout.numel;
    const paramBytes = this.params.storage.byteLength;
    const optimizerStates = (this.master ? n * 4 : 0) + n * 4 * this.args.optimizer.stateNames.length;
    return { parameters: paramBytes, gradients: this.grads.storage.byteLength, optimizerStates };
  }

  async moduleState(): Promise<Map<string, NamedTensor>> {
    const out = new Map<string, NamedTensor>();
    this.args.params.forEach((p, i) => {
      out.set(this.args.names[i]!, { dtype: this.args.paramDtype, shape: [...p.shape], data: this.args.io.toHost(flatArray(this.params, this.layout.offsets[i]!, this.layout.sizes[i]!)) });
    });
    return out;
  }

  async loadModuleState(weights: Map<string, NamedTensor>, refreshMaster: boolean): Promise<void> {
    const { kernels, names, params, paramDtype } = this.args;
    params.forEach((p, i) => {
      const w = weights.get(names[i]!);
      if (!w) throw new DSCheckpointError(`checkpoint has no weights for parameter '${names[i]}'`);
      if (w.shape.join(',') !== p.shape.join(',')) throw new DSCheckpointError(`checkpoint weights '${names[i]}' have shape [${w.shape}], the model has [${p.shape}]`);
      this.args.io.castFromHost(w.dtype, w.data as HostArray, paramDtype, flatArray(this.params, this.layout.offsets[i]!, this.layout.sizes[i]!), p.numel);
    });
    if (refreshMaster && this.master) kernels.cast(paramDtype, flatArray(this.params), 'f32', flatArray(this.master), this.layout.numel);
  }

  rankState(): RankState {
    const tensors = new Map<string, NamedTensor>();
    if (this.master) tensors.set('master', { dtype: 'f32', shape: [this.layout.numel], data: this.args.io.toHost(flatArray(this.master)) });
    const opt = this.args.optimizer.stateDict();
    opt.slots.forEach((s, i) => {
      for (const [k, v] of Object.entries(s.tensors)) tensors.set(`optimizer.slot${i}.${k}`, { dtype: 'f32', shape: [v.length], data: v });
    });
    // Where each parameter's masters lie in the flat buffer: what a consolidation tool needs to read them by name.
    const params = this.args.params.map((p, i) => ({ name: this.args.names[i]!, offset: this.layout.offsets[i]!, shape: [...p.shape] }));
    return { tensors, meta: { stage: 0, numel: this.layout.numel, params, optimizer: { type: opt.type, paramGroups: opt.paramGroups, steps: opt.slots.map((s) => s.step) } } };
  }

  /** Every rank held the same state, so rank 0's file serves any world size. */
  loadRankStates(_savedWorld: number, read: (rank: number) => RankState): void {
    this.loadRankState(read(0));
  }

  private loadRankState(state: RankState): void {
    const meta = state.meta as { numel: number; optimizer: { type: string; paramGroups: never[]; steps: number[] } };
    if (meta.numel !== this.layout.numel) throw new DSCheckpointError(`checkpoint optimizer state covers ${meta.numel} parameters, the model has ${this.layout.numel}`);
    const master = state.tensors.get('master');
    if (this.master && master) this.args.io.fromHost(master.data as HostArray, flatArray(this.master));
    const slots = meta.optimizer.steps.map((step, i) => {
      const tensors: Record<string, Float32Array> = {};
      for (const name of this.args.optimizer.stateNames) {
        const t = state.tensors.get(`optimizer.slot${i}.${name}`);
        if (!t) throw new DSCheckpointError(`checkpoint optimizer state lacks 'optimizer.slot${i}.${name}'`);
        tensors[name] = t.data as Float32Array;
      }
      return { step, tensors };
    });
    this.args.optimizer.loadStateDict({ type: meta.optimizer.type, paramGroups: meta.optimizer.paramGroups, slots });
  }

  destroy(): void {
    this.reduction.destroy();
    this.args.params.forEach((p) => (p.grad = null));
    for (const g of this.gradViews) g.dispose();
    // Give each parameter its own copy so the flat buffer can go while the module lives on.
    const { runtime, kernels } = this.args;
    for (const p of this.args.params) {
      const own = Tensor.empty(p.shape, p.dtype, { runtime, device: p.device, category: 'parameters', label: p.name ?? 'parameter', track: false });
      kernels.copy(p.operand(), own.operand(), p.numel);
      p.setData(own);
      own.dispose();
    }
    releaseFlat(this.grads);
    if (this.master) releaseFlat(this.master);
    releaseFlat(this.params);
  }
}

/** The counted parameters' ranges of the flat layout, in offset order, adjacent ones merged into one run. */
function countedRuns(layout: FlatLayout, counted: readonly boolean[]): [number, number][] {
  const order = layout.offsets.map((_, i) => i).filter((i) => counted[i]).sort((a, b) => layout.offsets[a]! - layout.offsets[b]!);
  const runs: [number, number][] = [];
  for (const i of order) {
    const start = layout.offsets[i]!;
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === start) last[1] += layout.sizes[i]!;
    else runs.push([start, layout.sizes[i]!]);
  }
  return runs;
}
