import { describe, expect, it } from 'vitest';
import { parseDsArgs, shellSplit } from '../src/args.js';
import {
  buildAgentArgv, buildOpenMpiCommand, buildPdshCommand, buildRemoteShellCommand, buildSlurmCommand,
  buildSshCheckCommand, buildSshCommand, collectExports, parseDsEnvFile, rankFromSchedulerEnv, sshOptions,
} from '../src/multinode.js';
import { parseAgentArgs } from '../src/agent.js';

const active = new Map([['w0', [0, 1]], ['w1', [0, 1]]]);
const args = (extra: string[] = []) => parseDsArgs([...extra, 'train.ts', '--deepspeed', 'c.json']);

describe('agent command', () => {
  it('carries the world and the flags, and the agent reads it back', () => {
    const argv = buildAgentArgv({
      agent: ['/n/node', '/pkg/dist/bin/agent.js'], worldInfo: 'abc', nodeRank: 1, masterAddr: '10.0.0.1', masterPort: 29500,
      runId: 'r1', graceMs: 5000, watchStdin: true, args: args(['--no_local_rank', '--enable_each_rank_log', 'logs', '--bind_core_list', '0-3']),
    });
    expect(argv).toEqual([
      '/n/node', '/pkg/dist/bin/agent.js', '--world_info=abc', '--node_rank=1', '--master_addr=10.0.0.1', '--master_port=29500',
      '--run_id=r1', '--grace_ms=5000', '--watch_stdin', '--no_local_rank', '--enable_each_rank_log=logs', '--bind_core_list=0-3',
      '--', 'train.ts', '--deepspeed', 'c.json',
    ]);
    expect(parseAgentArgs(argv.slice(2))).toMatchObject({
      worldInfo: 'abc', nodeRank: 1, masterAddr: '10.0.0.1', masterPort: 29500, runId: 'r1', graceMs: 5000, watchStdin: true,
      noLocalRank: true, enableEachRankLog: 'logs', bindCoreList: '0-3', script: 'train.ts', userArgs: ['--deepspeed', 'c.json'],
    });
    expect(() => parseAgentArgs(['--bogus', '--', 's'])).toThrow(/unknown argument '--bogus'/);
    expect(() => parseAgentArgs(['--node_rank=0'])).toThrow(/expected `-- <script>/);
  });
});

describe('ssh', () => {
  it('builds the check, and one ssh per node running cd + exports + exec agent', () => {
    const a = args(['--launcher_args', '-o StrictHostKeyChecking=no -i /k/id', '--ssh_port', '2222']);
    const opts = sshOptions(a);
    expect(opts).toEqual(['-o', 'StrictHostKeyChecking=no', '-i', '/k/id', '-p', '2222']);
    expect(buildSshCheckCommand('w0', opts)).toEqual(['ssh', '-o', 'PasswordAuthentication=no', ...opts, 'w0', 'hostname']);
    const remote = buildRemoteShellCommand('/my dir', new Map([['NCCL_DEBUG', 'INFO'], ['DS_X', "it's"]]), ['/n/node', 'agent.js', '--', 'a b']);
    expect(remote).toBe(`cd '/my dir' && export NCCL_DEBUG=INFO && export DS_X='it'\\''s' && exec /n/node agent.js -- 'a b'`);
    expect(buildSshCommand('w1', opts, remote)).toEqual(['ssh', ...opts, 'w1', remote]);
    // What the remote shell will see, word by word:
    expect(shellSplit(remote.split(' && ').at(-1)!)).toEqual(['exec', '/n/node', 'agent.js', '--', 'a b']);
  });
});

describe('pdsh', () => {
  it('builds pdsh with %n for the node rank, its env, and a kill command for the run', () => {
    const a = args(['--launcher', 'pdsh', '--launcher_args', '-R ssh', '--ssh_port', '2200']);
    const remote = buildRemoteShellCommand('/w', new Map(), ['node', 'agent.js', '--node_rank=%n', '--', 'train.ts']);
    expect(remote).toContain('--node_rank=%n');
    const p = buildPdshCommand(['w0', 'w1'], a, remote, 'run7', {});
    expect(p.argv).toEqual(['pdsh', '-S', '-f', '1024', '-w', 'w0,w1', '-R', 'ssh', remote]);
    expect(p.env).toEqual({ PDSH_RCMD_TYPE: 'ssh', PDSH_SSH_ARGS_APPEND: '-p 2200' });
    expect(p.killArgv).toEqual(['pdsh', '-S', '-f', '1024', '-w', 'w0,w1', '-R', 'ssh', 'pkill -TERM -f -- --run_id=run7']);
  });
});

describe('openmpi', () => {
  const agent = ['node', 'agent.js', '--from_scheduler_env', '--', 'train.ts'];
  it('builds mpirun over the hostfile with -x exports and the agent in scheduler mode', () => {
    const cmd = buildOpenMpiCommand(active, args(['-H', 'hf', '--launcher', 'openmpi']), new Map([['NCCL_DEBUG', 'INFO']]), agent);
    expect(cmd).toEqual([
      'mpirun', '-n', '4', '-hostfile', 'hf', '--mca', 'btl', '^openib', '--mca', 'btl_tcp_if_include', 'eth0',
      '-x', 'UCX_TLS=tcp', '-x', 'NCCL_DEBUG=INFO', ...agent,
    ]);
    const own = buildOpenMpiCommand(active, args(['--launcher_args', '--mca btl_tcp_if_include ib0']), new Map(), agent);
    expect(own.join(' ')).not.toContain('eth0');
    expect(own.join(' ')).toContain('btl_tcp_if_include ib0');
  });

  it('rejects include/exclude/num_nodes/num_gpus', () => {
    expect(() => buildOpenMpiCommand(active, args(['-i', 'w0']), new Map(), agent)).toThrow(/openmpi does not support --include\/--exclude/);
    expect(() => buildOpenMpiCommand(active, args(['--num_gpus', '1']), new Map(), agent)).toThrow(/does not support --num_nodes\/--num_gpus/);
  });
});

describe('slurm', () => {
  const agent = ['node', 'agent.js', '--from_scheduler_env', '--', 'train.ts'];
  it('builds srun over the active hosts with --export=ALL,...', () => {
    const cmd = buildSlurmCommand(active, args(['--launcher_args', '--partition=gpu']), new Map([['NCCL_DEBUG', 'INFO']]), agent);
    expect(cmd).toEqual([
      'srun', '-n', '4', '--nodes=2', '--ntasks-per-node=2', '--nodelist=w0,w1', '--kill-on-bad-exit=1',
      '--partition=gpu', '--export=ALL,NCCL_DEBUG=INFO', ...agent,
    ]);
  });

  it('rejects uneven nodes and exports srun cannot carry', () => {
    expect(() => buildSlurmCommand(new Map([['a', [0]], ['b', [0, 1]]]), args(), new Map(), agent)).toThrow(/same number of ranks on every node; got a:1, b:2/);
    expect(() => buildSlurmCommand(active, args(), new Map([['X', 'a,b']]), agent)).toThrow(/contains ','/);
  });

  it('the agent finds its rank from Slurm or Open MPI variables', () => {
    expect(rankFromSchedulerEnv({ SLURM_PROCID: '3', SLURM_NTASKS: '4', SLURM_LOCALID: '1', SLURM_NODEID: '1', SLURM_NNODES: '2', SLURM_TASKS_PER_NODE: '2(x2)' }))
      .toEqual({ rank: 3, worldSize: 4, localRank: 1, localSize: 2, nodeRank: 1, nnodes: 2 });
    expect(rankFromSchedulerEnv({ OMPI_COMM_WORLD_RANK: '2', OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_LOCAL_RANK: '0', OMPI_COMM_WORLD_LOCAL_SIZE: '2', OMPI_COMM_WORLD_NODE_RANK: '0' }))
      .toEqual({ rank: 2, worldSize: 4, localRank: 0, localSize: 2, nodeRank: 1, nnodes: 2 });
    expect(rankFromSchedulerEnv({})).toBeNull();
  });
});

describe('exports and .deepspeed_env', () => {
  it('exports DeepSpeed\'s prefixes plus ours, then env files in order', () => {
    const env = { NCCL_DEBUG: 'INFO', UCX_TLS: 'rc', DS_ACCELERATOR: 'cpu', HOME: '/root', PATH: '/bin', NODE_OPTIONS: '--max-old-space-size=4096' };
    const files = [parseDsEnvFile('# comment\nNCCL_DEBUG=WARN\n\nFOO = a=b \n', 'home/.deepspeed_env'), parseDsEnvFile('BAR=1', './.deepspeed_env')];
    expect([...collectExports(env, files)]).toEqual([
      ['NCCL_DEBUG', 'WARN'], ['UCX_TLS', 'rc'], ['DS_ACCELERATOR', 'cpu'], ['NODE_OPTIONS', '--max-old-space-size=4096'], ['FOO', 'a=b'], ['BAR', '1'],
    ]);
  });

  it('rejects a line that is not KEY=VALUE, naming file and line', () => {
    expect(() => parseDsEnvFile('A=1\nnot a pair\n', '/h/.deepspeed_env')).toThrow(/\/h\/.deepspeed_env line 2: 'not a pair' is not KEY=VALUE/);
  });
});
