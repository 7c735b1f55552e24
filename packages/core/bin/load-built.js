// What @ds/core's installed commands share: load the built entry of a bin, or say in one line that
// it is not built. The bin files are committed, so they exist before the first build and pnpm and
// npm link them at install time (they skip a bin whose target is missing, and a bare npx would then
// ask the npm registry for a package of that name).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Imports `../dist/bin/<name>.js`; exits 1 with the reason when it does not exist. */
export async function loadBuilt(name) {
  const entry = new URL(`../dist/bin/${name}.js`, import.meta.url);
  if (!existsSync(entry)) {
    process.stderr.write(`${name}: ${fileURLToPath(entry)} is not built; in a checkout of the repository run \`pnpm build\` first (an installed @ds/core ships it).\n`);
    process.exit(1);
  }
  await import(entry.href);
}
