export { DynamicLossScaler, StaticLossScaler } from './loss-scaler.js';
export type { LossScaler, LossScalerState, DynamicLossScalerOptions } from './loss-scaler.js';
export { resolvePrecision, createLossScaler } from './precision.js';
export type { TrainingDtype, Precision, PrecisionConfig, LossScalerFactoryOptions } from './precision.js';
