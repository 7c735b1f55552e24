// initialize(): DeepSpeed's entry point. Reads and validates the ds_config, joins the process group
// (when the launcher set RANK/WORLD_SIZE), builds the optimizer, the model-state manager (stage 0, or
// the registered plugin's, e.g. ZeRO), the scheduler, the loss scaler and the monitors.
import { getRuntime, Storage, type Module, type Runtime, type Tensor } from '@ds/tensor';

import { initDistributed, type Distributed } from '../comm/init.js';
import { CommsLogger } from '../comm/logger.js';
import { readDistEnv } from '../env.js';
import { loadConfig } from '../config/load.js';
import type { ConfigInput } from '../config/read.js';
import { formatWarnings } from '../config/load.js';
import { DSConfigError } from '../errors.js';
import { MonitorMaster } from '../monitor/index.js';
import { createCoreOptimizer } from '../optim/factory.js';
import type { Optimizer, OptimizerContext } from '../optim/types.js';
import { createRegistry, type Registry } from '../plugin/registry.js';
import type { Plugin, PluginContext } from '../plugin/types.js';
import { createLossScaler, resolvePrecision } from '../precision/index.js';
import { createScheduler, type LRScheduler } from '../schedulers/index.js';
import { DataParallelState } from './data-parallel.js';
import { Engine } from './engine.js';
import type { ModelStateManager, ParamDtype, StateManagerArgs } from './types.js';

export interface InitializeOptions {
  model: Module;
  /** A ds_config object, a path to a JSON/hjson file, or DeepSpeed's base64 JSON string. */
  config: ConfigInput;
  /** Overrides the config's optimizer: an instance, or a factory given the optimizer context. */
  optimizer?: Optimizer | ((ctx: OptimizerContext) => Optimizer);
  /** Overrides the config's scheduler: an instance, or a factory given the optimizer. */
  lrScheduler?: LRScheduler | ((optimizer: Optimizer) => LRScheduler);
  plugins?: Plugin[];
  /** A registry built beforehand (plugins are added to it). */
  registry?: Registry;
  /** The comm context; default: initDistributed() when RANK is set, else a single process. */
  dist?: Distributed | null;
  runtime?: Runtime;
  /** Rank-0 log lines; default console.log. */
  log?: (message: string) => void;
  /** Unknown config keys are errors instead of warnings. */
  strict?: boolean;
}

export interface Initialized {
  engine: Engine;
  optimizer: Optimizer;
  lrScheduler: LRScheduler | null;
}

function paramDtypeOf(dtype: 'fp16' | 'bf16' | 'fp32'): ParamDtype {
  return dtype === 'bf16' ? 'bf16' : dtype === 'fp16' ? 'f16' : 'f32';
}

/** Unique trainable parameters (tied ones once) with their names. */
function trainable(model: Module): { params: Tensor[]; names: string[] } {
  const seen = new Set<Tensor>();
  const params: Tensor[] = [];
  const names: string[] = [];
  for (const [name, p] of model.namedParameters()) {
    if (!p.requiresGrad || seen.has(p)) continue;
    seen.add(p);
    params.push(p);
    names.push(name);
  }
  return { params, names };
}

export async function initialize(opts: InitializeOptions): Promise<Initialized> {
  if (!opts.model) throw new DSConfigError('initialize requires a model');
  const registry = opts.registry ?? createRegistry();
  for (const p of opts.plugins ?? []) registry.use(p);
  const dist = opts.dist !== undefined ? opts.dist : readDistEnv() ? await initDistributed() : null;
  const rank = dist?.rank ?? 0;
  const log = rank === 0 ? (opts.log ?? ((m: string) => console.log(m))) : () => {};
  const group = dist?.world ?? null;
  const loaded = loadConfig(opts.config, { registry, worldSize: group?.size ?? 1, strict: opts.strict ?? false });
  for (const w of formatWarnings(loaded.warnings)) log(`warning: ${w}`);
  const config = loaded.config as unknown as Record<string, unknown>;
  const batch = loaded.batch!;
  const precision = resolvePrecision(loaded.config);
  const paramDtype = paramDtypeOf(precision.dtype);
  const runtime = opts.runtime ?? getRuntime();
  const kernels = runtime.kernels('cpu');
  // Optimizer state is counted under 'optimizer_states' and released with the engine.
  const stateStorages: Storage[] = [];
  const allocState = (n: number, name: string): Float32Array => {
    const s = Storage.allocate(runtime.tracker, n * 4, { category: 'optimizer_states', label: `optimizer ${name}` });
    s.retain();
    stateStorages.push(s);
    return new Float32Array(s.buffer, s.byteOffset, n);
  };
  const releaseState = () => {
    for (const s of stateStorages.splice(0)) s.release();
  };
  const optCtx: OptimizerContext = { kernels, allocState };
  const pluginCtx: PluginContext = { config, rank, worldSize: dist?.size ?? 1, device: 'cpu', log: (level, m) => log(level === 'warn' ? `warning: ${m}` : m) };

  const commsSection = config.comms_logger as { enabled?: boolean } | undefined;
  let commsLogger: CommsLogger | null = null;
  if (commsSection?.enabled && group) {
    commsLogger = CommsLogger.fromConfig(commsSection as never, log);
    commsLogger.attach(group);
  }

  const optimizer = buildOptimizer(opts, optCtx, config, registry, pluginCtx);
  const { params, names } = trainable(opts.model);
  if (params.length === 0) throw new DSConfigError('initialize: the model has no trainable parameters (requiresGrad)');
  const args: StateManagerArgs = { module: opts.model, params, names, optimizer, group, runtime, kernels, paramDtype, config };
  const wrapper = registry.optimizerWrapperFor(config);
  const state: ModelStateManager = wrapper ? await wrapper.value.wrap(args, pluginCtx) : await DataParallelState.create(args);

  let lrScheduler: LRScheduler | null = null;
  if (opts.lrScheduler) lrScheduler = typeof opts.lrScheduler === 'function' ? opts.lrScheduler(optimizer) : opts.lrScheduler;
  else if (loaded.config.scheduler) lrScheduler = createScheduler(optimizer, loaded.config.scheduler as never, { warn: (m: string) => log(`warning: ${m}`) });

  const engine = new Engine({
    module: opts.model,
    optimizer,
    lrScheduler,
    state,
    lossScaler: createLossScaler(loaded.config),
    config,
    batch,
    dist,
    group,
    runtime,
    paramDtype,
    monitor: new MonitorMaster(config as never, rank),
    commsLogger,
    log,
    releaseState,
  });
  return { engine, optimizer, lrScheduler };
}

function buildOptimizer(opts: InitializeOptions, ctx: OptimizerContext, config: Record<string, unknown>, registry: Registry, pluginCtx: PluginContext): Optimizer {
  if (opts.optimizer) return typeof opts.optimizer === 'function' ? opts.optimizer(ctx) : opts.optimizer;
  const section = config.optimizer as { type: string; params?: Record<string, unknown> } | undefined;
  if (!section) throw new DSConfigError("initialize: no optimizer: add an 'optimizer' section ({\"type\": \"AdamW\", \"params\": {...}}) to the ds_config or pass one to initialize()");
  const core = createCoreOptimizer(ctx, section.type, section.params);
  if (core) return core;
  const claim = registry.optimizer(section.type);
  if (!claim) throw new DSConfigError(`optimizer type '${section.type}' is neither one of core's (Adam, AdamW, SGD, Lion, Lamb) nor provided by a registered plugin`);
  return claim.value([], { ...(section.params ?? {}), kernels: ctx.kernels, allocState: ctx.allocState }, pluginCtx) as Optimizer;
}
