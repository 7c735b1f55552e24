// What this machine offers the nccl backend, for ds-report and for the backend's own start-up: the
// NCCL and CUDA runtime found, their versions, the GPUs, and, when something is missing, one
// sentence saying what and how to fix it.
import { readNcclEnv, type NcclEnv } from './env.js';
import { libraryCandidates, NCCL_SONAME } from './native/search.js';
import { loadNcclAddon, type NativeProbe, type NcclAddon } from './native/load.js';

export interface NcclStatus {
  /** True when a GPU, its driver, a CUDA runtime and NCCL >= 2.14 were all found. */
  available: boolean;
  /** The libnccl file loaded (null when none). */
  library: string | null;
  /** NCCL's version, "2.27.3" (null when not loaded). */
  version: string | null;
  /** The CUDA runtime loaded and its version ("13.0"), the driver's CUDA version, the GPUs it sees. */
  cudaRuntime: string | null;
  cudaRuntimeVersion: string | null;
  driverVersion: string | null;
  devices: number;
  /** Why `nccl` cannot run here, in one sentence; null when available. */
  reason: string | null;
}

export interface StatusOptions {
  env?: NcclEnv;
  addon?: NcclAddon;
}

/** NCCL_VERSION_CODE as text: X*10000 + Y*100 + Z since 2.9, X*1000 + Y*100 + Z before. */
export function ncclVersionText(code: number): string {
  const major = code >= 10000 ? Math.floor(code / 10000) : Math.floor(code / 1000);
  const minor = code >= 10000 ? Math.floor(code / 100) % 100 : Math.floor(code / 100) % 10;
  return `${major}.${minor}.${code % 100}`;
}

/** CUDART_VERSION / cudaDriverGetVersion as text: 13000 -> "13.0". */
function cudaVersionText(code: number): string | null {
  return code > 0 ? `${Math.floor(code / 1000)}.${Math.floor((code % 1000) / 10)}` : null;
}

/** One sentence: everything that is missing, then how to fix each. */
export function unavailableReason(p: NativeProbe): string | null {
  if (p.usable) return null;
  const missing: string[] = [];
  const fixes: string[] = [];
  if (!p.cudart) {
    missing.push(`the CUDA runtime (libcudart.so.13, .12 or .11.0) could not be loaded (${p.cudartError})`);
    fixes.push('install the CUDA toolkit or `pip install nvidia-cuda-runtime-cu12`, or set LD_LIBRARY_PATH to the directory holding libcudart.so');
  } else if (p.driverError) {
    missing.push(`no usable NVIDIA GPU was found (${p.driverError})`);
    fixes.push('run on a machine with an NVIDIA GPU and its driver (nvidia-smi must list the GPU)');
  }
  if (!p.nccl && /needs NCCL 2\.14/.test(p.ncclError)) {
    missing.push(p.ncclError);
    fixes.push('install a newer NCCL (pip install -U nvidia-nccl-cu13, or nvidia-nccl-cu12 for CUDA 12)');
  } else if (!p.nccl) {
    missing.push(`${NCCL_SONAME} could not be loaded (${p.ncclError})`);
    fixes.push(`pip install nvidia-nccl-cu13 (nvidia-nccl-cu12 for CUDA 12) or set LD_LIBRARY_PATH to the directory holding ${NCCL_SONAME} (DS_NCCL_LIBRARY may name the file)`);
  }
  return `${missing.join(' and ')}; ${fixes.join(', and ')}`;
}

/** Probes (and loads, when everything is there) the CUDA runtime and NCCL; never throws. */
export function probeNccl(addon: NcclAddon, env: NcclEnv): NativeProbe {
  const candidates = libraryCandidates(env);
  return addon.probe(candidates.cudart, candidates.nccl);
}

/** For ds-report and diagnostics: what was found, and why `nccl` cannot run when it cannot. Never throws. */
export function ncclStatus(opts: StatusOptions = {}): NcclStatus {
  const none = { library: null, version: null, cudaRuntime: null, cudaRuntimeVersion: null, driverVersion: null, devices: 0 };
  let addon: NcclAddon;
  let env: NcclEnv;
  try {
    env = opts.env ?? readNcclEnv();
    addon = opts.addon ?? loadNcclAddon();
  } catch (err) {
    return { available: false, ...none, reason: (err as Error).message };
  }
  const p = probeNccl(addon, env);
  return {
    available: p.usable,
    library: p.nccl,
    version: p.nccl ? ncclVersionText(p.ncclVersion) : null,
    cudaRuntime: p.cudart,
    cudaRuntimeVersion: cudaVersionText(p.runtimeVersion),
    driverVersion: cudaVersionText(p.driverVersion),
    devices: p.devices,
    reason: unavailableReason(p),
  };
}
