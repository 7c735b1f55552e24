// Argument checks run before anything crosses into native code. Core's checks (validate.ts) look at
// host typed arrays; NCCL moves GPU memory, so these apply the same rules (dtype, sizes, the allowed
// in-place forms, the same messages) to device arrays, whose bytes JavaScript cannot see: element
// kind, length and device address. Reduce ops, ranks and timeouts are core's own checks.
import { DSShapeError, DSUnsupportedError, type CommOpName } from '@ds/core';
import type { DeviceArray, DType, HostArray } from '@ds/tensor';

export { checkRank, checkReduceOp, checkTimeout, DTYPE_CODE, OP_CODE, REDUCE_CODE } from '@ds/core';

/**
 * What the ops take: core's buffer descriptor, whose array is a host typed array or a DeviceArray
 * (core's AnyCommBuffer). Only DeviceArrays on 'cuda' pass the checks below.
 */
export interface NcclBuffer {
  dtype: DType;
  array: HostArray | DeviceArray;
}

const KIND_FOR: Readonly<Record<DType, string>> = { f32: 'f32', bf16: 'u16', f16: 'u16', i32: 'i32', u8: 'u8' };
const BYTES: Readonly<Record<DType, number>> = { f32: 4, bf16: 2, f16: 2, i32: 4, u8: 1 };

/** The device array of `buf`; a host array or another device's memory fails naming the op and saying what to do. */
export function deviceArrayOf(op: CommOpName, what: string, buf: NcclBuffer): DeviceArray {
  if (!buf || typeof buf !== 'object') throw new DSShapeError(`${op}: ${what} must be a { dtype, array } buffer descriptor`);
  const kind = KIND_FOR[buf.dtype];
  if (!kind) throw new DSUnsupportedError(`${op}: dtype '${String(buf.dtype)}' is not supported by collectives (supported: f32, bf16, f16, i32, u8)`);
  const array = buf.array as unknown;
  if (ArrayBuffer.isView(array)) {
    const name = (array as { constructor?: { name?: string } }).constructor?.name ?? 'typed array';
    throw new DSShapeError(
      `${op}: ${what} is a host ${name}, but the nccl backend moves GPU memory only; put the tensor on 'cuda' (tensor.to('cuda')) before the collective, or use comm backend 'cpu' for host tensors`,
    );
  }
  // Structural, not instanceof: the DeviceArray may come from another copy of @ds/tensor.
  const a = array as Partial<DeviceArray> | null;
  if (!a || typeof a !== 'object' || typeof a.address !== 'bigint' || typeof a.device !== 'string' || !Number.isSafeInteger(a.length)) {
    throw new DSShapeError(`${op}: ${what}.array must be a DeviceArray on 'cuda' (device, address, length, kind), got ${String(array)}`);
  }
  if (a.device !== 'cuda') {
    throw new DSShapeError(`${op}: ${what} lives on device '${a.device}', but the nccl backend moves memory of device 'cuda' only; move the tensor with .to('cuda'), or use the comm backend of its device`);
  }
  if (a.kind !== kind) throw new DSShapeError(`${op}: ${what} has dtype ${buf.dtype} but its array holds ${String(a.kind)} elements (expected ${kind})`);
  if (a.byteLength !== a.length! * BYTES[buf.dtype]) throw new DSShapeError(`${op}: ${what} array length does not match its bytes`);
  return a as DeviceArray;
}

function overlaps(a: DeviceArray, b: DeviceArray): boolean {
  const a1 = a.address + BigInt(a.byteLength);
  const b1 = b.address + BigInt(b.byteLength);
  return a.address < b1 && b.address < a1;
}

/**
 * Sizes of the two-buffer collectives, as core's checkPair: in place only as allGather with input =
 * block `rank` of output, reduceScatter with output = block `rank` of input, allToAll with input = output.
 */
export function checkDevicePair(
  op: 'reduceScatter' | 'allGather' | 'allToAll',
  output: NcclBuffer,
  input: NcclBuffer,
  size: number,
  rank: number,
): { out: DeviceArray; inp: DeviceArray } {
  const out = deviceArrayOf(op, 'output', output);
  const inp = deviceArrayOf(op, 'input', input);
  if (output.dtype !== input.dtype) throw new DSShapeError(`${op}: output is ${output.dtype} but input is ${input.dtype}; both must have the same dtype`);
  const o = out.length, i = inp.length;
  const blockOffset = (n: number) => BigInt(rank * n * BYTES[output.dtype]);
  if (op === 'reduceScatter') {
    if (i !== o * size) throw new DSShapeError(`reduceScatter: input has ${i} elements but must hold ${size} blocks of the output's ${o}`);
    if (overlaps(out, inp) && out.address !== inp.address + blockOffset(o)) throw new DSShapeError('reduceScatter: output overlaps input (only output = block `rank` of input is allowed)');
  } else if (op === 'allGather') {
    if (o !== i * size) throw new DSShapeError(`allGather: output has ${o} elements but must hold ${size} blocks of the input's ${i}`);
    if (overlaps(out, inp) && inp.address !== out.address + blockOffset(i)) throw new DSShapeError('allGather: input overlaps output (only input = block `rank` of output is allowed)');
  } else {
    if (o !== i) throw new DSShapeError(`allToAll: output has ${o} elements but input has ${i}; they must be equal`);
    if (i % size !== 0) throw new DSShapeError(`allToAll: ${i} elements do not split into ${size} equal blocks`);
    if (overlaps(out, inp) && out.address !== inp.address) throw new DSShapeError('allToAll: input and output partly overlap (use the same view for in-place)');
  }
  return { out, inp };
}
