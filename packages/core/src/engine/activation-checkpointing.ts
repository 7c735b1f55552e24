// ds_config's activation_checkpointing section applied to a model. DeepSpeed's section configures
// deepspeed.checkpointing, which a model then calls around its layers; here the engine does the
// calling: when the section is present, the first `number_checkpoints` of the model's checkpointable
// layers (Module.checkpointableLayers(): a GPT's blocks, by default the longest ModuleList) keep only
// their inputs in forward and recompute their activations in backward (@ds/tensor's checkpointLayers).
// number_checkpoints null (DeepSpeed's default) means every layer. A model that checkpoints its own
// parts (a PipelineModule with an activation checkpoint interval) only takes the storage below.
//
// How the kept inputs are stored (checkpointing.py's partition_activations and cpu_checkpointing):
// - partition_activations: a floating-point input whose size the model-parallel degree P divides is
//   flattened and only this model rank's 1/P of it is kept; before the recomputation in backward an
//   all-gather over the model group rebuilds it. Every model rank recomputes the same layers in the
//   same order, so the gathers match up. Other inputs are kept whole, as DeepSpeed does. With P = 1
//   there is nothing to split: a warning says so.
// - cpu_checkpointing: the kept input (or its piece) is copied to host memory and back to the
//   device for the recomputation; on the cpu device it is already there, and a warning says so.
// The section's other switches are rejected or noted by config/key-rules.ts.
import { checkpointLayers, isFloat, narrow, noGrad, reshape, Tensor, toDeviceRaw, type Module, type SavedTensorHooks, type SavedTensorMeta } from '@ds/tensor';

import { waitSync } from '../comm/sync-wait.js';
import type { ProcessGroup } from '../comm/types.js';
import type { ActivationCheckpointingConfig } from '../config/core-sections.js';
import { DSConfigError } from '../errors.js';

export interface CheckpointStorageContext {
  /** This rank's model-parallel (tensor-parallel) group; null when the model degree is 1. */
  model: ProcessGroup | null;
  /** The engine's device. */
  device: string;
  /** Warnings (no effect). */
  warn: (message: string) => void;
}

/** Marks the layers; returns the function that unmarks them (the engine calls it on destroy). */
export function applyActivationCheckpointing(model: Module, section: ActivationCheckpointingConfig | undefined, log: (message: string) => void, ctx?: CheckpointStorageContext): () => void {
  if (!section) return () => {};
  const saved = ctx ? checkpointStorage(section, ctx) : null;
  const marked = checkpointLayers(model, section.number_checkpoints, { saved });
  if (marked.self) {
    log(`activation checkpointing: ${model.constructor.name} checkpoints its own layers; ${describeStorage(section, ctx)}`);
    return marked.undo;
  }
  if (marked.available === 0) {
    throw new DSConfigError(
      `activation_checkpointing: ${model.constructor.name} has no layers to checkpoint; keep its repeated layers in a ModuleList or override checkpointableLayers(), or remove the section`,
    );
  }
  const shown = marked.names.length > 4 ? [...marked.names.slice(0, 3), '...', marked.names[marked.names.length - 1]] : marked.names;
  log(`activation checkpointing: ${marked.names.length} of ${marked.available} layers recompute their activations in backward (${shown.join(', ')}); ${describeStorage(section, ctx)}`);
  return marked.undo;
}

function describeStorage(section: ActivationCheckpointingConfig, ctx: CheckpointStorageContext | undefined): string {
  const parts: string[] = [];
  if (section.partition_activations && ctx?.model) parts.push(`inputs split over the ${ctx.model.size} model-parallel ranks`);
  if (section.cpu_checkpointing && ctx && ctx.device !== 'cpu') parts.push('kept in host memory');
  return parts.length ? `checkpointed ${parts.join(', ')}` : 'checkpointed inputs kept whole';
}

/** The storage the section asks for, or null when the inputs are kept as they are. */
export function checkpointStorage(section: ActivationCheckpointingConfig, ctx: CheckpointStorageContext): SavedTensorHooks | null {
  const group = section.partition_activations ? ctx.model : null;
  if (section.partition_activations && !group) {
    ctx.warn("activation_checkpointing.partition_activations has no effect: it splits checkpointed inputs over the model-parallel group, and this job's model-parallel degree is 1");
  }
  const toHost = section.cpu_checkpointing && ctx.device !== 'cpu';
  if (section.cpu_checkpointing && !toHost) {
    ctx.warn('activation_checkpointing.cpu_checkpointing has no effect on the cpu device: checkpointed inputs are already in host memory');
  }
  if (!group && !toHost) return null;
  return {
    pack(x: Tensor): Tensor {
      let kept = x;
      if (group && splits(x, group.size)) {
        const size = x.numel / group.size;
        const flat = reshape(x, [x.numel]);
        const piece = narrow(flat, 0, group.rank * size, size);
        // A copy: the piece must not hold the whole input's storage alive.
        kept = toDeviceRaw(piece, toHost ? 'cpu' : x.device, { label: 'partitioned activation checkpoint' });
        piece.dispose();
        if (flat !== x) flat.dispose();
      } else if (toHost) {
        kept = toDeviceRaw(x, 'cpu', { label: 'activation checkpoint (cpu_checkpointing)' });
      }
      return kept;
    },
    unpack(packed: Tensor, meta: SavedTensorMeta): Tensor {
      return noGrad(() => {
        const local = packed.device === meta.device ? packed : toDeviceRaw(packed, meta.device, { label: 'activation checkpoint back from host' });
        const whole = meta.shape.reduce((a, b) => a * b, 1);
        if (local.numel === whole) return local === packed ? packed : local;
        const full = Tensor.empty([whole], meta.dtype, { device: meta.device, category: 'activations', label: 'gathered activation checkpoint', uninitialized: true });
        const work = group!.allGather({ dtype: meta.dtype, array: full.operand() }, { dtype: local.dtype, array: local.operand() });
        waitSync(work, group!, 'the all-gather of a partitioned activation checkpoint (partition_activations)');
        if (local !== packed) local.dispose();
        const shaped = reshape(full, [...meta.shape]);
        if (shaped !== full) full.dispose();
        return shaped;
      });
    },
  };
}

/** DeepSpeed splits a floating-point checkpoint whose size the model degree divides (and is at least it). */
function splits(x: Tensor, parts: number): boolean {
  return isFloat(x.dtype) && x.numel >= parts && x.numel % parts === 0;
}
