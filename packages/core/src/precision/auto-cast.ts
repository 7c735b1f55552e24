// fp16.auto_cast: DeepSpeed's engine casts the floating-point inputs of forward to half before
// calling the module (engine._cast_inputs_half), through lists and objects; integer inputs (token
// ids) are left alone. The casts belong to the caller's scope, like the inputs themselves.
import { isFloat, Tensor } from '@ds/tensor';

export function castInputsHalf(value: unknown): unknown {
  if (value instanceof Tensor) return isFloat(value.dtype) && value.dtype !== 'f16' ? value.to('f16') : value;
  if (Array.isArray(value)) return value.map(castInputsHalf);
  if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, castInputsHalf(v)]));
  }
  return value;
}
