// The keys of an offload_optimizer / offload_param section a tier receives, each either acted on
// here or rejected by name (no key accepted without effect):
// - device, nvme_path: choose the tier and where the nvme tier keeps its file.
// - pin_memory: the cpu tier page-locks its host buffers (mlock), as DeepSpeed pins its host
//   buffers for DMA; for nvme the pinned buffers would be ZeRO's staging buffers, not built.
// - pipeline_read / pipeline_write: ZeRO always reads sub-group i+1 and writes i-1 while it steps i
//   (packages/zero/src/offload-state.ts), which is what `true` asks for; `false` gives the same numbers.
// - buffer_count, fast_init, ratio (optimizer) and buffer_size, max_in_cpu (param): their defaults
//   only; other values are rejected, naming what is not built.
import { DSConfigError, type ConfigProblem, type OffloadTierOptions } from '@ds/core';

const UNBUILT: Readonly<Record<OffloadTierOptions['kind'], Readonly<Record<string, [unknown, string]>>>> = {
  optimizer: {
    buffer_count: [4, 'ZeRO streams the sub-groups through two staging buffers; a deeper swap pipeline is not built'],
    fast_init: [false, 'fast NVMe initialisation of the optimizer state is not built (the state starts as zeros without a swap-in anyway)'],
    ratio: [1, 'partial optimizer offload (part of the state on the device, part in the tier) is not built'],
  },
  param: {
    buffer_count: [5, 'parameter offload buffers are not built yet'],
    buffer_size: [1e8, 'parameter offload buffers are not built yet'],
    max_in_cpu: [1e9, 'parameter offload buffers are not built yet'],
  },
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
