// Explicit dtype casts. Float-to-float casts are differentiable: the gradient is cast back to the
// input's dtype, which is how f32 master parameters receive f32 gradients from bf16 compute.

import { isFloat, type DType } from '../dtype.js';
import { attach, needsGrad } from '../autograd/node.js';
import type { Tensor } from '../tensor.js';
import { castRaw, checkDevices } from './util.js';

/** x converted to dtype; x itself when the dtype already matches. */
export function cast(x: Tensor, dtype: DType): Tensor {
  checkDevices('cast', x);
  if (x.dtype === dtype) return x;
  const y = castRaw(x, dtype);
  if (needsGrad(x) && isFloat(dtype) && isFloat(x.dtype)) {
    const from = x.dtype;
    attach(y, 'cast', [x], (dy) => [castRaw(dy, from)]);
  }
  return y;
}
