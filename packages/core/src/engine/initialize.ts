// initialize(): DeepSpeed's entry point. Reads and validates the ds_config, joins the process group
// on the comm backend chosen by name (when the launcher set RANK/WORLD_SIZE), builds the pipe x data
// x model topology, resolves attention kernels, builds the optimizer, the model-state manager (stage
// 0, or a registered wrapper's, e.g. ZeRO), the scheduler, the loss scaler and the monitors, and
// hands them to the engine a registered engine contribution makes (the ordinary Engine otherwise).
// Every extension point of the registry is consumed here or by what is built here.
import { DENSE_ATTENTION, getRuntime, isAttentionHost, Storage, type AttentionKernel, type F32, type Module, type Runtime, type Tensor } from '@ds/tensor';

import { initDistributed, type Distributed } from '../comm/init.js';
import { CommsLogger } from '../comm/logger.js';
import { buildParallelGroups, type ParallelGroups } from '../comm/topology.js';
import type { CommBackend } from '../comm/types.js';
import { readCoreEnv, type CoreEnv } from '../env.js';
import { formatWarnings, loadConfig } from '../config/load.js';
import { readConfigInput, type ConfigInput, type ConfigObject } from '../config/read.js';
import type { DSConfig } from '../config/core-sections.js';
import { DistributedDataLoader, type Dataset } from '../data/loader.js';
import { DSConfigError } from '../errors.js';
import { MonitorMaster } from '../monitor/index.js';
import { createLog, silentLog } from '../monitor/log.js';
import type { AutoValues } from '../config/auto.js';
import { createCoreOptimizer } from '../optim/factory.js';
import type { Optimizer, OptimizerContext, ParamGroup } from '../optim/types.js';
import { knownPluginForBackend, registerHint } from '../plugin/catalogue.js';
import { createRegistry, type Registry } from '../plugin/registry.js';
import type { Plugin, PluginContext } from '../plugin/types.js';
import { createLossScaler, resolvePrecision } from '../precision/index.js';
import { createScheduler, type LRScheduler } from '../schedulers/index.js';
import { DataParallelState } from './data-parallel.js';
import { Engine, type EngineParts } from './engine.js';
import { modelParallelSplits, pipeReplicatedParameters, type ModelStateManager, type ParamDtype, type StateManagerArgs } from './types.js';
import { deviceIO } from './device-io.js';

