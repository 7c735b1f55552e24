import { describe, expect, it } from 'vitest';

import { freePort } from '@ds-internal/test-kit';

import { DSCommError, DSTimeoutError } from '../../src/errors.js';
import { PrefixStore } from '../../src/comm/store/store.js';
import { TCPStore } from '../../src/comm/store/tcp-store.js';

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

describe('TCPStore', () => {
  it('set/get/add/compareSet/delete/check/numKeys between a server and a client', async () => {
    const server = await TCPStore.create({ host: '127.0.0.1', port: 0, isServer: true, timeoutMs: 5000 });
    const client = await TCPStore.create({ host: '127.0.0.1', port: server.port, isServer: false, timeoutMs: 5000 });
    try {
      await server.set('a', 'hello');
      expect(text(await client.get('a'))).toBe('hello');
      await client.set('bin', new Uint8Array([0, 255, 7]));
      expect([...(await server.get('bin'))]).toEqual([0, 255, 7]);
      expect(await client.add('n', 5)).toBe(5);
      expect(await server.add('n', -2)).toBe(3);
      expect(text(await client.get('n'))).toBe('3');
      // compareSet: a missing key matches an empty expected value; a wrong expectation changes nothing.
      expect(text(await client.compareSet('c', '', 'first'))).toBe('first');
      expect(text(await client.compareSet('c', 'nope', 'second'))).toBe('first');
      expect(text(await client.compareSet('c', 'first', 'second'))).toBe('second');
      expect(await client.check(['a', 'c'])).toBe(true);
      expect(await client.check(['a', 'missing'])).toBe(false);
      expect(await client.delete('a')).toBe(true);
      expect(await client.delete('a')).toBe(false);
      expect(await server.numKeys()).toBe(3);
      const p = new PrefixStore('g1', client);
      await p.set('k', 'v');
      expect(text(await server.get('g1/k'))).toBe('v');
    } finally {
      await client.close();
      await server.close();
    }
  });

  it('get and wait block until another client sets the keys; they time out with DSTimeoutError', async () => {
    const server = await TCPStore.create({ host: '127.0.0.1', port: 0, isServer: true, timeoutMs: 5000 });
    const client = await TCPStore.create({ host: '127.0.0.1', port: server.port, isServer: false, timeoutMs: 5000 });
    try {
      const got = client.get('later');
      const waited = client.wait(['x', 'y']);
      await new Promise((r) => setTimeout(r, 50));
      await server.set('later', 'now');
      await server.set('x', '1');
      await server.set('y', '2');
      expect(text(await got)).toBe('now');
      await waited;
      await expect(client.wait(['never'], 100)).rejects.toBeInstanceOf(DSTimeoutError);
      await expect(client.get('never', 100)).rejects.toThrow(/timed out/);
    } finally {
      await client.close();
      await server.close();
    }
  });

  it('a client started before the server retries until it comes up', async () => {
    const port = await freePort();
    const client = TCPStore.create({ host: '127.0.0.1', port, isServer: false, timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 150));
    const server = await TCPStore.create({ host: '127.0.0.1', port, isServer: true, timeoutMs: 5000 });
    const c = await client;
    try {
      await server.set('k', 'v');
      expect(text(await c.get('k'))).toBe('v');
    } finally {
      await c.close();
      await server.close();
    }
  });

  it('gives up connecting after the timeout, and pending requests fail when the server goes away', async () => {
    const port = await freePort();
    await expect(TCPStore.create({ host: '127.0.0.1', port, isServer: false, timeoutMs: 300 })).rejects.toThrow(/could not reach 127.0.0.1/);
    const server = await TCPStore.create({ host: '127.0.0.1', port: 0, isServer: true, timeoutMs: 5000 });
    const client = await TCPStore.create({ host: '127.0.0.1', port: server.port, isServer: false, timeoutMs: 5000 });
    const pending = client.get('never');
    await server.close();
    await expect(pending).rejects.toBeInstanceOf(DSCommError);
    await client.close();
  });
});
