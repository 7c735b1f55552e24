// `ds-config check`'s work as a library call: load and validate a config without throwing, and
// explain it (the batch triad, the plugins it needs and whether they are there, every problem).
import { isDSError } from '@ds/tensor';

import { DSConfigError, type ConfigProblem } from '../errors.js';
import type { Registry } from '../plugin/registry.js';
import { formatProblems, show } from './problems.js';
import { readConfigInput, type ConfigInput, type ConfigSource } from './read.js';
import { missingPluginMessage, type PluginNeed } from './requirements.js';
import { analyseConfig } from './validate.js';
import type { ResolvedBatch } from './batch.js';

export interface CheckOptions {
  worldSize?: number;
  strict?: boolean;
  /** Plugins found installed, already registered. */
  registry?: Registry;
  /** Packages that resolve from here, whether or not they could be registered. */
  installed?: ReadonlySet<string>;
}

export interface PluginStatus extends PluginNeed {
  installed: boolean;
}

export interface CheckReport {
  ok: boolean;
  source?: ConfigSource;
  problems: ConfigProblem[];
  warnings: ConfigProblem[];
  batch?: ResolvedBatch;
  plugins: PluginStatus[];
  worldSize: number;
}

export function checkConfig(input: ConfigInput, options: CheckOptions = {}): CheckReport {
  const worldSize = options.worldSize ?? 1;
  const empty = { warnings: [], plugins: [], worldSize };
  let source: ConfigSource | undefined;
  try {
    const read = readConfigInput(input);
    source = read.source;
    const analysis = analyseConfig(read.raw, { ...options, worldSize });
    const plugins = analysis.plugins.map((p) => ({ ...p, installed: p.registered || (options.installed?.has(p.package) ?? false) }));
    const problems = analysis.problems.map((p) => {
      const need = plugins.find((n) => n.path === p.path && !n.registered);
      return need?.installed ? { ...p, message: `${p.message} (${need.package} is installed but exports no usable ${need.factory}() plugin factory)` } : p;
    });
    return { ok: problems.length === 0, source, problems, warnings: analysis.warnings, plugins, worldSize, ...(analysis.batch ? { batch: analysis.batch } : {}) };
  } catch (err) {
    if (err instanceof DSConfigError) return { ok: false, ...(source ? { source } : {}), problems: [...err.problems], ...empty };
    // Anything else is a bug in the checker, but the command still answers instead of crashing.
    const message = isDSError(err) || err instanceof Error ? err.message : String(err);
    return { ok: false, ...(source ? { source } : {}), problems: [{ path: '', message: `internal error while checking: ${message}` }], ...empty };
  }
}

export function formatCheckReport(report: CheckReport, label: string): string {
  const lines: string[] = [];
  lines.push(`${label}: ${report.ok ? 'valid' : `${report.problems.length} problem${report.problems.length === 1 ? '' : 's'}`}`);
  if (report.batch) {
    const b = report.batch;
    const inferred = b.inferred.length > 0 ? ` (inferred: ${b.inferred.join(', ')})` : '';
    lines.push(
      `batch: train_batch_size ${b.trainBatchSize} = micro ${b.trainMicroBatchSizePerGpu} x gradient_accumulation_steps ${b.gradientAccumulationSteps} x world size ${b.worldSize}${inferred}`,
    );
  }
  if (report.plugins.length === 0) lines.push('plugins: none needed');
  for (const p of report.plugins) {
    const state = p.registered ? 'installed, schema checked' : p.installed ? 'installed, not loadable' : 'NOT installed';
    lines.push(`plugin: ${p.package} for ${p.path} = ${show(p.value)}: ${state}${p.registered || p.installed ? '' : ` -- ${missingPluginMessage(p)}`}`);
  }
  if (report.warnings.length > 0) lines.push('warnings:', formatProblems(report.warnings));
  if (report.problems.length > 0) lines.push('problems:', formatProblems(report.problems));
  return lines.join('\n');
}
