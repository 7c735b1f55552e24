// Finds the pnpm this repository pins (root package.json "packageManager") as a file node can run,
// so that tests can run it with a PATH that holds node alone. Under `pnpm test` npm_execpath names
// it; otherwise a pnpm on PATH of the same version; otherwise the copy `npx -y pnpm@<version>` keeps
// (corepack is not used: it is broken on some machines).
import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';

function versionOf(pnpmJs: string): string | null {
  try {
    return execFileSync(process.execPath, [pnpmJs, '--version'], { encoding: 'utf8', timeout: 60_000 }).trim();
  } catch {
    return null;
  }
}

function onPath(command: string, env: NodeJS.ProcessEnv = process.env): string | null {
  try {
    const found = execFileSync('bash', ['-c', `command -v ${command}`], { encoding: 'utf8', env, timeout: 120_000 }).trim();
    return found ? realpathSync(found) : null;
  } catch {
    return null;
  }
}

/** The pnpm script to run with `node <path> ...`; throws naming what was tried when none is found. */
export function findPnpm(root: string): string {
  const pinned = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { packageManager?: string }).packageManager ?? '';
  const version = /^pnpm@(\d[^+]*)/.exec(pinned)?.[1];
  if (!version) throw new Error(`${join(root, 'package.json')}: "packageManager" does not pin pnpm (found '${pinned}')`);
  const tried: string[] = [];
  const candidates = [
    () => (basename(process.env.npm_execpath ?? '').startsWith('pnpm') ? process.env.npm_execpath! : null),
    () => onPath('pnpm'),
    () => {
      try {
        const bin = execFileSync('npx', ['-y', '-p', `pnpm@${version}`, '-c', 'command -v pnpm'], { encoding: 'utf8', timeout: 180_000 }).trim();
        return bin ? realpathSync(bin) : null;
      } catch {
        return null;
      }
    },
  ];
  for (const candidate of candidates) {
    const path = candidate();
    if (!path) continue;
    const got = versionOf(path);
    if (got === version) return path;
    tried.push(`${path} (${got ?? 'does not run'})`);
  }
  throw new Error(`pnpm ${version} not found (tried npm_execpath, PATH and npx -y pnpm@${version}: ${tried.join(', ') || 'nothing found'}); install it or run the tests through \`npx -y pnpm@${version} test\``);
}