export interface InitializeOptions {
  model: Module;
  /**
   * The device to train on ('cpu', 'sim', 'cuda'); the model is moved there first (DeepSpeed moves
   * the module to the rank's accelerator). Default: where the model's parameters already are.
   */
  device?: string;
  /**
   * A ds_config object, a path to a JSON/hjson file, or DeepSpeed's base64 JSON string. May be left
   * out when `args` names the file (`--deepspeed_config`); giving both is an error, as in DeepSpeed.
   */
  config?: ConfigInput;
  /**
   * DeepSpeed's `args`: the script's command line (e.g. `process.argv.slice(2)`) or an object with
   * `deepspeed_config`. `--deepspeed_config FILE` (also `=FILE`, and the deprecated
   * `--deepscale_config`) supplies the config; `--deepspeed` and `--deepscale` are accepted flags.
   */
  args?: readonly string[] | { readonly deepspeed_config?: string; readonly deepscale_config?: string };
  /**
   * DeepSpeed's training_data: a dataset (an array, or `{ length, get(i) }`). initialize() returns a
   * DistributedDataLoader giving this data-parallel rank its micro batches (`dataloader_drop_last`).
   */
  trainingData?: Dataset<unknown>;
  /** DeepSpeed's collate_fn: turns a list of samples into a batch; default the list itself. */
  collateFn?: (samples: unknown[]) => unknown;
  /**
   * DeepSpeed's model_parameters: the parameters to train, as one list or as groups with their own
   * `lr` / `weightDecay` (e.g. no decay on biases and norms). Every trainable parameter of the model
   * must be in exactly one group (DeepSpeed would leave the others out of the optimizer; here that
   * is an error naming them: set requiresGrad false to freeze a parameter).
   */
  modelParameters?: readonly Tensor[] | readonly ParamGroupSpec[];
  /** Overrides the config's optimizer: an instance, or a factory given the optimizer context. */
  optimizer?: Optimizer | ((ctx: OptimizerContext) => Optimizer);
  /** Overrides the config's scheduler: an instance, or a factory given the optimizer. */
  lrScheduler?: LRScheduler | ((optimizer: Optimizer) => LRScheduler);
  plugins?: Plugin[];
  /** A registry built beforehand (plugins are added to it). */
  registry?: Registry;
  /** The comm context; default: joins the job when RANK is set (on `commBackend`), else a single process. */
  dist?: Distributed | null;
  /**
   * The comm backend by name when initialize() joins the job: this option, else DS_COMM_BACKEND,
   * else the optimizer's `comm_backend_name` (DeepSpeed's key for the 1-bit optimizers), else `cpu`.
   */
  commBackend?: string;
  /**
   * Pipeline and tensor (model) parallel degrees; the data-parallel degree is what remains of the
   * world. A registered engine may fix them from the model (a PipelineModule's stages); then this
   * option may be left out, and where given it must agree.
   */
  topology?: { pipe?: number; model?: number };
  runtime?: Runtime;
  /** Rank-0 log lines (those DS_LOG_LEVEL lets through, with their level prefix); default console.log. */
  log?: (message: string) => void;
  /** Unknown config keys are errors instead of warnings. */
  strict?: boolean;
  /**
   * Values for HF-style "auto" placeholders by key path, as loadConfig's `autoValues`: the config
   * initialize() validates is the one loadConfig returns for the same options, and an unresolved
   * "auto" fails with the same message.
   */
  autoValues?: AutoValues;
  /** The environment to read (RANK, DS_COMM_BACKEND, ...); default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** One group of modelParameters: its parameters and what it overrides of the optimizer's params. */
export interface ParamGroupSpec {
  params: readonly Tensor[];
  lr?: number;
  weightDecay?: number;
}

export interface Initialized {
  engine: Engine;
  optimizer: Optimizer;
  lrScheduler: LRScheduler | null;
  /** The loader of `trainingData` (DeepSpeed's training_dataloader); null without training data. */
  trainingDataLoader: DistributedDataLoader<unknown, unknown> | null;
}

function paramDtypeOf(dtype: 'fp16' | 'bf16' | 'fp32'): ParamDtype {
  return dtype === 'bf16' ? 'bf16' : dtype === 'fp16' ? 'f16' : 'f32';
}

/** Unique trainable parameters (tied ones once) with their names. */
/** The one device every parameter of the model is on (after moving it to `want`). */
function engineDevice(model: Module, want: string | undefined): string {
  if (want !== undefined) model.to(want);
  const where = new Map<string, string[]>();
  for (const [name, p] of model.namedParameters()) {
    const names = where.get(p.device) ?? [];
    names.push(name);
    where.set(p.device, names);
  }
  if (where.size > 1) {
    const list = [...where].map(([d, n]) => `${d}: ${n.slice(0, 3).join(', ')}${n.length > 3 ? ', ...' : ''}`).join('; ');
    throw new DSConfigError(`initialize: the model's parameters are on several devices (${list}); move the model to one with model.to(device) or pass initialize({ device })`);
  }
  return [...where.keys()][0] ?? want ?? 'cpu';
}

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

/**
 * The backend's name: the option, else DS_COMM_BACKEND (both must name a registered backend), else
 * the optimizer's comm_backend_name when that backend is registered; otherwise cpu. (DeepSpeed's
 * 1-bit configs say "nccl" or "mpi"; on a job without that backend they run on the active one, and
 * the optimizer's plugin says so in one line.)
 */
function backendName(opts: InitializeOptions, env: CoreEnv, raw: ConfigObject, registry: Registry): string {
  if (opts.commBackend) return opts.commBackend;
  if (env.commBackend) return env.commBackend;
  const params = (raw.optimizer as { params?: { comm_backend_name?: unknown } } | undefined)?.params;
  const named = params?.comm_backend_name;
  return typeof named === 'string' && registry.get('commBackends', named) ? named : 'cpu';
}

/** The registered backend of that name; an unknown name fails naming the registered ones and the package that has it. */
export async function resolveCommBackend(registry: Registry, name: string, env: CoreEnv): Promise<CommBackend> {
  const claim = registry.get('commBackends', name);
  if (!claim) {
    const known = knownPluginForBackend(name);
    const hint = known ? `; '${name}' comes from ${known.package}: ${registerHint(known)}` : '';
    throw new DSConfigError(`comm backend '${name}' is not registered (registered: ${registry.names('commBackends').join(', ')})${hint}`);
  }
  return claim.value({ env });
}

/** The config: `config`, else the one `args` names; both, or neither, is a DSConfigError with DeepSpeed's reason. */
function configFrom(opts: InitializeOptions): ConfigInput {
  const fromArgs = opts.args === undefined ? undefined : configArg(opts.args);
  if (fromArgs !== undefined && opts.config !== undefined) {
    throw new DSConfigError(`initialize: a config was given twice, as config and as --deepspeed_config ${fromArgs} in args; pass one of them (DeepSpeed refuses both too)`);
  }
  const config = opts.config ?? fromArgs;
  if (config === undefined) throw new DSConfigError('initialize: no ds_config: pass config (an object, a file path or base64 JSON) or args with --deepspeed_config FILE, as DeepSpeed requires');
  return config;
}

/** `--deepspeed_config FILE` / `--deepspeed_config=FILE` (or deepscale_config) from a command line or an args object. */
function configArg(args: NonNullable<InitializeOptions['args']>): string | undefined {
  if (!Array.isArray(args)) {
    const o = args as { deepspeed_config?: string; deepscale_config?: string };
    return o.deepspeed_config ?? o.deepscale_config;
  }
  const list = args as readonly string[];
  for (let i = 0; i < list.length; i++) {
    const m = /^--(?:deepspeed|deepscale)_config(?:=(.*))?$/.exec(list[i]!);
    if (!m) continue;
    const value = m[1] ?? list[i + 1];
    if (value === undefined || value === '' || (m[1] === undefined && value.startsWith('--'))) {
      throw new DSConfigError(`initialize: ${list[i]} in args needs a file (--deepspeed_config ds_config.json)`);
    }
    return value;
  }
  return undefined;
}

/** Degrees the topology needs: the data degree is what the world leaves after pipe x model. */
function dataDegree(worldSize: number, topology: InitializeOptions['topology']): number {
  const rest = (topology?.pipe ?? 1) * (topology?.model ?? 1);
  return worldSize % rest === 0 ? worldSize / rest : worldSize;
}

/**
 * The pipe and model degrees: the `topology` option merged with what a registered engine reads off
 * the model (a PipelineModule's stage count); where both give an axis they must agree.
 */
function topologyFor(registry: Registry, opts: InitializeOptions): NonNullable<InitializeOptions['topology']> {
  const out = { ...opts.topology };
  for (const name of registry.names('engines')) {
    const claim = registry.get('engines', name)!;
    const fixed = claim.value.topology?.(opts.model);
    for (const axis of ['pipe', 'model'] as const) {
      const d = fixed?.[axis];
      if (d === undefined) continue;
      const asked = opts.topology?.[axis];
      if (asked !== undefined && asked !== d) {
        throw new DSConfigError(`initialize: topology.${axis} is ${asked} but the model needs ${d} (engine '${name}' of ${claim.plugin.package}); drop the option or make it ${d}`);
      }
      out[axis] = d;
    }
  }
  return out;
}

export async function initialize(opts: InitializeOptions): Promise<Initialized> {
  if (!opts.model) throw new DSConfigError('initialize requires a model');
  const registry = opts.registry ?? createRegistry();
  for (const p of opts.plugins ?? []) registry.use(p);
  const env = readCoreEnv(opts.env ?? process.env);
  const { raw } = readConfigInput(configFrom(opts));
  const worldSize = opts.dist !== undefined ? (opts.dist?.size ?? 1) : (env.dist?.worldSize ?? 1);
  // Validated before any rendezvous, so a bad config fails alike on every rank without waiting for the others.
  const topology = topologyFor(registry, opts);
  const loaded = loadConfig(raw, { registry, worldSize: dataDegree(worldSize, topology), strict: opts.strict ?? false, ...(opts.autoValues !== undefined ? { autoValues: opts.autoValues } : {}) });
  const config: DSConfig = loaded.config;
  const dist = opts.dist !== undefined ? opts.dist : env.dist ? await initDistributed({ env: opts.env, backend: await resolveCommBackend(registry, backendName(opts, env, raw, registry), env) }) : null;
  const rank = dist?.rank ?? 0;
  const log = rank === 0 ? createLog(opts.log ?? ((m: string) => console.log(m)), env.logLevel) : silentLog;
  for (const w of formatWarnings(loaded.warnings)) log(w, 'warn');
  const groups = await buildParallelGroups(dist, topology);
  if (config.data_parallel_size !== undefined && config.data_parallel_size !== groups.topology.degrees.data) {
    throw new DSConfigError(`data_parallel_size is ${config.data_parallel_size}, but the topology (${groups.topology}) over ${worldSize} rank(s) has a data-parallel degree of ${groups.topology.degrees.data}; remove the key or make it match`);
  }
  const batch = loaded.batch!;
  const precision = resolvePrecision(config);
  const paramDtype = paramDtypeOf(precision.dtype);
  const runtime = opts.runtime ?? getRuntime();
  const device = engineDevice(opts.model, opts.device);
  const kernels = runtime.kernels(device);
  const io = deviceIO(runtime, device);
  const ctx: PluginContext = {
    config,
    rank,
    worldSize: dist?.size ?? 1,
    device,
    runtime,
    dist,
    groups,
    registry,
    log: (level, m) => log(m, level),
  };
  resolveAttentionKernels(opts.model, ctx);

  // Optimizer state is counted under 'optimizer_states' and released with the engine.
  const stateStorages: Storage[] = [];
  const allocState = (n: number, name: string): F32 => {
    const s = Storage.allocate(runtime.tracker, n * 4, { category: 'optimizer_states', label: `optimizer ${name}`, device }, device === 'cpu' ? undefined : runtime.device(device));
    s.retain();
    stateStorages.push(s);
    return s.operand('f32', 0, n) as F32;
  };
  const releaseState = () => {
    for (const s of stateStorages.splice(0)) s.release();
  };
  const optCtx: OptimizerContext = { kernels, allocState, transfer: { toHost: (a) => io.toHost(a), fromHost: (src, dst) => io.fromHost(src, dst) } };

  let commsLogger: CommsLogger | null = null;
  if (config.comms_logger.enabled && groups.data) {
    commsLogger = CommsLogger.fromConfig(config.comms_logger, log);
    commsLogger.attach(groups.data);
  }

  const { params, names } = trainable(opts.model);
  if (params.length === 0) throw new DSConfigError('initialize: the model has no trainable parameters (requiresGrad)');
  const { groupOf, overrides } = paramGroups(opts.modelParameters, params, names);
  const optimizer = buildOptimizer(opts, optCtx, config, ctx, overrides);
  if (optimizer.paramGroups.length < overrides.length) {
    throw new DSConfigError(`initialize: modelParameters has ${overrides.length} groups but the ${optimizer.type} optimizer has ${optimizer.paramGroups.length} parameter group(s); build it with one group per modelParameters group`);
  }
  const args: StateManagerArgs = { module: opts.model, params, names, groupOf, optimizer, group: groups.data, runtime, kernels, io, paramDtype, config, ctx, normCounted: normCounted(opts.model, params, groups) };
  const wrapper = registry.optimizerWrapperFor(config);
  const state: ModelStateManager = wrapper ? await wrapper.value.wrap(args, ctx) : await DataParallelState.create(args);

  let lrScheduler: LRScheduler | null = null;
  if (opts.lrScheduler) lrScheduler = typeof opts.lrScheduler === 'function' ? opts.lrScheduler(optimizer) : opts.lrScheduler;
  else if (config.scheduler) lrScheduler = createScheduler(optimizer, config.scheduler, { warn: (m: string) => log(m, 'warn') });
  log(
    `initialize: ${groups.topology} over ${dist?.size ?? 1} rank(s)${dist ? ` on the '${dist.backend.name}' backend` : ''}, device ${device}, ${paramDtype} parameters, ` +
      `${wrapper ? `${wrapper.plugin.name} model states (stage ${state.stage})` : 'stage 0 data parallelism'}, ${optimizer.type} optimizer, ` +
      `micro batch ${batch.trainMicroBatchSizePerGpu} x ${batch.gradientAccumulationSteps} accumulation step(s) = train batch ${batch.trainBatchSize}`,
    'debug',
  );

  const parts: EngineParts = {
    module: opts.model,
    optimizer,
    lrScheduler,
    state,
    lossScaler: createLossScaler(config),
    config,
    batch,
    dist,
    groups,
    runtime,
    device,
    paramDtype,
    monitor: new MonitorMaster(config, rank),
    commsLogger,
    log,
    releaseState,
  };
  const custom = registry.engineFor(opts.model, config);
  const engine = custom ? await custom.value.create({ parts }, ctx) : new Engine(parts);
  // Every rank leaves initialize() together. Rank 0 serves the rendezvous store on its event loop,
  // and the first forward may block that loop in a hook (a synchronous wait on a collective): a rank
  // still creating groups through the store at that moment would wait for rank 0 forever.
  if (dist) await dist.world.barrier();
  const trainingDataLoader = opts.trainingData
    ? new DistributedDataLoader<unknown, unknown>(opts.trainingData, {
        batchSize: batch.trainMicroBatchSizePerGpu,
        rank: groups.data?.rank ?? 0,
        worldSize: groups.topology.degrees.data,
        dropLast: config.dataloader_drop_last,
        ...(opts.collateFn ? { collate: opts.collateFn } : {}),
      })
    : null;
  return { engine, optimizer, lrScheduler, trainingDataLoader };
}

/**
 * Which parameters this rank counts in the global gradient norm (StateManagerArgs.normCounted):
 * split ones on every model rank, replicated ones on model rank 0, none of the pipe-replicated
 * copies. With a model degree of 1 every rank is model rank 0, so only the pipe-replicated copies
 * are left out; without a pipeline nothing is.
 */
function normCounted(model: Module, params: readonly Tensor[], groups: ParallelGroups): boolean[] {
  const split = modelParallelSplits(model);
  const replicated = pipeReplicatedParameters(model);
  const firstModelRank = groups.coords.model === 0;
  return params.map((p) => !replicated.has(p) && (firstModelRank || split.has(p)));
}

/**
 * Gives every attention module its kernel: the one a registered plugin's config section switches on
 * (e.g. sparse_attention), else the kernel the module was built with by name. Unknown names fail
 * naming the registered kernels.
 */
function resolveAttentionKernels(model: Module, ctx: PluginContext): void {
  const { registry, config } = ctx;
  const configured = registry.attentionKernelFor(config);
  const cache = new Map<string, AttentionKernel>();
  for (const m of model.modules()) {
    if (!isAttentionHost(m)) continue;
    const name = configured ? configured.name : m.attentionKernelName;
    if (!configured && name === DENSE_ATTENTION) continue;
    const claim = configured ?? registry.get('attentionKernels', name);
    if (!claim) {
      throw new DSConfigError(`attention kernel '${name}' is not registered (registered: dense${registry.names('attentionKernels').map((n) => `, ${n}`).join('')}); register the plugin that provides it (e.g. sparseAttention() from @ds/sparse-attn)`);
    }
    if (!cache.has(name)) cache.set(name, claim.value.create(ctx));
    m.setAttentionKernel(cache.get(name)!);
  }
}

/** Each trainable parameter's group index and the groups' overrides (one empty group without modelParameters). */
function paramGroups(spec: InitializeOptions['modelParameters'], params: readonly Tensor[], names: readonly string[]): { groupOf: number[]; overrides: Partial<ParamGroup>[] } {
  if (spec === undefined) return { groupOf: params.map(() => 0), overrides: [{}] };
  const groups: readonly ParamGroupSpec[] = spec.length > 0 && !('params' in (spec[0] as object)) ? [{ params: spec as readonly Tensor[] }] : (spec as readonly ParamGroupSpec[]);
  const groupOf = new Map<Tensor, number>();
  groups.forEach((g, gi) => {
    for (const p of g.params) {
      const before = groupOf.get(p);
      if (before !== undefined && before !== gi) throw new DSConfigError(`initialize: parameter '${p.name ?? '?'}' is in modelParameters groups ${before} and ${gi}; put each parameter in one group`);
      groupOf.set(p, gi);
    }
  });
  const missing = names.filter((_, i) => !groupOf.has(params[i]!));
  if (missing.length > 0) {
    throw new DSConfigError(`initialize: ${missing.length} trainable parameter(s) are in no modelParameters group (${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', ...' : ''}); add them to a group or set requiresGrad = false to freeze them`);
  }
  const overrides = groups.map((g): Partial<ParamGroup> => ({ ...(g.lr !== undefined ? { lr: g.lr } : {}), ...(g.weightDecay !== undefined ? { weightDecay: g.weightDecay } : {}) }));
  return { groupOf: params.map((p) => groupOf.get(p)!), overrides };
}

function buildOptimizer(opts: InitializeOptions, optCtx: OptimizerContext, config: DSConfig, ctx: PluginContext, overrides: Partial<ParamGroup>[]): Optimizer {
  if (opts.optimizer) return typeof opts.optimizer === 'function' ? opts.optimizer(optCtx) : opts.optimizer;
  const section = config.optimizer;
  if (!section) throw new DSConfigError("initialize: no optimizer: add an 'optimizer' section ({\"type\": \"AdamW\", \"params\": {...}}) to the ds_config or pass one to initialize()");
  const core = createCoreOptimizer(optCtx, section.type, section.params, overrides);
  if (core) return core;
  const claim = ctx.registry.optimizer(section.type);
  if (!claim) throw new DSConfigError(`optimizer type '${section.type}' is neither one of core's (Adam, AdamW, SGD, Lion, Lamb) nor provided by a registered plugin`);
  if (overrides.length > 1) throw new DSConfigError(`initialize: modelParameters groups work with core's optimizers; ${section.type} from ${claim.plugin.package} takes one group`);
  return claim.value(section.params, optCtx, ctx);
}
