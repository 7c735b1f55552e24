// One-shot run of every project from the root (`npx vitest run`); CI goes through turbo instead.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: ['packages/*', 'examples/*', 'tools/*'],
  },
});
