// Where NVIDIA's shared libraries (the CUDA runtime, cuBLAS/cuBLASLt, NCCL) may be on a machine,
// beyond the dynamic loader's own search (rpath, LD_LIBRARY_PATH as the process started with it, the
// ldconfig cache): a CUDA toolkit (CUDA_HOME/CUDA_PATH, /usr/local/cuda*), the system library
// directories, and the lib/ folders of Python's nvidia-* wheels (nvidia-cublas, nvidia-nccl-cu13,
// nvidia-cuda-runtime-cu12 ...) in a virtualenv, a conda env, the system and the user site-packages.
// One list for every package that dlopens them (@ds/tensor's cuda binary, @ds/comm-nccl) and for
// ds-report, so that what the report says is found is what the loaders try.
import { readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The environment variables the search reads. */
export interface NvidiaSearchEnv {
  LD_LIBRARY_PATH?: string;
  CUDA_HOME?: string;
  CUDA_PATH?: string;
  VIRTUAL_ENV?: string;
  CONDA_PREFIX?: string;
  HOME?: string;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Entries of `parent` starting with `prefix`, newest-looking first (cuda-13.0 before cuda-12.4). */
function children(parent: string, prefix: string): string[] {
  try {
    return readdirSync(parent)
      .filter((d) => d.startsWith(prefix))
      .sort()
      .reverse()
      .map((d) => join(parent, d));
  } catch {
    return [];
  }
}

/** Existing directories that may hold NVIDIA libraries, most specific first, without repeats. */
export function nvidiaLibraryDirs(env: NvidiaSearchEnv = process.env): string[] {
  const dirs: string[] = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  for (const home of [env.CUDA_HOME, env.CUDA_PATH]) if (home) dirs.push(join(home, 'lib64'), join(home, 'lib'));
  for (const cuda of children('/usr/local', 'cuda')) dirs.push(join(cuda, 'lib64'), join(cuda, 'lib'), join(cuda, 'targets', 'x86_64-linux', 'lib'));
  dirs.push('/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/local/lib');
  const roots = [env.VIRTUAL_ENV, env.CONDA_PREFIX].filter((p): p is string => !!p).map((p) => join(p, 'lib'));
  roots.push('/usr/lib', '/usr/local/lib', '/opt/conda/lib', join(env.HOME || homedir(), '.local', 'lib'));
  for (const root of roots) {
    for (const py of children(root, 'python3')) {
      for (const site of ['site-packages', 'dist-packages']) {
        // Each wheel keeps its libraries in nvidia/<name>/lib (CUDA 13's in nvidia/cu13/lib).
        for (const pkg of children(join(py, site, 'nvidia'), '')) dirs.push(join(pkg, 'lib'));
      }
    }
  }
  return [...new Set(dirs)].filter(isDir);
}
