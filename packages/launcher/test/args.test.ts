import { describe, expect, it } from 'vitest';
import { parseAgentArgs } from '../src/agent.js';
import { DEEPSPEED_TERM_GRACE_S, parseDsArgs, shellQuote, shellSplit, usage } from '../src/args.js';

describe('parseDsArgs', () => {
  it('has DeepSpeed defaults and passes the script and its args through untouched', () => {
    const a = parseDsArgs(['train.ts', '--deepspeed', 'ds_config.json', '-H', 'x']);
    expect(a).toMatchObject({
      hostfile: '/job/hostfile', include: '', exclude: '', numNodes: -1, numGpus: -1, masterAddr: '',
      masterPort: 29500, launcher: 'ssh', forceMulti: false, noLocalRank: false,
      userScript: 'train.ts', userArgs: ['--deepspeed', 'ds_config.json', '-H', 'x'],
    });
  });

  it('reads every flag, in both --flag value and --flag=value forms', () => {
    const a = parseDsArgs([
      '-H', 'hf', '-i', 'h1:0,1@h2', '--num_accelerators=2', '--master_addr', '10.0.0.1', '--master_port=1234',
      '--launcher', 'PDSH', '--launcher_args', '-R ssh', '--force_multi', '--no_local_rank', '--enable_each_rank_log', 'logs',
      '--bind_cores_to_rank', '--bind_core_list=0-3', '--save_pid', '--ssh_port', '2222', '--no_ssh_check', '--term_grace_s', '0.5',
      'train.js', 'a',
    ]);
    expect(a).toMatchObject({
      hostfile: 'hf', include: 'h1:0,1@h2', numGpus: 2, masterAddr: '10.0.0.1', masterPort: 1234, launcher: 'pdsh',
      launcherArgs: '-R ssh', forceMulti: true, noLocalRank: true, enableEachRankLog: 'logs', bindCoresToRank: true,
      bindCoreList: '0-3', savePid: true, sshPort: 2222, noSshCheck: true, termGraceS: 0.5, userScript: 'train.js', userArgs: ['a'],
    });
    expect(parseDsArgs(['-e', 'h1:0', '--num_nodes', '2', '--num_gpus', '3', 's.js'])).toMatchObject({ exclude: 'h1:0', numNodes: 2, numGpus: 3 });
    expect(parseDsArgs(['--', '--weird-name.js'])).toMatchObject({ userScript: '--weird-name.js', userArgs: [] });
  });

  it("waits DeepSpeed's 30 s between SIGTERM and SIGKILL by default, in ds, in each node's agent and in launch()", () => {
    // deepspeed/launcher/launch.py: terminate_process_tree() waits psutil.wait_procs(timeout=30), no flag or env var.
    expect(DEEPSPEED_TERM_GRACE_S).toBe(30);
    expect(parseDsArgs(['s.js']).termGraceS).toBe(30);
    expect(parseAgentArgs(['--world_info=e30=', '--node_rank=0', '--', 's.js']).graceMs).toBe(30_000);
    expect(usage()).toMatch(/--term_grace_s.*default 30, as DeepSpeed's launch\.py/);
  });

  it('rejects unknown flags with the nearest valid one', () => {
    expect(() => parseDsArgs(['--num_gpu', '2', 's.js'])).toThrow(/Unknown flag '--num_gpu'.*Did you mean --num_gpus\?/);
  });

  it('rejects bad values and missing pieces', () => {
    expect(() => parseDsArgs(['--num_gpus', 'two', 's.js'])).toThrow(/--num_gpus expects an integer, got 'two'/);
    expect(() => parseDsArgs(['--master_port'])).toThrow(/--master_port needs a value/);
    expect(() => parseDsArgs(['--force_multi=1', 's.js'])).toThrow(/takes no value/);
    expect(() => parseDsArgs(['--num_gpus', '2'])).toThrow(/needs a value|No script given/);
    expect(() => parseDsArgs([])).toThrow(/No script given/);
    expect(() => parseDsArgs(['--launcher', 'torchrun', 's.js'])).toThrow(/--launcher 'torchrun' is unknown; choose one of ssh, pdsh, slurm, openmpi/);
    expect(() => parseDsArgs(['--no_python', '--module', 's'])).toThrow(/Don't use both --no_python and --module/);
    expect(() => parseDsArgs(['--term_grace_s', '-1', 's.js'])).toThrow(/>= 0/);
  });

  it('rejects DeepSpeed features it does not provide, by name', () => {
    for (const flag of ['--elastic_training', '--autotuning=run', '--min_elastic_nodes=1']) {
      expect(() => parseDsArgs([flag, 's.js'])).toThrow(expect.objectContaining({ code: 'DS_UNSUPPORTED' }));
    }
    expect(() => parseDsArgs(['--num_nodes', '1:4', 's.js'])).toThrow(/MIN:MAX form is only for elastic training/);
    expect(() => parseDsArgs(['--launcher', 'mvapich', 's.js'])).toThrow(/MVAPICH is not supported/);
    expect(() => parseDsArgs(['--launcher=impi', 's.js'])).toThrow(/Intel MPI is not supported/);
  });
});

describe('shellSplit / shellQuote', () => {
  it('splits like a POSIX shell', () => {
    expect(shellSplit(`-o StrictHostKeyChecking=no -i "/tmp/my key" -o 'User=a b' a\\ b`)).toEqual([
      '-o', 'StrictHostKeyChecking=no', '-i', '/tmp/my key', '-o', 'User=a b', 'a b',
    ]);
    expect(shellSplit('  ')).toEqual([]);
    expect(shellSplit(`''`)).toEqual(['']);
    expect(() => shellSplit(`-o "open`)).toThrow(/unclosed " quote/);
  });

  it('quotes only what needs it, and round-trips through shellSplit', () => {
    expect(shellQuote('plain/path-1.js')).toBe('plain/path-1.js');
    for (const w of ["it's", 'a b', '$HOME', 'x;rm -rf /', '']) expect(shellSplit(shellQuote(w))).toEqual([w]);
  });
});
