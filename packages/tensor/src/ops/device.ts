// Copies between devices: the only way bytes cross the host boundary besides kernels.
//
// cpu -> device and device -> cpu go through the device backend's copyFromHost / copyToHost (pinned
// staging on cuda); device -> other device goes through the host. The copy is differentiable: the
// gradient is copied back to the source's device.

import { attach, needsGrad } from '../autograd/node.js';
import type { DeviceArray } from '../devices/device-array.js';
import { DSDeviceError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { checkDevices, contig, drop } from './util.js';

/** A contiguous copy of x on `device` without recording autograd history. */
export function toDeviceRaw(x: Tensor, device: string, opts: { label?: string } = {}): Tensor {
  const c = contig(x);
  const out = Tensor.empty(x.shape, x.dtype, { device, runtime: x.runtime, category: x.storage.category, label: opts.label ?? x.storage.label, uninitialized: true });
  try {
    copyInto(c, out);
  } catch (err) {
    out.dispose();
    throw err;
  } finally {
    drop(c, x);
  }
  return out;
}

/**
 * Copies the elements of contiguous `src` into contiguous `dst` of the same dtype and size, across
 * devices (same-device copies use the copy kernel).
 */
export function copyInto(src: Tensor, dst: Tensor): void {
  if (src.dtype !== dst.dtype || src.numel !== dst.numel) {
    throw new DSDeviceError(`copy: ${src.numel} ${src.dtype} elements cannot go into ${dst.numel} ${dst.dtype} elements; cast first`);
  }
  if (src.numel === 0) return;
  const rt = src.runtime;
  if (src.device === dst.device) {
    rt.kernels(src.device).copy(src.operand(), dst.operand(), src.numel);
  } else if (src.isHost) {
    rt.device(dst.device).copyFromHost(src.data(), dst.operand() as DeviceArray);
  } else if (dst.isHost) {
    rt.device(src.device).copyToHost(src.operand() as DeviceArray, dst.data());
  } else {
    const staged = toDeviceRaw(src, 'cpu', { label: 'device staging' });
    try {
      rt.device(dst.device).copyFromHost(staged.data(), dst.operand() as DeviceArray);
    } finally {
      staged.dispose();
    }
  }
}

/** x on `device` (x itself when it is already there); differentiable. */
export function toDevice(x: Tensor, device: string): Tensor {
  checkDevices('to', x);
  if (x.device === device) return x;
  const y = toDeviceRaw(x, device);
  if (needsGrad(x)) {
    const from = x.device;
    attach(y, 'to', [x], (dy) => [toDeviceRaw(dy, from)]);
  }
  return y;
}
