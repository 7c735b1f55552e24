// Point-to-point transfers between neighbouring stages over the pipe group (DeepSpeed's
// runtime/pipe/p2p.py plus the engine's meta exchange). The first activation a stage sends carries
// a small header (rank, dtype, shape); the receiver caches it and allocates every later receive
// buffer from it, so later micro batches and batches send the data alone. Gradients travel back with
// the shape of the activation they belong to, which the sender of that activation already knows.
//
// With tensor parallelism, every model rank of a stage holds the same activation (and the same
// gradient of its input), and each talks to the model rank of the same coordinate on the next stage.
// DeepSpeed's `pipe_partitioned` / `grad_partitioned` (both default true) then send only this model
// rank's 1/P of the flattened tensor; the receiver all-gathers the pieces over its model group, so
// each stage boundary moves the tensor once instead of P times. A tensor whose size is not a multiple
// of P travels whole.
import { narrow, reshape, Tensor, type DType } from '@ds/tensor';
import { DSShapeError, type ProcessGroup, type Work } from '@ds/core';

const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'i32', 'u8'];
const HEADER = 8; // [rank, dtype code, dims...]

export interface TensorMeta {
  dtype: DType;
  shape: number[];
}

const same = (a: TensorMeta, b: TensorMeta) => a.dtype === b.dtype && a.shape.join(',') === b.shape.join(',');
const fmt = (m: TensorMeta) => `${m.dtype}[${m.shape.join(', ')}]`;

export class StageLink {
  private sentMeta: TensorMeta | null = null;
  private recvMeta: TensorMeta | null = null;

  constructor(
    private readonly group: ProcessGroup,
    readonly stage: number,
    private readonly partition: { model: ProcessGroup; activations: boolean; grads: boolean } | null = null,
  ) {}

  /** The model group that splits a tensor of `numel` elements, or null when it travels whole. */
  private splitter(numel: number, kind: 'activations' | 'grads'): ProcessGroup | null {
    const p = this.partition;
    if (!p || !p[kind] || numel % p.model.size !== 0) return null;
    return p.model;
  }

  /** Sends t to `dst` whole, or this model rank's piece of it; returns the Work and the handle to free after it. */
  private sendPiece(t: Tensor, dst: number, kind: 'activations' | 'grads'): { work: Work; view: Tensor | null } {
    const model = this.splitter(t.numel, kind);
    if (!model) return { work: this.group.send({ dtype: t.dtype, array: t.operand() }, { dst }), view: null };
    const size = t.numel / model.size;
    const flat = reshape(t, [t.numel]);
    const view = narrow(flat, 0, model.rank * size, size);
    if (flat !== t && flat !== view) flat.dispose();
    return { work: this.group.send({ dtype: t.dtype, array: view.operand() }, { dst }), view };
  }

  /**
   * Receives into t from `src` whole, or this model rank's piece and then the others' over the model
   * group. The stage has nothing to do until the tensor is in, so the receive is blocking (as in
   * DeepSpeed): the cpu backend then takes the message on this thread, without a comm thread's
   * hand-off on the way (RecvOptions.blocking).
   */
  private async recvPiece(t: Tensor, src: number, kind: 'activations' | 'grads'): Promise<void> {
    const model = this.splitter(t.numel, kind);
    if (!model) {
      await this.group.recv({ dtype: t.dtype, array: t.operand() }, { src, blocking: true });
      return;
    }
    const piece = Tensor.empty([t.numel / model.size], t.dtype, { device: t.device, category: 'communication', label: `${kind} piece from stage ${src}`, uninitialized: true });
    try {
      await this.group.recv({ dtype: piece.dtype, array: piece.operand() }, { src, blocking: true });
      await model.allGather({ dtype: t.dtype, array: t.operand() }, { dtype: piece.dtype, array: piece.operand() });
    } finally {
      piece.dispose();
    }
  }

  /**
   * Sends an activation to the next stage (its header first, once); the data must stay untouched
   * until the Works complete, and `free` lists handles to release after them.
   */
  sendActivation(t: Tensor): { works: Work[]; free: Tensor[] } {
    const works: Work[] = [];
    const meta: TensorMeta = { dtype: t.dtype, shape: [...t.shape] };
    if (!this.sentMeta) {
      if (meta.shape.length > HEADER - 2) throw new DSShapeError(`pipeline stage ${this.stage}: activations of rank ${meta.shape.length} cannot be sent (at most ${HEADER - 2} dims)`);
      const header = new Int32Array(HEADER);
      header[0] = meta.shape.length;
      header[1] = DTYPES.indexOf(meta.dtype);
      meta.shape.forEach((d, i) => (header[2 + i] = d));
      works.push(this.group.send({ dtype: 'i32', array: header }, { dst: this.stage + 1 }));
      this.sentMeta = meta;
    } else if (!same(this.sentMeta, meta)) {
      throw new DSShapeError(`pipeline stage ${this.stage}: activation ${fmt(meta)} differs from the first one sent, ${fmt(this.sentMeta)}; every micro batch must have the same shape (DeepSpeed's dynamic_shape is not built)`);
    }
    const { work, view } = this.sendPiece(t, this.stage + 1, 'activations');
    works.push(work);
    return { works, free: view ? [view] : [] };
  }

  /** Receives an activation from the previous stage into a new tensor (the header once, first). */
  async recvActivation(requiresGrad: boolean): Promise<Tensor> {
    if (!this.recvMeta) {
      const header = new Int32Array(HEADER);
      await this.group.recv({ dtype: 'i32', array: header }, { src: this.stage - 1, blocking: true });
      const dims = header[0]!;
      this.recvMeta = { dtype: DTYPES[header[1]!]!, shape: Array.from(header.subarray(2, 2 + dims)) };
    }
    const t = Tensor.empty(this.recvMeta.shape, this.recvMeta.dtype, { category: 'activations', label: `activation from stage ${this.stage - 1}` });
    await this.recvPiece(t, this.stage - 1, 'activations');
    if (requiresGrad && t.dtype !== 'i32' && t.dtype !== 'u8') t.requiresGrad = true;
    return t;
  }

  /** Sends the gradient of the received activation back; `free` lists handles to release after the Work. */
  sendGrad(g: Tensor): { work: Work; free: Tensor[] } {
    const { work, view } = this.sendPiece(g, this.stage - 1, 'grads');
    return { work, free: view ? [view] : [] };
  }

  /** Receives the gradient of `output` (sent to the next stage) into a tensor of its shape. */
  async recvGrad(output: Tensor): Promise<Tensor> {
    const g = Tensor.empty([...output.shape], output.dtype, { category: 'activations', label: `gradient from stage ${this.stage + 1}` });
    await this.recvPiece(g, this.stage + 1, 'grads');
    return g;
  }
}
