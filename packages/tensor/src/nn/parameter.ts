// Parameter: a leaf tensor that requires grad, counted under 'parameters'. Its data and its grad
// can be re-pointed (setData, grad =) into flat buffers, which is how ZeRO partitions and
// flattens parameters without the model noticing.

import { Tensor } from '../tensor.js';

export class Parameter extends Tensor {
  /** Adopts t's bytes (t's handle stays valid; dispose it if it was a temporary). */
  constructor(t: Tensor, requiresGrad = true) {
    super({ storage: t.storage, dtype: t.dtype, shape: t.shape, strides: t.strides, offset: t.offset, runtime: t.runtime, track: false });
    if (!t.storage.external) t.storage.setCategory('parameters');
    this.requiresGrad = requiresGrad;
  }

  /** A parameter made from a freshly created tensor, whose handle is released. */
  static from(t: Tensor, requiresGrad = true): Parameter {
    const p = new Parameter(t, requiresGrad);
    t.dispose();
    return p;
  }
}
