// `pnpm test:gpu`: only the tests under test/gpu/, which the shared config leaves out of `pnpm test`
// (they need an NVIDIA GPU and NCCL, and skip with the reason printed where either is missing).
// The lists are replaced, not merged: vitest's merge would append to the shared include and exclude.
import { dsProject } from '../../vitest.shared';

const config = dsProject(import.meta.dirname);
config.test!.include = ['test/gpu/**/*.test.ts'];
config.test!.exclude = ['**/node_modules/**'];
config.test!.testTimeout = 300_000;
export default config;
