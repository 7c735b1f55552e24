// What every package's tests share (STYLE.md, Tests): one multi-process helper and one numeric
// comparison. (The tiny GPT fixtures are @ds-internal/gpt-fixtures: they need @ds/tensor, this kit needs nothing of ours.)
export { withWorld, worldJson, describeWorld, freePort, lastJson, tsNodeArgs } from './world.js';
export type { RankResult, WorldResult, WorldOptions } from './world.js';
export { expectClose, closeReport, DEFAULT_TOLERANCE } from './close.js';
export type { Tolerance, CloseReport } from './close.js';
export { withNetnsWorld, netnsSupport, leftoverNamespaces } from './netns.js';
export type { NetnsWorldOptions } from './netns.js';
