// The committed bin/*.js files that package.json's bins point at: each loads the built
// dist/bin/<name>.js, which must still see itself as the program (isMainModule) and answer --help.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const pkgRoot = join(import.meta.dirname, '..', '..');
const bins = (JSON.parse(readFileSync(join(pkgRoot, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin;

describe('installed bins (bin/*.js loading dist/bin/*.js)', () => {
  it.each(Object.entries(bins))('%s --help prints its usage on stdout and exits 0', (name, target) => {
    const r = spawnSync(process.execPath, [join(pkgRoot, target), '--help'], { cwd: pkgRoot, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // ds_report is DeepSpeed's spelling of ds-report: the same file.
    expect(r.stdout).toMatch(new RegExp(`^usage: ${name.replace('_', '-')} `));
  });
});
