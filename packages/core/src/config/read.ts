// Turns what the user passed as a config into a plain object, the way DeepSpeed's DeepSpeedConfig
// does: an object as is (copied), a path to an existing file parsed as hjson (comments, quoteless
// strings and a missing root brace pair are fine; duplicate keys are errors), or else a URL-safe
// base64 string of JSON.
//
// Deliberate differences: duplicate keys are also rejected in base64 input (DeepSpeed checks them
// only in files), and unpadded or standard-alphabet base64 is accepted too.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import hjson from 'hjson';

import { DSConfigError, type ConfigProblem } from '../errors.js';

export type ConfigObject = Record<string, unknown>;
export type ConfigInput = string | URL | ConfigObject;

export interface ConfigSource {
  kind: 'object' | 'file' | 'base64';
  /** The file's path when kind is 'file'. */
  path?: string;
}

export interface ReadConfigResult {
  raw: ConfigObject;
  source: ConfigSource;
}

const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

function fail(summary: string, problems: ConfigProblem[]): never {
  throw new DSConfigError(`${summary}:\n${problems.map((p) => `  - ${p.path || '(root)'}: ${p.message}`).join('\n')}`, problems);
}

function preview(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export function readConfigInput(input: ConfigInput): ReadConfigResult {
  if (input instanceof URL) return readConfigFile(fileURLToPath(input));
  if (typeof input === 'string') {
    if (existsSync(input)) {
      if (statSync(input).isFile()) return readConfigFile(input);
      fail('invalid ds_config', [{ path: '', value: input, message: `${input} is a directory; pass the path of the ds_config.json file in it` }]);
    }
    return { raw: parseBase64Config(input), source: { kind: 'base64' } };
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    fail('invalid ds_config', [
      { path: '', value: input, message: 'expected a config object, a path to a ds_config.json file, or a base64 string of JSON' },
    ]);
  }
  const problems: ConfigProblem[] = [];
  const raw = toPlain(input, '', problems, new Set());
  if (problems.length > 0) fail(`the ds_config object has ${problems.length} value(s) that are not JSON`, problems);
  return { raw: raw as ConfigObject, source: { kind: 'object' } };
}

export function readConfigFile(path: string): ReadConfigResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    fail(`cannot read ds_config file ${path}`, [{ path: '', value: path, message: (err as Error).message }]);
  }
  return { raw: parseConfigText(text, path), source: { kind: 'file', path } };
}

export function parseBase64Config(text: string): ConfigObject {
  const looksLikePath = /[\\/]|\.h?json$/i.test(text) && !BASE64.test(text);
  if (looksLikePath || !BASE64.test(text)) {
    fail('invalid ds_config', [
      {
        path: '',
        value: preview(text),
        message: looksLikePath
          ? `no such file: ${text}; pass the path of an existing ds_config.json, a config object, or base64 JSON`
          : 'expected a path to an existing ds_config file, a config object, or a valid URL-safe base64 string of JSON',
      },
    ]);
  }
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(text, 'base64'));
  } catch {
    fail('invalid ds_config', [{ path: '', value: preview(text), message: 'the base64 string does not decode to UTF-8 text' }]);
  }
  return parseConfigText(decoded, 'base64 config');
}

/** Parses hjson/JSON text, reporting every duplicate key (with its path) in one DSConfigError. */
export function parseConfigText(text: string, origin: string): ConfigObject {
  let parsed: unknown;
  try {
    parsed = hjson.parse(text, { keepWsc: true });
  } catch (err) {
    const message = err instanceof RangeError ? 'nesting is too deep to parse' : String((err as Error).message ?? err).split('\n')[0]!;
    fail(`cannot parse ${origin}`, [{ path: '', message: `not valid JSON/hjson: ${message}` }]);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    fail(`cannot use ${origin}`, [{ path: '', value: parsed, message: `the top level must be an object of config sections, got ${Array.isArray(parsed) ? 'an array' : JSON.stringify(parsed)}` }]);
  }
  const problems: ConfigProblem[] = [];
  const raw = toPlain(parsed, '', problems, new Set());
  if (problems.length > 0) fail(`${origin} has ${problems.length} problem(s)`, problems);
  return raw as ConfigObject;
}

function join(path: string, key: string | number): string {
  return typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;
}

/**
 * Copies a parsed or user-given value into plain JSON data, recording duplicate keys (seen through
 * hjson's key-order record), keys that would touch prototypes, and values that are not JSON.
 */
function toPlain(value: unknown, path: string, problems: ConfigProblem[], seen: Set<object>): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean' || typeof value === 'number') return value;
  if (typeof value !== 'object') {
    problems.push({ path, value: String(value), message: `a ${typeof value} is not a JSON value; use a number, string, boolean, array or object` });
    return undefined;
  }
  if (seen.has(value)) {
    problems.push({ path, message: 'the config refers to itself (a cycle); a config must be plain JSON data' });
    return undefined;
  }
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v, i) => toPlain(v, join(path, i), problems, seen));
    const order = (value as { __COMMENTS__?: { o?: unknown } }).__COMMENTS__?.o;
    if (Array.isArray(order)) reportDuplicates(order, path, problems);
    const proto = Object.getPrototypeOf(value) as unknown;
    // hjson assigns a '__proto__' key as a prototype; that case is reported above.
    const protoKey = Array.isArray(order) && order.includes('__proto__');
    if (proto !== Object.prototype && proto !== null && !protoKey) {
      problems.push({ path, message: `a ${(value as object).constructor?.name ?? 'class'} instance is not JSON data; use a plain object` });
      return undefined;
    }
    const out: ConfigObject = {};
    for (const [key, child] of Object.entries(value)) {
      if (child === undefined) continue;
      Object.defineProperty(out, key, { value: toPlain(child, join(path, key), problems, seen), enumerable: true, writable: true, configurable: true });
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

function reportDuplicates(order: unknown[], path: string, problems: ConfigProblem[]): void {
  const counts = new Map<string, number>();
  for (const key of order) counts.set(String(key), (counts.get(String(key)) ?? 0) + 1);
  for (const [key, n] of counts) {
    if (key === '__proto__') {
      problems.push({ path: join(path, key), message: "the key '__proto__' is not allowed in a config" });
    } else if (n > 1) {
      problems.push({ path: join(path, key), message: `duplicate key '${key}' (${n} times); DeepSpeed rejects duplicate keys, keep one` });
    }
  }
}
