// The flops profiler: per-module parameters, FLOPs, MACs and forward latency (flops-profiler.ts,
// with the per-type formulas in flop-formulas.ts), the profile text (report.ts) and the engine's
// profile_step hook (engine-profiler.ts).
export { FlopsProfiler, flatten } from './flops-profiler.js';
export type { ModuleProfile, FlopsProfilerOptions } from './flops-profiler.js';
export { ownCount, attentionCount } from './flop-formulas.js';
export type { OpCount } from './flop-formulas.js';
export { formatProfile, profileFigures } from './report.js';
export type { StepProfile, ProfileFigures, ReportOptions } from './report.js';
export { EngineProfiler } from './engine-profiler.js';
