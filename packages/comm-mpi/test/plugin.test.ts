// The plugin's shape, and what happens where MPI cannot be loaded.
import { DSUnsupportedError, knownPluginByPackage } from '@ds/core';
import { describe, expect, it } from 'vitest';

import { mpi, mpiBackend } from '../src/index.js';
import { loadMpiAddon } from '../src/native/load.js';

describe('comm-mpi plugin', () => {
  it('contributes the mpi comm backend under the name and factory the catalogue lists', () => {
    const p = mpi();
    expect(p.package).toBe('@ds/comm-mpi');
    expect(Object.keys(p.contributes.commBackends ?? {})).toEqual(['mpi']);
    const known = knownPluginByPackage('@ds/comm-mpi')!;
    expect(known.factory).toBe('mpi');
    expect(known.commBackends).toEqual(['mpi']);
  });

  it('the addon loads without touching MPI', () => {
    const addon = loadMpiAddon();
    expect(typeof addon.init).toBe('function');
    expect(typeof addon.submit).toBe('function');
  });

  it('without a usable libmpi, asking for mpi fails with one sentence naming what is missing and what to install', () => {
    let err: unknown;
    try {
      mpiBackend({ library: '/nonexistent/openmpi/libmpi.so.40' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DSUnsupportedError);
    const message = (err as Error).message;
    expect(message).toMatch(/^comm backend 'mpi' cannot run here: the mpi backend needs Open MPI's libmpi\.so\.40, which could not be loaded \(.*nonexistent.*\); install Open MPI 4 or 5 \(Debian: apt-get install openmpi-bin libopenmpi-dev\)/);
    expect(message.split('; ').length).toBeLessThanOrEqual(3);
    expect(message).not.toMatch(/\n/);
  });
});
