// Module resolve hook for src-aliases.mjs: @ds/<name> -> <repo>/packages/<name>/src/index.ts when
// that file exists; every other specifier (and @ds/<name>/<subpath>) resolves as usual.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const packagesDir = fileURLToPath(new URL('../../../packages/', import.meta.url));

export async function resolve(specifier, context, next) {
  const m = /^@ds\/([a-z0-9-]+)$/.exec(specifier);
  if (m) {
    const entry = `${packagesDir}${m[1]}/src/index.ts`;
    if (existsSync(entry)) return next(pathToFileURL(entry).href, context);
  }
  return next(specifier, context);
}
