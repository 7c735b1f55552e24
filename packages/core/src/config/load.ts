// loadConfig: read (object, file path or base64), then validate, in one call.
import type { ConfigProblem } from '../errors.js';
import { readConfigInput, type ConfigInput, type ConfigSource } from './read.js';
import { validateConfig, type ValidatedConfig, type ValidateOptions } from './validate.js';

export type LoadConfigOptions = ValidateOptions;

export interface LoadedConfig extends ValidatedConfig {
  source: ConfigSource;
}

/**
 * Loads a ds_config the way DeepSpeed accepts one (an object, a path to an hjson/JSON file, or a
 * URL-safe base64 string of JSON) and validates it. Throws one DSConfigError listing every problem;
 * warnings (unknown keys outside strict mode, legacy keys, ...) come back in `warnings`.
 */
export function loadConfig(input: ConfigInput, options: LoadConfigOptions = {}): LoadedConfig {
  const { raw, source } = readConfigInput(input);
  return { ...validateConfig(raw, options), source };
}

export function formatWarnings(warnings: readonly ConfigProblem[]): string[] {
  return warnings.map((w) => `ds_config: ${w.path}: ${w.message}`);
}
