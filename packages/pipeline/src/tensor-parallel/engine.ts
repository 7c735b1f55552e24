// The engine of a tensor-parallel model that is not a pipeline: core's Engine (forward / backward /
// step, gradient reduction over the data-parallel group) with the checks that tensor parallelism
// adds. What core's engine would get wrong with a model degree above 1 is rejected by name:
//   - fp16 loss scaling: an overflow on one model rank must skip the step on all of them;
//   - gradient_clipping: the global norm must sum the shards' squares over the model group
//     (replicated parameters once);
//   - ZeRO stages: untested with a model group here;
//   - checkpoints: core's files are named by data-parallel rank, so the model ranks of one data rank
//     would write the same names (DeepSpeed's mp_rank_NN files are not built here).
import { DSUnsupportedError, Engine, type EngineParts, type LoadCheckpointOptions, type LoadCheckpointResult, type SaveCheckpointOptions } from '@ds/core';

/** The config checks of tensor parallelism (model degree > 1) shared by both engines; `who` names the engine. */
export function checkTensorParallelConfig(parts: EngineParts, who: string): void {
  const degree = parts.groups.topology.degrees.model;
  if (degree === 1) return;
  const { config } = parts;
  if (config.fp16.enabled) throw new DSUnsupportedError(`${who}: fp16 loss scaling with ${degree}-way tensor parallelism (agreeing on overflow over the model group) is not built in this version of @ds/pipeline; use bf16 or fp32`);
  if (config.gradient_clipping > 0) {
    throw new DSUnsupportedError(`${who}: gradient_clipping ${config.gradient_clipping} with ${degree}-way tensor parallelism needs the norm summed over the model group, which core's step does not compute; set gradient_clipping to 0`);
  }
  if (parts.state.stage > 0) throw new DSUnsupportedError(`${who}: ZeRO stage ${parts.state.stage} with ${degree}-way tensor parallelism is not built in this version of @ds/pipeline; remove zero_optimization or use stage 0`);
}

export class TensorParallelEngine extends Engine {
  static create(parts: EngineParts): TensorParallelEngine {
    checkTensorParallelConfig(parts, 'tensor parallelism');
    return new TensorParallelEngine(parts);
  }

  override saveCheckpoint(_dir: string, _opts?: SaveCheckpointOptions): Promise<string> {
    return Promise.reject(new DSUnsupportedError('tensor parallelism: saveCheckpoint needs one file per model-parallel rank (DeepSpeed\'s mp_rank_NN layout), which this version of @ds/pipeline does not write yet'));
  }
  override loadCheckpoint(_dir: string, _opts?: LoadCheckpointOptions): Promise<LoadCheckpointResult> {
    return Promise.reject(new DSUnsupportedError('tensor parallelism: loadCheckpoint needs one file per model-parallel rank (DeepSpeed\'s mp_rank_NN layout), which this version of @ds/pipeline does not read yet'));
  }
}
