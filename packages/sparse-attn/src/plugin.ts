// The plugin: `initialize({ ..., plugins: [sparseAttention()] })`. It owns the sparse_attention
// section and contributes the 'sparse' attention kernel, which applies whenever the section is
// present: initialize() then gives it to every attention module of the model.
import type { Plugin } from '@ds/core';

import { sparseAttentionSchema, sparseConfigOf, sparsityConfigFrom } from './config.js';
import { checkBlock } from './plan.js';
import { SPARSE_ATTENTION, SparseSelfAttention } from './sparse-self-attention.js';

export function sparseAttention(): Plugin {
  return {
    name: 'sparse-attn',
    package: '@ds/sparse-attn',
    configSections: { sparse_attention: sparseAttentionSchema },
    contributes: {
      attentionKernels: {
        [SPARSE_ATTENTION]: {
          appliesTo: (config) => (config as Record<string, unknown>).sparse_attention != null,
          create: (ctx) => {
            const c = sparseConfigOf(ctx.config as Record<string, unknown>);
            checkBlock(c.block, 'sparse_attention.block');
            ctx.log('info', `sparse attention: mode '${c.mode}', block ${c.block}`);
            return new SparseSelfAttention({ sparsity: (heads) => sparsityConfigFrom(c, heads) });
          },
        },
      },
    },
  };
}
