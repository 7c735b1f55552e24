// ds_config's activation_checkpointing section applied to a model. DeepSpeed's section configures
// deepspeed.checkpointing, which a model then calls around its layers; here the engine does the
// calling: when the section is present, the first `number_checkpoints` of the model's checkpointable
// layers (Module.checkpointableLayers(): a GPT's blocks, by default the longest ModuleList) keep only
// their inputs in forward and recompute their activations in backward (@ds/tensor's checkpointLayers).
// number_checkpoints null (DeepSpeed's default) means every layer. The section's other switches are
// rejected or noted by config/key-rules.ts.
import { checkpointLayers, type Module } from '@ds/tensor';

import type { ActivationCheckpointingConfig } from '../config/core-sections.js';
import { DSConfigError } from '../errors.js';

/** Marks the layers; returns the function that unmarks them (the engine calls it on destroy). */
export function applyActivationCheckpointing(model: Module, section: ActivationCheckpointingConfig | undefined, log: (message: string) => void): () => void {
  if (!section) return () => {};
  const marked = checkpointLayers(model, section.number_checkpoints);
  if (marked.available === 0) {
    throw new DSConfigError(
      `activation_checkpointing: ${model.constructor.name} has no layers to checkpoint; keep its repeated layers in a ModuleList or override checkpointableLayers(), or remove the section`,
    );
  }
  const shown = marked.names.length > 4 ? [...marked.names.slice(0, 3), '...', marked.names[marked.names.length - 1]] : marked.names;
  log(`activation checkpointing: ${marked.names.length} of ${marked.available} layers recompute their activations in backward (${shown.join(', ')})`);
  return marked.undo;
}
