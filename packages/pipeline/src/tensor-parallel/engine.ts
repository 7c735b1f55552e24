// The engine of a tensor-parallel model that is not a pipeline: core's Engine (forward / backward /
// step, gradient reduction over the data-parallel group) with the checks that tensor parallelism
// adds. Core's step sums the gradient norm and the fp16 overflow flag over the model group (the
// layers declare which parameters are split, modelParallelSplits), so clipping and loss scaling
// agree on every model rank; core's checkpoints write one mp_rank_NN file per model rank. ZeRO
// stages 1 and 2 partition each model rank's parameters over its data group, and their step sums
// the norm and the overflow flag over the model group too (@ds/zero's ShardedState, counting each
// parameter once). Rejected by name with a model degree above 1: ZeRO stage 3 (its parameter
// gathers inside the tensor-parallel layers' forward are not tested here).
import { DSUnsupportedError, Engine, type EngineParts } from '@ds/core';

/** The config checks of tensor parallelism (model degree > 1) shared by both engines; `who` names the engine. */
export function checkTensorParallelConfig(parts: EngineParts, who: string): void {
  const degree = parts.groups.topology.degrees.model;
  if (degree === 1) return;
  if (parts.state.stage > 2) {
    throw new DSUnsupportedError(
      `${who}: ZeRO stage ${parts.state.stage} with ${degree}-way tensor parallelism is not built in this version of @ds/pipeline (stage 3's parameter gathers with tensor-parallel layers are untested); use zero_optimization.stage 1 or 2`,
    );
  }
}

export class TensorParallelEngine extends Engine {
  static create(parts: EngineParts): TensorParallelEngine {
    checkTensorParallelConfig(parts, 'tensor parallelism');
    return new TensorParallelEngine(parts);
  }
}
