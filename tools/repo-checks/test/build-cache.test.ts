// `pnpm build` twice in a row: the second run is all cache hits (turbo restores dist/ and
// prebuilds/ instead of rebuilding).
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../../..');

function build() {
  const r = spawnSync('pnpm', ['exec', 'turbo', 'run', 'build', '--output-logs=none'], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' },
    timeout: 900_000,
  });
  expect(r.status, r.stdout + r.stderr).toBe(0);
  const m = /Cached:\s+(\d+) cached, (\d+) total/.exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  return { cached: Number(m![1]), total: Number(m![2]) };
}

it('a second build does no work (turbo cache hit for every task)', () => {
  build();
  const second = build();
  expect(second.total).toBeGreaterThan(0);
  expect(second.cached).toBe(second.total);
}, 900_000);
