export { ADAM_K, modelStateBytes, estimateZero2, estimateZero3 } from './estimate.js';
export type { ZeroStage, EstimateRow, EstimateInput } from './estimate.js';
