// The engine's side of `flops_profiler`: DeepSpeed profiles on global rank 0 when global_steps ==
// profile_step (the count of optimizer steps done, so the default 1 profiles the second step, after
// a warm-up one). Every forward of that step restarts the module count (with gradient accumulation
// the last micro step is the one reported, as in DeepSpeed); backward and the optimizer step are
// timed around the engine's calls; after the step the profile is printed through the engine's log
// or written to output_file, and the hooks are gone.
//
// The peak the MFU is measured against is probed once, after the timed step: the cpu kernels'
// probePeak on the engine's threads (bf16 dot product for bf16 models where the cpu has it, f32 FMA
// otherwise; the sim device runs the cpu kernels, so it gets the cpu's figure). Other devices
// report no MFU.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';

import type { CpuKernels, Module, Runtime } from '@ds/tensor';

import type { FlopsProfilerConfig } from '../config/core-sections.js';
import type { Log } from '../monitor/log.js';
import { FlopsProfiler, type ModuleProfile } from './flops-profiler.js';
import { formatProfile, type StepProfile } from './report.js';

export type ProfiledPhase = 'forward' | 'backward' | 'step';

export interface EngineProfilerContext {
  module: Module;
  rank: number;
  worldSize: number;
  dataParallelSize: number;
  modelParallelSize: number;
  microBatch: number;
  runtime: Runtime;
  device: string;
  paramDtype: 'bf16' | 'f16' | 'f32';
  log: Log;
}

/** Seconds the peak probe runs for: long enough to reach the clock the cores hold, short beside a step. */
const PROBE_SECONDS = 0.3;

export class EngineProfiler {
  private readonly profiler: FlopsProfiler;
  private done = false;
  private readonly ms: Record<ProfiledPhase, number> = { forward: 0, backward: 0, step: 0 };
  private readonly t0: Partial<Record<ProfiledPhase, number>> = {};
  private profiledStep: number | null = null;
  private tree: ModuleProfile | null = null;
  /** The last profile made (for tests and tools); null before profile_step. */
  lastProfile: StepProfile | null = null;

  constructor(
    private readonly cfg: FlopsProfilerConfig,
    private readonly ctx: EngineProfilerContext,
  ) {
    const sync = ctx.device === 'cpu' ? undefined : () => ctx.runtime.device(ctx.device).synchronize();
    this.profiler = new FlopsProfiler(ctx.module, sync ? { synchronize: sync } : {});
  }

  /** The profiler for this config, or null when it is off or this is not rank 0 (DeepSpeed profiles on rank 0). */
  static create(cfg: FlopsProfilerConfig, ctx: EngineProfilerContext): EngineProfiler | null {
    return cfg.enabled && ctx.rank === 0 ? new EngineProfiler(cfg, ctx) : null;
  }

  /** Starts timing a phase; a forward at profile_step also starts the module count. */
  begin(phase: ProfiledPhase, globalSteps: number): void {
    if (this.done || globalSteps !== this.cfg.profile_step) return;
    if (phase !== 'forward' && this.profiledStep === null) return;
    if (phase === 'forward') {
      this.profiledStep = globalSteps;
      this.profiler.start();
    }
    this.sync();
    this.t0[phase] = performance.now();
  }

  /** Ends a phase; after the step of the profiled batch the profile is reported. */
  end(phase: ProfiledPhase): void {
    const t0 = this.t0[phase];
    if (t0 === undefined) return;
    this.sync();
    this.ms[phase] = performance.now() - t0;
    delete this.t0[phase];
    if (phase === 'forward') this.tree = this.profiler.stop();
    if (phase === 'step') this.report();
  }

  private sync(): void {
    if (this.ctx.device !== 'cpu') this.ctx.runtime.device(this.ctx.device).synchronize();
  }

  private report(): void {
    this.done = true;
    if (!this.tree || this.profiledStep === null) return;
    const c = this.ctx;
    const profile: StepProfile = {
      step: this.profiledStep,
      worldSize: c.worldSize,
      dataParallelSize: c.dataParallelSize,
      modelParallelSize: c.modelParallelSize,
      microBatch: c.microBatch,
      tree: this.tree,
      fwdMs: this.ms.forward,
      bwdMs: this.ms.backward,
      stepMs: this.ms.step,
      recomputeFwdFactor: this.cfg.recompute_fwd_factor,
      peak: this.peak(),
    };
    this.lastProfile = profile;
    const lines = formatProfile(profile, { moduleDepth: this.cfg.module_depth, topModules: this.cfg.top_modules, detailed: this.cfg.detailed });
    const file = this.cfg.output_file;
    if (file) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, `${lines.join('\n')}\n`);
      c.log(`flops profiler: the profile of step ${profile.step} is in ${file}`);
    } else {
      for (const l of lines) c.log(l);
    }
  }

  /** This rank's measured peak: the cpu kernels' probe times their thread count. */
  private peak(): StepProfile['peak'] {
    const { runtime, device, paramDtype } = this.ctx;
    if (device !== 'cpu' && device !== 'sim') return { missing: `no peak probe for the '${device}' device (the cpu kernels have one)` };
    const kernels = runtime.kernels('cpu') as Partial<CpuKernels>;
    if (typeof kernels.probePeak !== 'function') return { missing: `the '${kernels.name ?? 'cpu'}' kernels have no peak probe (the native cpu kernels do)` };
    const probe = kernels.probePeak(PROBE_SECONDS);
    const threads = runtime.kernels('cpu').getNumThreads();
    // A cpu without bf16 dot-product instructions (AVX2 only) runs bf16 GEMMs on f32 FMA: its probe says 0 for bf16.
    const bf16 = paramDtype === 'bf16' && probe.bf16DotGflops > 0;
    const perCore = (bf16 ? probe.bf16DotGflops : probe.f32FmaGflops) * 1e9;
    const kind = bf16 ? 'bf16 dot product' : paramDtype === 'bf16' ? 'f32 FMA (no bf16 dot instructions on this cpu: bf16 GEMMs run on f32 FMA)' : 'f32 FMA';
    if (!(perCore > 0)) return { missing: `the cpu peak probe measured ${perCore / 1e9} GFLOPS` };
    const what = `${kind} peak measured now, ${(perCore / 1e9).toFixed(1)} GFLOPS per core x ${threads} thread(s)`;
    return { flops: perCore * threads, what };
  }
}
