// Loss scaling for fp16 training, following DeepSpeed's runtime/fp16/loss_scaler.py.
//
// Dynamic scaling, per applied or skipped optimizer step, with `update(overflow)`:
// - overflow: when hysteresis is used up (hysteresis == 1, or the remaining count is 1) the scale
//   drops to max(scale / factor, min_loss_scale), and if it already sat at min_loss_scale that is an
//   error; otherwise only the remaining hysteresis drops by one. Either way the step is skipped and
//   this iteration becomes the last overflow.
// - no overflow: with consecutive_hysteresis the remaining hysteresis is refilled at once; whenever
//   (iteration - last overflow iteration) is a multiple of loss_scale_window the scale grows by the
//   factor (and, without consecutive_hysteresis, the hysteresis is refilled then).
//
// Deliberate difference: DeepSpeed's non-ZeRO FP16_Optimizer carries its own simpler copy of this
// logic without hysteresis; here one scaler serves every optimizer path, so `hysteresis` always applies.
import { DSError } from '@ds/tensor';

import { DSConfigError } from '../errors.js';

/** The ds_config key a scaler option comes from (precision.ts), named in errors. */
const CONFIG_KEY: Record<string, string> = {
  initScale: 'fp16.initial_scale_power',
  minScale: 'fp16.min_loss_scale',
  scaleWindow: 'fp16.loss_scale_window',
  hysteresis: 'fp16.hysteresis',
  lossScale: 'fp16.loss_scale',
};

function badOption(scaler: string, name: string, value: number, must: string): DSConfigError {
  const key = CONFIG_KEY[name];
  const message = `${name} must be ${must}, got ${value}`;
  return new DSConfigError(`${scaler}: ${message}${key ? ` (set by ${key} in a ds_config)` : ''}`, [{ path: key ?? `${scaler}.${name}`, message, value }]);
}

export interface LossScaler {
  readonly dynamic: boolean;
  /** The factor the loss is multiplied by before backward. */
  readonly lossScale: number;
  /** Records whether this step's gradients overflowed; returns true when the step must be skipped. */
  update(overflow: boolean): boolean;
  stateDict(): LossScalerState;
  loadStateDict(state: LossScalerState): void;
}

export interface LossScalerState {
  cur_scale: number;
  cur_iter: number;
  last_overflow_iter: number;
  cur_hysteresis: number;
}

export interface DynamicLossScalerOptions {
  /** Starting scale; DeepSpeed's default for fp16 is 2 ** initial_scale_power = 2 ** 16. */
  initScale?: number;
  scaleFactor?: number;
  /** Clean iterations between increases (fp16.loss_scale_window). */
  scaleWindow?: number;
  minScale?: number;
  /** Overflows tolerated before the scale drops (fp16.hysteresis, DeepSpeed's `delayed_shift`). */
  hysteresis?: number;
  consecutiveHysteresis?: boolean;
  /** Throw when an overflow happens at min_loss_scale (DeepSpeed's default); false keeps the minimum. */
  raiseErrorAtMinScale?: boolean;
  /** Receives DeepSpeed's overflow messages. */
  log?: (message: string) => void;
}

export class DynamicLossScaler implements LossScaler {
  readonly dynamic = true;
  readonly scaleFactor: number;
  readonly scaleWindow: number;
  readonly minScale: number;
  readonly hysteresis: number;
  readonly consecutiveHysteresis: boolean;
  private readonly raiseErrorAtMinScale: boolean;
  private readonly log: (message: string) => void;
  private curScale: number;
  private curIter = 0;
  private lastOverflowIter = -1;
  private curHysteresis: number;

