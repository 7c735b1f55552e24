// Whether the module at `moduleUrl` is the program node started, not an import (tests import the
// bins). npm and pnpm start bins through symlinks or shims, so real paths are compared. An installed
// bin is the package's committed `bin/<name>.js`, which only loads the built `dist/bin/<name>.js`:
// that pair counts as the program too.
import { realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function isMainModule(moduleUrl: string): boolean {
  try {
    if (process.argv[1] === undefined) return false;
    const program = realpathSync(process.argv[1]);
    const self = realpathSync(fileURLToPath(moduleUrl));
    return program === self || program === shimOf(self);
  } catch {
    return false;
  }
}

/** `<pkg>/dist/bin/x.js` -> `<pkg>/bin/x.js`, the committed file a package.json bin points at. */
function shimOf(built: string): string {
  return join(dirname(dirname(dirname(built))), 'bin', basename(built));
}
