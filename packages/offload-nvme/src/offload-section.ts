// The keys of an offload_optimizer / offload_param section a tier receives, each either acted on
// here or rejected by name (no key accepted without effect):
// - device, nvme_path: choose the tier and where the nvme tier keeps its file.
// - pin_memory: the cpu tier page-locks its host buffers (mlock), as DeepSpeed pins its host
//   buffers for DMA; for nvme the pinned buffers would be ZeRO's staging buffers, not built.
// - pipeline_read / pipeline_write / buffer_count (optimizer): read by @ds/zero, which streams the
//   sub-groups through staging sets (packages/zero/src/offload-state.ts): pipelining overlaps the
//   read of sub-group i+1 and the write of i-1 with the step of i, buffer_count bounds the sets.
// - buffer_count, buffer_size, max_in_cpu (param): read by @ds/zero's parameter offload
//   (packages/zero/src/param-offload.ts); buffer_size and max_in_cpu choose which units stay in host
//   memory under 'nvme', so with 'cpu' they have no effect and a warning says so.
// - fast_init, ratio (optimizer): their defaults only; other values are rejected, naming what is not built.
import { DSConfigError, type ConfigProblem, type OffloadTierOptions } from '@ds/core';

const UNBUILT: Readonly<Record<OffloadTierOptions['kind'], Readonly<Record<string, [unknown, string]>>>> = {
  optimizer: {
    fast_init: [false, 'fast NVMe initialisation of the optimizer state is not built (the state starts as zeros without a swap-in anyway)'],
    ratio: [1, 'partial optimizer offload (part of the state on the device, part in the tier) is not built'],
  },
  param: {},
};

export interface TierSection {
  device: string;
  nvmePath: string | null;
  pinMemory: boolean;
}

/** Checks the section for the tier `device`; throws one DSConfigError listing every key it cannot act on. */
export function tierSectionOf(options: OffloadTierOptions, device: 'cpu' | 'nvme'): TierSection {
  const key = `zero_optimization.offload_${options.kind}`;
  const s = options.section;
  const problems: ConfigProblem[] = [];
  for (const [name, [dflt, why]] of Object.entries(UNBUILT[options.kind])) {
    if (s[name] !== undefined && s[name] !== dflt) problems.push({ path: `${key}.${name}`, value: s[name], message: `recognised but not supported with @ds/offload-nvme: ${why}; leave it at ${JSON.stringify(dflt)}` });
  }
  if (device === 'nvme' && s.pin_memory === true) {
    problems.push({ path: `${key}.pin_memory`, value: true, message: "recognised but not supported with device 'nvme': the buffers that would be pinned are ZeRO's staging buffers, which are not page-locked yet; set pin_memory false" });
  }
  if (problems.length > 0) throw new DSConfigError(problems.map((p) => `${p.path}: ${p.message}`).join('; '), problems);
  return { device, nvmePath: typeof s.nvme_path === 'string' ? s.nvme_path : null, pinMemory: s.pin_memory === true };
}
