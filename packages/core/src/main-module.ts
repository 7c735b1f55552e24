// Whether the module at `moduleUrl` is the program node started, not an import (tests import the
// bins). npm and pnpm start bins through symlinks or shims, so real paths are compared.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function isMainModule(moduleUrl: string): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