  constructor(options: DynamicLossScalerOptions = {}) {
    this.curScale = options.initScale ?? 2 ** 16;
    this.scaleFactor = options.scaleFactor ?? 2;
    this.scaleWindow = options.scaleWindow ?? 1000;
    this.minScale = options.minScale ?? 1;
    this.hysteresis = options.hysteresis ?? 2;
    this.consecutiveHysteresis = options.consecutiveHysteresis ?? false;
    this.raiseErrorAtMinScale = options.raiseErrorAtMinScale ?? true;
    this.log = options.log ?? (() => {});
    this.curHysteresis = this.hysteresis;
    for (const [name, v] of [['initScale', this.curScale], ['scaleFactor', this.scaleFactor], ['minScale', this.minScale]] as const) {
      if (!(v > 0) || !Number.isFinite(v)) throw badOption('DynamicLossScaler', name, v, 'a positive finite number');
    }
    if (!Number.isInteger(this.scaleWindow) || this.scaleWindow < 1) throw badOption('DynamicLossScaler', 'scaleWindow', this.scaleWindow, 'an integer >= 1');
    if (!Number.isInteger(this.hysteresis) || this.hysteresis < 1) throw badOption('DynamicLossScaler', 'hysteresis', this.hysteresis, 'an integer >= 1');
  }

  get lossScale(): number {
    return this.curScale;
  }

  /** Overflow tolerance left before the next decrease. */
  get remainingHysteresis(): number {
    return this.curHysteresis;
  }

  update(overflow: boolean): boolean {
    if (overflow) this.onOverflow();
    else this.onCleanStep();
    this.curIter += 1;
    return overflow;
  }

  private onOverflow(): void {
    if (this.hysteresis === 1 || this.curHysteresis === 1) {
      if (this.curScale === this.minScale && this.raiseErrorAtMinScale) {
        throw new DSError('Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.', {
          code: 'DS_LOSS_SCALE_MIN',
        });
      }
      const next = Math.max(this.curScale / this.scaleFactor, this.minScale);
      this.log(`OVERFLOW! Skipping step. Attempted loss scale: ${this.curScale}, reducing to ${next}`);
      this.curScale = next;
    } else {
      this.log(`OVERFLOW! Skipping step. Attempted loss scale: ${this.curScale}, but hysteresis is ${this.curHysteresis}. Reducing hysteresis to ${this.curHysteresis - 1}`);
      this.curHysteresis -= 1;
    }
    this.lastOverflowIter = this.curIter;
  }

  private onCleanStep(): void {
    if (this.consecutiveHysteresis) this.curHysteresis = this.hysteresis;
    if ((this.curIter - this.lastOverflowIter) % this.scaleWindow === 0) {
      if (!this.consecutiveHysteresis) this.curHysteresis = this.hysteresis;
      this.curScale *= this.scaleFactor;
    }
  }

  stateDict(): LossScalerState {
    return { cur_scale: this.curScale, cur_iter: this.curIter, last_overflow_iter: this.lastOverflowIter, cur_hysteresis: this.curHysteresis };
  }

  loadStateDict(state: LossScalerState): void {
    for (const key of ['cur_scale', 'cur_iter', 'last_overflow_iter', 'cur_hysteresis'] as const) {
      if (typeof state?.[key] !== 'number' || !Number.isFinite(state[key])) {
        throw new DSError(`loss scaler state: '${key}' must be a finite number, got ${JSON.stringify(state?.[key])}`, { code: 'DS_CHECKPOINT' });
      }
    }
    this.curScale = state.cur_scale;
    this.curIter = state.cur_iter;
    this.lastOverflowIter = state.last_overflow_iter;
    this.curHysteresis = state.cur_hysteresis;
  }
}

/** A fixed scale (fp16.loss_scale > 0, or 1 for bf16/fp32). Overflowed steps are still skipped. */
export class StaticLossScaler implements LossScaler {
  readonly dynamic = false;
  private curIter = 0;

  constructor(readonly lossScale: number = 1) {
    if (!(lossScale > 0) || !Number.isFinite(lossScale)) throw badOption('StaticLossScaler', 'lossScale', lossScale, 'a positive finite number');
  }

  update(overflow: boolean): boolean {
    this.curIter += 1;
    return overflow;
  }

  stateDict(): LossScalerState {
    return { cur_scale: this.lossScale, cur_iter: this.curIter, last_overflow_iter: -1, cur_hysteresis: 0 };
  }

  loadStateDict(state: LossScalerState): void {
    if (typeof state?.cur_iter === 'number') this.curIter = state.cur_iter;
  }
}
