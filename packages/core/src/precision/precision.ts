// The training precision a config selects, and the loss scaler that goes with it (DeepSpeed's
// runtime/config.py get_loss_scale / get_initial_dynamic_scale / get_dynamic_loss_scale_args):
// fp16 with loss_scale 0 scales dynamically from 2 ** initial_scale_power; fp16 with loss_scale > 0
// uses that static scale; bf16 and fp32 use a static scale of 1.
import type { Bf16Config, Fp16Config } from '../config/core-sections.js';
import { DSConfigError } from '../errors.js';
import { DynamicLossScaler, StaticLossScaler, type LossScaler } from './loss-scaler.js';

export type TrainingDtype = 'fp16' | 'bf16' | 'fp32';

export interface PrecisionConfig {
  fp16?: Partial<Fp16Config>;
  bf16?: Partial<Bf16Config>;
}

export interface Precision {
  dtype: TrainingDtype;
  /** fp16.auto_cast: cast floating inputs to half in forward. */
  autoCast: boolean;
  /** bf16.immediate_grad_update. */
  immediateGradUpdate: boolean;
}

export function resolvePrecision(config: PrecisionConfig): Precision {
  if (config.fp16?.enabled && config.bf16?.enabled) {
    // validateConfig reports this as a config problem; this guards direct callers.
    const message = 'bfloat16 and fp16 modes cannot be simultaneously enabled';
    throw new DSConfigError(`${message}; set bf16.enabled or fp16.enabled to false`, [{ path: 'bf16.enabled', message, value: true }]);
  }
  if (config.fp16?.enabled) return { dtype: 'fp16', autoCast: config.fp16.auto_cast ?? false, immediateGradUpdate: false };
  if (config.bf16?.enabled) return { dtype: 'bf16', autoCast: false, immediateGradUpdate: config.bf16.immediate_grad_update ?? false };
  return { dtype: 'fp32', autoCast: false, immediateGradUpdate: false };
}

export interface LossScalerFactoryOptions {
  log?: (message: string) => void;
}

/** The loss scaler for a validated config's fp16/bf16 sections. */
export function createLossScaler(config: PrecisionConfig, options: LossScalerFactoryOptions = {}): LossScaler {
  const fp16 = config.fp16;
  if (resolvePrecision(config).dtype !== 'fp16' || !fp16) return new StaticLossScaler(1);
  const staticScale = fp16.loss_scale ?? 0;
  if (staticScale > 0) return new StaticLossScaler(staticScale);
  return new DynamicLossScaler({
    initScale: 2 ** (fp16.initial_scale_power ?? 16),
    scaleWindow: fp16.loss_scale_window ?? 1000,
    minScale: fp16.min_loss_scale ?? 1,
    hysteresis: fp16.hysteresis ?? 2,
    consecutiveHysteresis: fp16.consecutive_hysteresis ?? false,
    ...(options.log ? { log: options.log } : {}),
  });
}
