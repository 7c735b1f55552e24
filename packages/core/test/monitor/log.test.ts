// DS_LOG_LEVEL: the engine's and the plugins' log lines pass through one leveled log; debug lines
// are hidden by default, error hides warnings, a bad value is a typed error naming the variable.
import { describe, expect, it } from 'vitest';

import { TINY_GPT } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { Engine } from '../../src/engine/engine.js';
import { initialize } from '../../src/engine/initialize.js';
import { readCoreEnv } from '../../src/env.js';
import { DSConfigError } from '../../src/errors.js';
import { createLog, logLevelEnabled } from '../../src/monitor/log.js';
import type { Plugin } from '../../src/plugin/types.js';

describe('createLog', () => {
  it('drops lines below the threshold and prefixes warn, error and debug lines', () => {
    const lines: string[] = [];
    const log = createLog((l) => lines.push(l), 'info');
    log('plain');
    log('detail', 'debug');
    log('careful', 'warn');
    log('broken', 'error');
    expect(lines).toEqual(['plain', 'warning: careful', 'error: broken']);
    expect(logLevelEnabled('debug', 'debug')).toBe(true);
    expect(logLevelEnabled('warn', 'error')).toBe(false);
  });
});

describe('DS_LOG_LEVEL', () => {
  it('is read in env.ts: default info, case-insensitive, warning as warn; anything else names the variable', () => {
    expect(readCoreEnv({}).logLevel).toBe('info');
    expect(readCoreEnv({ DS_LOG_LEVEL: 'DEBUG' }).logLevel).toBe('debug');
    expect(readCoreEnv({ DS_LOG_LEVEL: 'warning' }).logLevel).toBe('warn');
    expect(() => readCoreEnv({ DS_LOG_LEVEL: 'verbose' })).toThrow(DSConfigError);
    expect(() => readCoreEnv({ DS_LOG_LEVEL: 'verbose' })).toThrow("DS_LOG_LEVEL='verbose' must be one of debug, info, warn, error; fix it or unset it for info");
  });

  /** A plugin whose engine contribution logs at each level through its PluginContext. */
  const chatty: Plugin = {
    name: 'chatty',
    package: '@ds/test-chatty',
    contributes: {
      engines: {
        chatty: {
          appliesTo: () => true,
          create: ({ parts }, ctx) => {
            for (const level of ['debug', 'info', 'warn'] as const) ctx.log(level, `plugin ${level} line`);
            return new Engine(parts);
          },
        },
      },
    },
  };

  async function linesAt(level: string | undefined): Promise<string[]> {
    const lines: string[] = [];
    const config = { train_micro_batch_size_per_gpu: 2, optimizer: { type: 'AdamW', params: { lr: 1e-3 } }, unknown_key_here: 1 };
    const { engine } = await initialize({ model: new GPT(TINY_GPT), config, dist: null, plugins: [chatty], log: (m) => lines.push(m), env: level === undefined ? {} : { DS_LOG_LEVEL: level } });
    engine.destroy();
    return lines;
  }

  it("filters the engine's and the plugins' lines: debug hidden by default, shown at debug, warnings hidden at error", async () => {
    const byDefault = await linesAt(undefined);
    expect(byDefault).toContain('plugin info line');
    expect(byDefault).toContain('warning: plugin warn line');
    expect(byDefault.some((l) => l.startsWith('warning: ds_config: unknown_key_here'))).toBe(true);
    expect(byDefault.filter((l) => l.startsWith('debug: '))).toEqual([]);

    const debug = await linesAt('debug');
    expect(debug).toContain('debug: plugin debug line');
    expect(debug.some((l) => /^debug: initialize: .* device cpu, f32 parameters, stage 0 data parallelism, AdamW optimizer, micro batch 2 x 1 accumulation step\(s\) = train batch 2$/.test(l))).toBe(true);

    expect(await linesAt('error')).toEqual([]);
    expect(await linesAt('warn')).toEqual(byDefault.filter((l) => l.startsWith('warning: ')));
  });
});
