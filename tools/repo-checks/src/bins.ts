// Checks on the commands our packages install (issue 24). A bin must point at a committed file, so
// that pnpm and npm link it at install time, before any build (they skip a bin whose target is
// missing); and no doc or message may tell a user to run one of our bins through a command that
// falls back to the npm registry when the bin is not installed (a bare npx of `ds` downloads and runs
// whatever package owns the name `ds` there). Each check takes the repository root, so that its test
// can plant a bad example.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix, relative } from 'node:path';

interface Manifest {
  /** Directory of the package, relative to the root ('' for the root). */
  dir: string;
  name: string;
  bins: Record<string, string>;
}

/** The root package.json and every workspace package's (pnpm-workspace.yaml globs of the form `dir/*`). */
export function workspaceManifests(root: string): Manifest[] {
  const yaml = readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8');
  const globs = [...yaml.matchAll(/^\s*-\s*['"]?([^'"\s#]+)['"]?/gm)].map((m) => m[1]!);
  const dirs = [''];
  for (const glob of globs) {
    if (!glob.endsWith('/*') || glob.slice(0, -2).includes('*')) throw new Error(`pnpm-workspace.yaml: glob '${glob}' is not of the form 'dir/*'; teach workspaceManifests() to expand it`);
    const parent = glob.slice(0, -2);
    if (!existsSync(join(root, parent))) continue;
    for (const entry of readdirSync(join(root, parent), { withFileTypes: true })) {
      if (entry.isDirectory() && existsSync(join(root, parent, entry.name, 'package.json'))) dirs.push(posix.join(parent, entry.name));
    }
  }
  return dirs.map((dir) => {
    const pkg = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as { name?: string; bin?: string | Record<string, string> };
    const name = pkg.name ?? dir;
    const bins = typeof pkg.bin === 'string' ? { [name.replace(/^@[^/]+\//, '')]: pkg.bin } : { ...(pkg.bin ?? {}) };
    return { dir, name, bins };
  });
}

/** Every bin name a workspace package declares, and every package name (an npx of a package falls through too). */
export function ourCommandNames(root: string): Set<string> {
  return new Set(workspaceManifests(root).flatMap((m) => [m.name, ...Object.keys(m.bins)]));
}

/**
 * "pkg: bin 'x' -> ./dist/x.js is not a committed file" for every bin whose target git does not track
 * (staged counts): a missing file, a build output, or a new shim not yet added.
 */
export function uncommittedBinTargets(root: string): string[] {
  const listed = execFileSync('git', ['ls-files', '-z', '--cached'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  const tracked = new Set(listed.split('\0'));
  const problems: string[] = [];
  for (const m of workspaceManifests(root)) {
    for (const [bin, target] of Object.entries(m.bins)) {
      const path = posix.normalize(posix.join(m.dir, target));
      if (!tracked.has(path)) {
        problems.push(`${m.name}: bin '${bin}' -> ${target} is not a committed file (${path}); point it at a committed shim such as bin/${bin}.js that loads the built entry`);
      }
    }
  }
  return problems;
}

// Tests and their fixtures are left out: they may spell a bad command to check that it is refused.
const SKIP_DIRS = new Set(['node_modules', 'dist', 'prebuilds', 'build', 'coverage', 'gpt-run', 'test', 'fixtures']);
const CODE_DIRS = new Set(['src', 'bin', 'scripts', 'examples']);
const SOURCE = /\.(ts|mts|cts|js|mjs|cjs)$/;

/** README.md and package.json (its scripts) files anywhere, and source files under a src/, bin/ or scripts/ folder or in examples/. */
export function userFacingFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, inCode: boolean): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!SKIP_DIRS.has(entry.name) && !entry.name.startsWith('.')) walk(full, inCode || CODE_DIRS.has(entry.name));
      } else if (entry.name === 'README.md' || entry.name === 'package.json' || (inCode && SOURCE.test(entry.name))) out.push(full);
    }
  };
  walk(root, false);
  return out;
}

// A runner that installs from the registry when the command is not found locally, its flags that
// keep that behaviour, then the command. `npx --no-install ds`, `npm exec --no -- ds` and
// `pnpm exec ds` never reach the registry and are not matched.
const FALLS_THROUGH = /\b(?:npx|npm\s+(?:exec|x)|pnpm\s+dlx|yarn\s+dlx)(?:\s+(?:-y|--yes|--))*\s+([^\s`'"),;]+)/g;

/** "file:line: ..." for every command in `files` that reaches one of `names` through the registry. */
export function bareNpxUses(root: string, files: string[] = userFacingFiles(root), names: Set<string> = ourCommandNames(root)): string[] {
  const problems: string[] = [];
  for (const file of files) {
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      for (const m of line.matchAll(FALLS_THROUGH)) {
        const bin = m[1]!.replace(/(?<=.)@.*$/, ''); // ds@latest names ds
        if (names.has(bin)) {
          problems.push(
            `${relative(root, file)}:${i + 1}: \`${m[0].trim()}\` asks the npm registry for '${bin}' when it is not installed; run the installed bin (\`pnpm exec <bin>\` or \`npm exec --no -- <bin>\`) and name the package that installs it`,
          );
        }
      }
    });
  }
  return problems;
}
