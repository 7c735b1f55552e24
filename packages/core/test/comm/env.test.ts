import { describe, expect, it } from 'vitest';

import { DEFAULT_COMM_TIMEOUT_MS, readCoreEnv, readDistEnv } from '../../src/env.js';
import { DSConfigError } from '../../src/errors.js';
import { thrown } from '../helpers/config.js';

describe('env', () => {
  it('reads the launcher variables, deriving local and cross ranks when absent', () => {
    const d = readDistEnv({ RANK: '5', WORLD_SIZE: '8', LOCAL_SIZE: '4', MASTER_ADDR: '10.0.0.1', MASTER_PORT: '1234' })!;
    expect(d).toEqual({ rank: 5, worldSize: 8, localRank: 1, localSize: 4, crossRank: 1, crossSize: 2, masterAddr: '10.0.0.1', masterPort: 1234 });
    expect(readDistEnv({ RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2', CROSS_RANK: '0', CROSS_SIZE: '1' })).toMatchObject({
      localSize: 2,
      crossSize: 1,
      masterAddr: '127.0.0.1',
      masterPort: 29500,
    });
    expect(readDistEnv({})).toBeUndefined();
  });

  it('falls back to the MPI launchers\' variables (mpirun started the process directly), explicit ones winning', () => {
    const ompi = { OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2' };
    expect(readDistEnv(ompi)).toMatchObject({ rank: 3, worldSize: 4, localRank: 1, localSize: 2, crossRank: 1, crossSize: 2 });
    expect(readDistEnv({ PMI_RANK: '1', PMI_SIZE: '2', MPI_LOCALRANKID: '1', MPI_LOCALNRANKS: '2' })).toMatchObject({ rank: 1, worldSize: 2, localRank: 1, localSize: 2 });
    expect(readDistEnv({ ...ompi, RANK: '0', WORLD_SIZE: '1' })).toMatchObject({ rank: 0, worldSize: 1 });
    expect(() => readDistEnv({ OMPI_COMM_WORLD_RANK: '4', OMPI_COMM_WORLD_SIZE: '4' })).toThrow(/RANK=4 must be below WORLD_SIZE=4/);
  });

  it('rejects inconsistent or malformed values by name', () => {
    expect(() => readDistEnv({ RANK: '0' })).toThrow(/RANK and WORLD_SIZE must be set together/);
    expect(() => readDistEnv({ RANK: '2', WORLD_SIZE: '2' })).toThrow(/RANK=2 must be below WORLD_SIZE=2/);
    expect(() => readDistEnv({ RANK: 'x', WORLD_SIZE: '2' })).toThrow(/RANK='x'/);
    expect(() => readDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '70000' })).toThrow(/MASTER_PORT/);
    expect(() => readCoreEnv({ DS_COMM_TIMEOUT: '-1' })).toThrow(/DS_COMM_TIMEOUT/);
    expect(() => readCoreEnv({ DS_COMM_CHUNK: '4 pages' })).toThrow(/DS_COMM_CHUNK='4 pages' is not a byte size/);
  });

  it('throws DSConfigError naming the variable as the problem path', () => {
    const err = thrown(() => readDistEnv({ WORLD_SIZE: '2' }), DSConfigError);
    expect(err.code).toBe('DS_CONFIG');
    expect(err.message).toMatch(/WORLD_SIZE is set, the other is not; start the job with the `ds` launcher/);
    expect(err.problems.map((p) => p.path)).toEqual(['RANK']);
    expect(thrown(() => readCoreEnv({ DS_COMM_TRANSPORT: 'ib' }), DSConfigError).problems).toEqual([
      { path: 'DS_COMM_TRANSPORT', message: 'must be auto, shm or tcp', value: 'ib' },
    ]);
    expect(thrown(() => readDistEnv({ RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '3', LOCAL_SIZE: '1' }), DSConfigError).problems[0]!.path).toBe('LOCAL_RANK');
  });

  it('comm timeout, chunk and spin settings', () => {
    expect(readCoreEnv({}).commTimeoutMs).toBe(DEFAULT_COMM_TIMEOUT_MS);
    const e = readCoreEnv({ DS_COMM_TIMEOUT: '2.5', DS_COMM_CHUNK: '256k', DS_COMM_SPIN: '0' });
    expect(readCoreEnv({ DS_COMM_CHUNK: '4MiB' }).commChunkBytes).toBe(4 * 2 ** 20);
    expect(e.commTimeoutMs).toBe(2500);
    expect(e.commChunkBytes).toBe(256 * 1024);
    expect(e.commSpin).toBe(0);
  });
});
