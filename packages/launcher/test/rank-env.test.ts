import { describe, expect, it } from 'vitest';
import { planNodeRanks, rankLogPath } from '../src/node-plan.js';
import { bindPrefix, buildRankCommand, coresForRank, parseCoreList, threadsPerRank } from '../src/rank-env.js';

const script = { kind: 'node' as const, path: '/w/train.js' };
const base = {
  masterAddr: '10.1.1.1', masterPort: 29500, script, userArgs: ['--deepspeed', 'c.json'], noLocalRank: false,
  gpus: false, cores: 8, bind: { enabled: false, physicalCores: 8, tool: 'taskset' as const },
  nodePath: '/usr/bin/node', tsLoader: 'file:///tsx/loader.mjs', preload: [],
};

describe('per-rank environment', () => {
  for (const n of [1, 2, 3, 4]) {
    it(`${n} local rank(s): RANK, LOCAL_RANK, sizes, master, threads = cores / ranks`, () => {
      const launches = planNodeRanks({ ...base, active: new Map([['localhost', Array.from({ length: n }, (_, i) => i)]]), nodeRank: 0, baseEnv: { PATH: '/bin' } });
      expect(launches).toHaveLength(n);
      launches.forEach((l, i) => {
        expect(l.env).toMatchObject({
          PATH: '/bin', RANK: String(i), LOCAL_RANK: String(i), WORLD_SIZE: String(n), LOCAL_SIZE: String(n),
          CROSS_RANK: '0', CROSS_SIZE: '1', MASTER_ADDR: '10.1.1.1', MASTER_PORT: '29500',
          DS_NUM_THREADS: String(Math.floor(8 / n)), OMP_NUM_THREADS: String(Math.floor(8 / n)),
        });
        expect(l.env.CUDA_VISIBLE_DEVICES).toBeUndefined();
        expect(l.argv).toEqual(['/usr/bin/node', '/w/train.js', `--local_rank=${i}`, '--deepspeed', 'c.json']);
      });
    });
  }

  it('second node of two: global ranks continue, CROSS_RANK is the node, GPUs list all local slots', () => {
    const active = new Map([['a', [0, 1]], ['b', [1, 3]]]);
    const launches = planNodeRanks({ ...base, gpus: true, active, nodeRank: 1, baseEnv: {} });
    expect(launches.map((l) => [l.env.RANK, l.env.LOCAL_RANK, l.env.CROSS_RANK, l.env.CROSS_SIZE, l.env.WORLD_SIZE, l.env.CUDA_VISIBLE_DEVICES])).toEqual([
      ['2', '0', '1', '2', '4', '1,3'], ['3', '1', '1', '2', '4', '1,3'],
    ]);
    expect(() => planNodeRanks({ ...base, active, nodeRank: 2, baseEnv: {} })).toThrow(/node rank 2 is outside the world of 2/);
  });

  it('the user\'s DS_NUM_THREADS / OMP_NUM_THREADS win', () => {
    expect(threadsPerRank({ OMP_NUM_THREADS: '3' }, 8, 2)).toBeNull();
    expect(threadsPerRank({ DS_NUM_THREADS: '5' }, 8, 2)).toBeNull();
    expect(threadsPerRank({}, 2, 4)).toBe(1);
    const [l] = planNodeRanks({ ...base, active: new Map([['localhost', [0]]]), nodeRank: 0, baseEnv: { OMP_NUM_THREADS: '3' } });
    expect(l!.env.OMP_NUM_THREADS).toBe('3');
    expect(l!.env.DS_NUM_THREADS).toBeUndefined();
  });

  it('--bind_cores_to_rank pins equal shares and sets threads to the share', () => {
    const launches = planNodeRanks({
      ...base, active: new Map([['localhost', [0, 1]]]), nodeRank: 0, baseEnv: {},
      bind: { enabled: true, coreList: '0-1,4-5', physicalCores: 8, tool: 'numactl' },
    });
    expect(launches.map((l) => l.argv.slice(0, 4))).toEqual([['numactl', '-C', '0,1', '/usr/bin/node'], ['numactl', '-C', '4,5', '/usr/bin/node']]);
    expect(launches.map((l) => l.env.OMP_NUM_THREADS)).toEqual(['2', '2']);
    expect(() => planNodeRanks({ ...base, active: new Map([['localhost', [0, 1]]]), nodeRank: 0, baseEnv: { KMP_AFFINITY: 'x' }, bind: { ...base.bind, enabled: true } })).toThrow(/KMP_AFFINITY/);
  });
});

describe('core lists', () => {
  it('parses and shares out core lists, with DeepSpeed\'s errors', () => {
    expect(parseCoreList('0,2-4,7')).toEqual([0, 2, 3, 4, 7]);
    expect(() => parseCoreList('3-1')).toThrow(/ends before it starts/);
    expect(() => parseCoreList('0-3,2')).toThrow(/ascending and must not overlap/);
    expect(() => parseCoreList('a')).toThrow(/neither a core number nor a range/);
    expect(coresForRank([0, 1, 2, 3, 4], 2, 1)).toEqual([2, 3]);
    expect(() => coresForRank([0], 2, 0)).toThrow(/cannot give each of 2 local ranks at least one/);
    expect(bindPrefix('taskset', [4, 5])).toEqual(['taskset', '-c', '4,5']);
  });
});

describe('buildRankCommand', () => {
  const o = { userArgs: ['x'], localRank: 1, noLocalRank: false, nodePath: 'node', tsLoader: 'file:///l.mjs', preload: ['data:w'], bindPrefix: [] };
  it('runs .ts through the loader, .js with node, executables directly', () => {
    expect(buildRankCommand({ ...o, script: { kind: 'ts', path: 't.ts' } })).toEqual(['node', '--import', 'data:w', '--import', 'file:///l.mjs', 't.ts', '--local_rank=1', 'x']);
    expect(buildRankCommand({ ...o, script: { kind: 'node', path: 't.mjs' }, noLocalRank: true })).toEqual(['node', '--import', 'data:w', 't.mjs', 'x']);
    expect(buildRankCommand({ ...o, script: { kind: 'exec', path: '/bin/app' } })).toEqual(['/bin/app', '--local_rank=1', 'x']);
  });

  it('names per-rank logs like launch.py', () => {
    expect(rankLogPath('logs/', new Date(2026, 0, 2, 3, 4, 5), 7)).toBe('logs/20260102030405_rank7.log');
  });
});
