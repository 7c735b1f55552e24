// Point-to-point transfers between neighbouring stages over the pipe group (DeepSpeed's
// runtime/pipe/p2p.py plus the engine's meta exchange). The first activation a stage sends carries
// a small header (rank, dtype, shape); the receiver caches it and allocates every later receive
// buffer from it, so later micro batches and batches send the data alone. Gradients travel back with
// the shape of the activation they belong to, which the sender of that activation already knows.
import { Tensor, type DType } from '@ds/tensor';
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
  ) {}

  /** Sends an activation to the next stage (its header first, once); the data must stay untouched until the Works complete. */
  sendActivation(t: Tensor): Work[] {
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
    works.push(this.group.send({ dtype: t.dtype, array: t.operand() }, { dst: this.stage + 1 }));
    return works;
  }

  /** Receives an activation from the previous stage into a new tensor (the header once, first). */
  async recvActivation(requiresGrad: boolean): Promise<Tensor> {
    if (!this.recvMeta) {
      const header = new Int32Array(HEADER);
      await this.group.recv({ dtype: 'i32', array: header }, { src: this.stage - 1 });
      const dims = header[0]!;
      this.recvMeta = { dtype: DTYPES[header[1]!]!, shape: Array.from(header.subarray(2, 2 + dims)) };
    }
    const t = Tensor.empty(this.recvMeta.shape, this.recvMeta.dtype, { category: 'activations', label: `activation from stage ${this.stage - 1}` });
    await this.group.recv({ dtype: t.dtype, array: t.operand() }, { src: this.stage - 1 });
    if (requiresGrad && t.dtype !== 'i32' && t.dtype !== 'u8') t.requiresGrad = true;
    return t;
  }

  /** Sends the gradient of the received activation back to the previous stage. */
  sendGrad(g: Tensor): Work {
    return this.group.send({ dtype: g.dtype, array: g.operand() }, { dst: this.stage - 1 });
  }

  /** Receives the gradient of `output` (sent to the next stage) into a tensor of its shape. */
  async recvGrad(output: Tensor): Promise<Tensor> {
    const g = Tensor.empty([...output.shape], output.dtype, { category: 'activations', label: `gradient from stage ${this.stage + 1}` });
    await this.group.recv({ dtype: g.dtype, array: g.operand() }, { src: this.stage + 1 });
    return g;
  }
}
