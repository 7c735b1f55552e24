// @ds/launcher: the `ds` command and its pieces. Builders are pure and exported so that the
// commands DeepSpeed would run can be inspected and tested before anything is started.
export { DSLaunchError, DSLaunchUnsupportedError, type DSLaunchErrorOptions } from './errors.js';
export { launch, freePort, type LaunchOptions, type LaunchResult } from './api.js';
export { runDs, readDsEnvFiles, type CliContext } from './cli.js';
export { parseDsArgs, shellSplit, shellQuote, usage, DEFAULT_ARGS, LAUNCHERS, type DsArgs, type LauncherName } from './args.js';
export {
  parseHostfile, readHostfile, parseNodeConfigList, parseResourceFilter, parseInclusionExclusion,
  encodeWorldInfo, decodeWorldInfo, type ResourcePool, type ActiveResources,
} from './hostfile.js';
export { planWorld, rankTable, type WorldInputs, type WorldPlan, type RankSpec } from './world.js';
export {
  buildRankEnv, buildRankCommand, threadsPerRank, parseCoreList, coresForRank, bindPrefix,
  type Env, type RankEnvOptions, type RankCommandOptions, type ResolvedScript,
} from './rank-env.js';
export { planNodeRanks, rankLogPath, type NodePlanOptions } from './node-plan.js';
export {
  buildAgentArgv, buildRemoteShellCommand, buildSshCommand, buildSshCheckCommand, buildMasterAddrCommand,
  buildPdshCommand, buildOpenMpiCommand, buildSlurmCommand, collectExports, parseDsEnvFile, rankFromSchedulerEnv,
  sshOptions, EXPORT_PREFIXES, type AgentArgvOptions, type PdshCommand,
} from './multinode.js';
export { parseAgentArgs, type AgentArgs } from './agent.js';
export { NodeRun, signalExitCode, type NodeRunOptions, type NodeRunResult, type RankLaunch, type RankResult } from './node-run.js';
export { RemoteRun, type RemoteCommand, type RemoteRunOptions, type RemoteRunResult } from './remote-run.js';
export { resolveScript, resolvePackageBin } from './machine.js';
