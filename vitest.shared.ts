// Shared vitest settings for every package and example.
//
// - `@ds/<name>` resolves to the package's TypeScript source, so a package's tests never wait for a
//   sibling's dist (the native addons are still built by `turbo run build` before tests run).
// - DS_POISON_UNINIT=1 in every test process (and the ranks they spawn, which inherit it).
// - When DS_TEST_REPORT_DIR is set (as .ci/run does), each package also writes a JSON report there,
//   which scripts/test-summary.mjs adds up into the closing `N passed, N failed` line.
import { readdirSync, existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, mergeConfig, type UserConfig } from 'vitest/config';

const root = fileURLToPath(new URL('.', import.meta.url));

function workspaceAliases(): Record<string, string> {
  const aliases: Record<string, string> = {};
  const dir = join(root, 'packages');
  for (const name of readdirSync(dir)) {
    const entry = join(dir, name, 'src', 'index.ts');
    if (existsSync(entry)) aliases[`@ds/${name}`] = entry;
  }
  return aliases;
}

export function dsProject(packageDir: string, overrides: UserConfig = {}): UserConfig {
  const name = basename(packageDir);
  const reportDir = process.env.DS_TEST_REPORT_DIR;
  const reporters: NonNullable<NonNullable<UserConfig['test']>['reporters']> = ['default'];
  if (reportDir) reporters.push(['json', { outputFile: resolve(reportDir, `${name}.json`) }]);
  const base: UserConfig = {
    resolve: { alias: workspaceAliases() },
    test: {
      name,
      root: packageDir,
      include: ['test/**/*.test.ts'],
      exclude: ['test/gpu/**', '**/node_modules/**'],
      reporters,
      testTimeout: 60_000,
      hookTimeout: 60_000,
      // Native thread pools and multi-process tests share 2 cores: run files one at a time.
      pool: 'forks',
      poolOptions: { forks: { singleFork: true } },
      fileParallelism: false,
      // Outputs a kernel should overwrite entirely start as NaN bytes in tests (memory/cache.ts in
      // @ds/tensor), so a kernel that leaves part of one unwritten fails loudly instead of reading zeros.
      env: { DS_POISON_UNINIT: '1' },
    },
  };
  return defineConfig(mergeConfig(base, overrides));
}
