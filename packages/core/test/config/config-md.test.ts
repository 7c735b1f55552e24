// packages/core/CONFIG.md is complete: every key of core's schema has a row (and every row a key),
// every row names a test that exists, and every section listed as not built is rejected by name.
// The zero_optimization rows are checked by packages/zero/test/config-md.test.ts against zero's schema.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { problemsOf } from '../helpers/config.js';
import { CORE_SECTIONS, loadConfig, schemaKeyPaths, UNBUILT_SECTIONS } from '../../src/config/index.js';
import { KNOWN_PLUGINS } from '../../src/plugin/catalogue.js';

const packages = join(import.meta.dirname, '../../..');
const doc = readFileSync(join(packages, 'core/CONFIG.md'), 'utf8');

interface Row {
  key: string;
  defaultValue: string;
  effect: string;
  test: string;
}

/** The table rows under the `## <heading>` of CONFIG.md. */
function rows(heading: string): Row[] {
  const part = doc.split(/^## /m).find((p) => p.startsWith(`${heading}\n`));
  if (!part) throw new Error(`CONFIG.md has no '## ${heading}' section`);
  return part
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => {
      const [key, defaultValue, effect, test] = l.slice(1, -1).split(' | ').map((c) => c.trim());
      return { key: key!.replace(/^`|`$/g, ''), defaultValue: defaultValue!, effect: effect!, test: test! };
    });
}

/** Each `path` › describe › test reference of a row: the file exists and holds every name. */
function missingTests(row: Row): string[] {
  if (row.test === 'TBD-lead') return [];
  const out: string[] = [];
  for (const ref of row.test.split(/; (?=`)/)) {
    const m = /^`([^`]+)` › (.+)$/.exec(ref);
    if (!m) {
      out.push(`${row.key}: unreadable test reference '${ref}'`);
      continue;
    }
    const file = join(packages, m[1]!);
    if (!existsSync(file)) {
      out.push(`${row.key}: ${m[1]} does not exist`);
      continue;
    }
    const text = readFileSync(file, 'utf8').replace(/\\'/g, "'");
    for (const name of m[2]!.split(' › ')) if (!text.includes(name)) out.push(`${row.key}: ${m[1]} has no test named '${name}'`);
  }
  return out;
}

describe('CONFIG.md', () => {
  it("lists every key of core's schema, and no key the schema lacks", () => {
    const schemaKeys = Object.entries(CORE_SECTIONS).flatMap(([k, v]) => schemaKeyPaths(v, k));
    const tableKeys = rows('Core keys').map((r) => r.key);
    expect(schemaKeys.filter((k) => !tableKeys.includes(k)), 'schema keys missing from CONFIG.md').toEqual([]);
    expect(tableKeys.filter((k) => !schemaKeys.includes(k)), 'CONFIG.md keys the schema does not have').toEqual([]);
    expect(new Set(tableKeys).size).toBe(tableKeys.length);
  });

  it('gives each core key a default, an effect and a test that exists', () => {
    const core = rows('Core keys');
    expect(core.filter((r) => !r.defaultValue || !r.effect || !r.test).map((r) => r.key)).toEqual([]);
    expect(core.flatMap(missingTests)).toEqual([]);
    expect(rows('Sections not built here').flatMap(missingTests)).toEqual([]);
  });

  it('lists every section of a package not built and every unbuilt DeepSpeed section', () => {
    const listed = rows('Sections not built here').map((r) => r.key);
    const expected = [...KNOWN_PLUGINS.flatMap((p) => p.sections).filter((s) => s !== 'zero_optimization'), ...UNBUILT_SECTIONS.map((s) => s.key)];
    expect(expected.filter((k) => !listed.includes(k))).toEqual([]);
    expect(listed.filter((k) => !expected.includes(k))).toEqual([]);
  });

  it('every section listed as not built is rejected by name when switched on, and accepted when off', () => {
    const on: Record<string, unknown> = { weight_quantization: {}, sparse_gradients: true, graph_harvesting: true, tensor_parallel: { autotp_size: 2 }, sequence_parallel_size: 2 };
    const off: Record<string, unknown> = { weight_quantization: null, sparse_gradients: false, graph_harvesting: false, tensor_parallel: { autotp_size: 1 }, sequence_parallel_size: 1 };
    const plugins = new Set(KNOWN_PLUGINS.flatMap((p) => p.sections));
    for (const { key } of rows('Sections not built here')) {
      const problems = problemsOf(() => loadConfig({ train_batch_size: 8, [key]: key in on ? on[key] : plugins.has(key) ? {} : { enabled: true } }));
      expect(problems.map((p) => p.path), key).toEqual([key]);
      expect(problems[0]!.message, key).toMatch(plugins.has(key) ? /needs @ds\// : /this TypeScript port has not built/);
      if (!plugins.has(key)) expect(loadConfig({ train_batch_size: 8, [key]: key in off ? off[key] : { enabled: false } }).warnings, key).toEqual([]);
    }
  });
});
