export { DSConfigError, DSCommError, DSTimeoutError, DSCheckpointError, DSPluginError } from './errors.js';
export type { ConfigProblem } from './errors.js';
export { DSError, isDSError } from '@ds/tensor';
