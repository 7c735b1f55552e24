// Validates a scheduler's params when a scheduler is built directly (not through loadConfig), so a
// bad value fails with the same DSConfigError the config loader produces.
import type { z } from 'zod';

import { configError, issuesToProblems } from '../config/problems.js';

export function parseParams<S extends z.ZodType>(schema: S, params: unknown, type: string): z.output<S> {
  const input = params ?? {};
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const problems = issuesToProblems(result.error.issues, input, schema, 'scheduler.params');
  throw configError(problems.map((p) => ({ ...p, message: `${type}: ${p.message}` })));
}
