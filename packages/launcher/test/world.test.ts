import { describe, expect, it } from 'vitest';
import { parseDsArgs } from '../src/args.js';
import { parseHostfile } from '../src/hostfile.js';
import { planWorld, rankTable } from '../src/world.js';

const plan = (argv: string[], o: { hostfile?: string; env?: Record<string, string>; gpus?: number; cpuRanks?: number } = {}) =>
  planWorld({
    args: parseDsArgs([...argv, 'train.js']),
    pool: o.hostfile === undefined ? null : parseHostfile(o.hostfile),
    env: o.env ?? {},
    localGpuCount: o.gpus ?? 0,
    defaultCpuRanks: o.cpuRanks ?? 1,
  });
const HF = 'w0 slots=2\nw1 slots=2\nw2 slots=2\n';

describe('planWorld', () => {
  it('without a hostfile: local, master 127.0.0.1, one slot per GPU or the default cpu ranks', () => {
    expect(plan([], { gpus: 4 })).toMatchObject({ masterAddr: '127.0.0.1', multiNode: false, fromHostfile: false });
    expect([...plan([], { gpus: 4 }).active]).toEqual([['localhost', [0, 1, 2, 3]]]);
    expect([...plan([], { cpuRanks: 2 }).active]).toEqual([['localhost', [0, 1]]]);
  });

  it('--num_gpus is the number of cpu ranks on a host without GPUs', () => {
    expect([...plan(['--num_gpus', '3']).active]).toEqual([['localhost', [0, 1, 2]]]);
    expect(() => plan(['--num_gpus', '8'], { gpus: 2 })).toThrow(/--num_gpus 8 but this host has 2 GPU\(s\)/);
    expect(() => plan(['--num_gpus', '0'])).toThrow(/would start no rank/);
  });

  it('with a hostfile: multi-node when more than one host, or forced', () => {
    expect(plan([], { hostfile: HF })).toMatchObject({ multiNode: true, masterAddr: '' });
    expect(plan(['-i', 'w1'], { hostfile: HF }).multiNode).toBe(false);
    expect(plan(['-i', 'w1', '--force_multi'], { hostfile: HF }).multiNode).toBe(true);
  });

  it('--num_nodes keeps the first N hosts; --num_gpus sets every host to 0..N-1', () => {
    expect([...plan(['--num_nodes', '2', '--num_gpus', '1'], { hostfile: HF }).active]).toEqual([['w0', [0]], ['w1', [0]]]);
  });

  it('rejects num_nodes/num_gpus with include/exclude, and num_nodes > 1 without a hostfile', () => {
    expect(() => plan(['--num_gpus', '1', '-i', 'w0'], { hostfile: HF })).toThrow(/Cannot combine --num_nodes\/--num_gpus with --include\/--exclude/);
    expect(() => plan(['--num_nodes', '1', '-e', 'w0'], { hostfile: HF })).toThrow(/Cannot combine/);
    expect(() => plan(['--num_nodes', '2'])).toThrow(/--num_nodes 2 but there is no hostfile/);
  });

  it('CUDA_VISIBLE_DEVICES becomes --include localhost:<ids> when nothing else picks GPUs', () => {
    const p = plan([], { gpus: 4, env: { CUDA_VISIBLE_DEVICES: '1,3' } });
    expect([...p.active]).toEqual([['localhost', [1, 3]]]);
    expect(p.dropEnv).toEqual(['CUDA_VISIBLE_DEVICES']);
    expect(p.notes[0]).toMatch(/setting --include=localhost:1,3/);
    const q = plan(['--num_gpus', '2'], { gpus: 4, env: { CUDA_VISIBLE_DEVICES: '1,3' } });
    expect([...q.active]).toEqual([['localhost', [0, 1]]]);
    expect(q.notes[0]).toMatch(/but ignoring it/);
  });

  it('--no_ssh needs a valid --node_rank and is never multi-node', () => {
    expect(() => plan(['--no_ssh'], { hostfile: HF })).toThrow(/--no_ssh .* needs --node_rank in 0..2; got -1/);
    expect(plan(['--no_ssh', '--node_rank', '1'], { hostfile: HF }).multiNode).toBe(false);
  });

  it('an exclude that removes everything is an error', () => {
    expect(() => plan(['-e', 'w0@w1@w2'], { hostfile: HF })).toThrow(/No resources left/);
  });
});

describe('rankTable', () => {
  it('numbers ranks in host order, slot order within a host', () => {
    const t = rankTable(new Map([['a', [0, 2]], ['b', [1, 3, 5]]]));
    expect(t.map((r) => [r.rank, r.host, r.slot, r.localRank, r.nodeRank])).toEqual([
      [0, 'a', 0, 0, 0], [1, 'a', 2, 1, 0], [2, 'b', 1, 0, 1], [3, 'b', 3, 1, 1], [4, 'b', 5, 2, 1],
    ]);
    expect(t.every((r) => r.worldSize === 5 && r.nnodes === 2)).toBe(true);
    expect(t.map((r) => r.localSize)).toEqual([2, 2, 3, 3, 3]);
  });
});
