// packages/core/CONFIG.md lists every key of the zero_optimization schema (and no key it lacks), each
// with a default, an effect and a test that exists. Core's own keys are checked by core's test.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { schemaKeyPaths } from '@ds/core';

import { zeroOptimizationSchema } from '../src/config.js';

const packages = join(import.meta.dirname, '../..');
const doc = readFileSync(join(packages, 'core/CONFIG.md'), 'utf8');

/** [key, default, effect, test] of each row under `## zero_optimization (@ds/zero)`. */
function zeroRows(): string[][] {
  const part = doc.split(/^## /m).find((p) => p.startsWith('zero_optimization (@ds/zero)\n'));
  if (!part) throw new Error("CONFIG.md has no '## zero_optimization (@ds/zero)' section");
  return part
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => l.slice(1, -1).split(' | ').map((c, i) => (i === 0 ? c.trim().replace(/^`|`$/g, '') : c.trim())));
}

describe('CONFIG.md', () => {
  it('lists every key of the zero_optimization schema, and no key the schema lacks', () => {
    const schemaKeys = schemaKeyPaths(zeroOptimizationSchema, 'zero_optimization');
    const tableKeys = zeroRows().map((r) => r[0]!);
    expect(schemaKeys.filter((k) => !tableKeys.includes(k)), 'schema keys missing from CONFIG.md').toEqual([]);
    expect(tableKeys.filter((k) => !schemaKeys.includes(k)), 'CONFIG.md keys the schema does not have').toEqual([]);
  });

  it('gives each key a default, an effect and a test that exists', () => {
    const missing: string[] = [];
    for (const [key, defaultValue, effect, test] of zeroRows()) {
      if (!defaultValue || !effect || !test) missing.push(`${key}: empty cell`);
      if (!test || test === 'TBD-lead') continue;
      for (const ref of test.split(/; (?=`)/)) {
        const m = /^`([^`]+)` › (.+)$/.exec(ref);
        const file = m ? join(packages, m[1]!) : '';
        if (!m || !existsSync(file)) {
          missing.push(`${key}: no test file in '${ref}'`);
          continue;
        }
        const text = readFileSync(file, 'utf8').replace(/\\'/g, "'");
        for (const name of m[2]!.split(' › ')) if (!text.includes(name)) missing.push(`${key}: ${m[1]} has no test named '${name}'`);
      }
    }
    expect(missing).toEqual([]);
  });
});
