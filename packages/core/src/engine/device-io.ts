// Explicit copies between the engine's device and the host, for the few places that must hold
// values in JavaScript: checkpoints (safetensors bytes), consolidated weights, and state handed to
// optimizers' state dicts. Everything else stays on the device and changes only through kernels.
import { DeviceArray, DSShapeError, ELEMENT_KIND, type DeviceBackend, type DType, type HostArray, type KArray, type Operand, type Runtime } from '@ds/tensor';

export interface DeviceIO {
  /** The device the engine's model states live on ('cpu', 'sim', 'cuda'). */
  readonly device: string;
  /** A fresh host copy of an operand's elements (on the cpu: a copy too, never a view). */
  toHost<T extends HostArray>(a: Operand<T>): T;
  /** Writes host elements into an operand of the same element size (src.length elements). */
  fromHost(src: HostArray, dst: KArray): void;
  /**
   * Writes `n` host elements of `srcDtype` into an operand of `dstDtype`, converting on the host
   * first when the dtypes differ (checkpoint weights into 16-bit parameters on a device).
   */
  castFromHost(srcDtype: DType, src: HostArray, dstDtype: DType, dst: KArray, n: number): void;
}

export function deviceIO(runtime: Runtime, device: string): DeviceIO {
  const backend: DeviceBackend | null = device === 'cpu' ? null : runtime.device(device);
  return {
    device,
    toHost<T extends HostArray>(a: Operand<T>): T {
      if (!(a instanceof DeviceArray)) return (a as T).slice() as T;
      if (!backend || a.device !== device) throw new DSShapeError(`toHost: an array on '${a.device}' reached the '${device}' engine`);
      const out = newHost(a.kind, a.length) as T;
      backend.copyToHost(a, out);
      return out;
    },
    fromHost(src: HostArray, dst: KArray): void {
      if (!(dst instanceof DeviceArray)) {
        if (dst.BYTES_PER_ELEMENT !== src.BYTES_PER_ELEMENT || dst.length < src.length) throw new DSShapeError(`fromHost: ${src.length} elements do not fit a ${dst.length}-element array`);
        (dst as Uint8Array).set(src as unknown as Uint8Array);
        return;
      }
      if (!backend || dst.device !== device) throw new DSShapeError(`fromHost: an array on '${dst.device}' reached the '${device}' engine`);
      backend.copyFromHost(src, dst);
    },
    castFromHost(srcDtype, src, dstDtype, dst, n) {
      if (!(dst instanceof DeviceArray)) {
        runtime.kernels('cpu').cast(srcDtype, src, dstDtype, dst, n);
        return;
      }
      if (srcDtype === dstDtype) {
        this.fromHost(src.subarray(0, n), dst);
        return;
      }
      const staged = newHost(ELEMENT_KIND[dstDtype], n);
      runtime.kernels('cpu').cast(srcDtype, src, dstDtype, staged, n);
      this.fromHost(staged, dst);
    },
  };
}

function newHost(kind: DeviceArray['kind'], n: number): HostArray {
  return kind === 'f32' ? new Float32Array(n) : kind === 'u16' ? new Uint16Array(n) : kind === 'i32' ? new Int32Array(n) : new Uint8Array(n);
}
