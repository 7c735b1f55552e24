// Names @ds/core itself owns; a plugin may not claim them. Kept in a leaf module so that the
// plugin registry and the config schema can both read it without importing each other.

/** Optimizer `type`s built into core, as DeepSpeed spells them (matched case-insensitively). */
export const CORE_OPTIMIZER_TYPES = ['Adam', 'AdamW', 'SGD', 'Lion', 'Lamb'] as const;
export type CoreOptimizerType = (typeof CORE_OPTIMIZER_TYPES)[number];

/** LR scheduler `type`s built into core (DeepSpeed's lr_schedules.py). */
export const CORE_SCHEDULER_TYPES = ['WarmupLR', 'WarmupDecayLR', 'WarmupCosineLR', 'OneCycle', 'LRRangeTest'] as const;
export type CoreSchedulerType = (typeof CORE_SCHEDULER_TYPES)[number];
