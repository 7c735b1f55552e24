// The batch triad, with DeepSpeed's inference rules (runtime/config.py _set_batch_related_parameters
// and _batch_assertion): train_batch_size = train_micro_batch_size_per_gpu *
// gradient_accumulation_steps * data-parallel world size.
//   all three given   -> only checked
//   batch + micro     -> gas   = batch // micro // world
//   batch + gas       -> micro = batch // world // gas
//   micro + gas       -> batch = micro * gas * world
//   batch only        -> gas = 1, micro = batch // world
//   micro only        -> gas = 1, batch = micro * world
//   neither batch nor micro -> error
// Integer division can leave the invariant broken; that is then an error, as in DeepSpeed.
import type { ConfigProblem } from '../errors.js';
import { configError } from './problems.js';

export interface BatchKeys {
  train_batch_size?: number | null;
  train_micro_batch_size_per_gpu?: number | null;
  gradient_accumulation_steps?: number | null;
}

export interface ResolvedBatch {
  trainBatchSize: number;
  trainMicroBatchSizePerGpu: number;
  gradientAccumulationSteps: number;
  worldSize: number;
  /** The keys that were computed rather than given. */
  inferred: Array<keyof BatchKeys>;
}

export interface BatchResolution {
  batch?: ResolvedBatch;
  problems: ConfigProblem[];
}

const TB = 'train_batch_size';
const MB = 'train_micro_batch_size_per_gpu';
const GAS = 'gradient_accumulation_steps';

/** Problems with the batch keys that do not depend on the world size. */
export function staticBatchProblems(config: BatchKeys): ConfigProblem[] {
  if (config[TB] == null && config[MB] == null) {
    return [
      {
        path: TB,
        value: undefined,
        message: `Either ${TB} or ${MB} needs to be provided (with ${GAS}, any two of the three fix the third)`,
      },
    ];
  }
  return [];
}

/** Like resolveBatch, but returns the problems instead of throwing. */
export function tryResolveBatch(config: BatchKeys, worldSize: number): BatchResolution {
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    return { problems: [{ path: 'worldSize', value: worldSize, message: 'the data-parallel world size must be an integer >= 1' }] };
  }
  const given: BatchKeys = {};
  const problems: ConfigProblem[] = [];
  for (const key of [TB, MB, GAS] as const) {
    const v = config[key];
    if (v == null) continue;
    if (!Number.isInteger(v) || v < 1) problems.push({ path: key, value: v, message: `must be an integer >= 1, got ${JSON.stringify(v)}` });
    else given[key] = v;
  }
  if (problems.length > 0) return { problems };
  const statics = staticBatchProblems(given);
  if (statics.length > 0) return { problems: statics };

  let tb = given[TB] ?? undefined;
  let mb = given[MB] ?? undefined;
  let gas = given[GAS] ?? undefined;
  const inferred: Array<keyof BatchKeys> = [];
  const ws = worldSize;
  if (tb !== undefined && mb !== undefined && gas !== undefined) {
    // all given: nothing to infer
  } else if (tb !== undefined && mb !== undefined) {
    gas = Math.floor(Math.floor(tb / mb) / ws);
    inferred.push(GAS);
  } else if (tb !== undefined && gas !== undefined) {
    mb = Math.floor(Math.floor(tb / ws) / gas);
    inferred.push(MB);
  } else if (mb !== undefined && gas !== undefined) {
    tb = mb * gas * ws;
    inferred.push(TB);
  } else if (tb !== undefined) {
    gas = 1;
    mb = Math.floor(tb / ws);
    inferred.push(GAS, MB);
  } else {
    gas = 1;
    tb = mb! * ws;
    inferred.push(TB, GAS);
  }
  const values = { [TB]: tb!, [MB]: mb!, [GAS]: gas! };
  for (const key of [TB, MB, GAS] as const) {
    if (values[key] > 0) continue;
    problems.push({
      path: key,
      value: values[key],
      message: `${key} works out to ${values[key]} (it has to be greater than 0): ${explain(values, ws)}; give a larger ${TB} or a smaller world size`,
    });
  }
  if (problems.length === 0 && values[TB] !== values[MB] * values[GAS] * ws) {
    const fix = values[MB] * values[GAS] * ws;
    problems.push({
      path: TB,
      value: values[TB],
      message:
        `Check batch related parameters. ${TB} is not equal to micro_batch_per_gpu * gradient_acc_step * world_size ` +
        `${values[TB]} != ${values[MB]} * ${values[GAS]} * ${ws}; set ${TB} to ${fix}, or choose values whose product matches`,
    });
  }
  if (problems.length > 0) return { problems };
  return {
    batch: { trainBatchSize: values[TB], trainMicroBatchSizePerGpu: values[MB], gradientAccumulationSteps: values[GAS], worldSize: ws, inferred },
    problems,
  };
}

function explain(values: Record<string, number>, ws: number): string {
  return `${TB}=${values[TB]}, ${MB}=${values[MB]}, ${GAS}=${values[GAS]} at world size ${ws}`;
}

/** Resolves the triad for a data-parallel world size; throws one DSConfigError listing the problems. */
export function resolveBatch(config: BatchKeys, worldSize: number): ResolvedBatch {
  const { batch, problems } = tryResolveBatch(config, worldSize);
  if (!batch) throw configError(problems);
  return batch;
}
