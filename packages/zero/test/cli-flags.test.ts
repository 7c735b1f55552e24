// Issue 22: ds-zero parses its flags with node:util parseArgs: `--x=y` and `--x y` mean the same, an
// unknown flag or a flag without its value is a usage error (exit 2) naming it, --help prints usage.
import { describe, expect, it } from 'vitest';

import { main } from '../src/cli.js';

describe('ds-zero flags', () => {
  it('estimate: --params=7.5B --nodes=8 and --params 7.5B --nodes 8 give the same report', () => {
    const spaced = main(['estimate', '--params', '7.5B', '--gpus-per-node', '8', '--nodes', '8', '--json']);
    const joined = main(['estimate', '--params=7.5B', '--gpus-per-node=8', '--json', '--nodes=8']);
    expect(spaced.code).toBe(0);
    expect(joined).toEqual(spaced);
    expect((JSON.parse(spaced.out) as { ranks: number }).ranks).toBe(64);
  });

  it('estimate: usage errors exit 2 and name the flag', () => {
    expect(main(['estimate', '--params=1B', '--frobnicate=3'])).toEqual({ code: 2, out: expect.stringMatching(/^ds-zero estimate: unknown argument '--frobnicate'/) });
    expect(main(['estimate', '--params'])).toEqual({ code: 2, out: expect.stringMatching(/^ds-zero estimate: --params needs a value/) });
    expect(main(['estimate', '--params=1B', 'extra'])).toEqual({ code: 2, out: expect.stringMatching(/^ds-zero estimate: unknown argument 'extra'/) });
    expect(main(['estimate', '--json=yes', '--params=1B'])).toEqual({ code: 2, out: expect.stringMatching(/^ds-zero estimate: Option '--json' does not take an argument/) });
  });

  it('to-fp32: --tag=T, --tag T and -t T are one option; a missing value is a usage error', () => {
    for (const tagArgs of [['--tag=global_step9'], ['--tag', 'global_step9'], ['-t', 'global_step9']]) {
      // The checkpoint directory does not exist: the tag is parsed, then the read fails (exit 1, not 2).
      const r = main(['to-fp32', '/nonexistent-ds-ckpt', 'out.safetensors', ...tagArgs]);
      expect(r.code, r.out).toBe(1);
    }
    expect(main(['to-fp32', 'a', 'b', '--tag'])).toEqual({ code: 2, out: expect.stringMatching(/^ds-zero to-fp32: --tag needs a value/) });
    expect(main(['to-fp32', 'a', 'b', '--tga=x'])).toEqual({ code: 2, out: expect.stringMatching(/^ds-zero to-fp32: unknown argument '--tga'/) });
  });

  it('--help on every command prints the usage and exits 0', () => {
    for (const args of [['--help'], ['-h'], ['estimate', '--help'], ['to-fp32', '-h']]) {
      expect(main(args)).toEqual({ code: 0, out: expect.stringMatching(/^usage: ds-zero estimate/) });
    }
  });
});
