// The sparseAttention() plugin: its sparse_attention section (DeepSpeed's keys and defaults, keys the
// mode does not read rejected by name), the kernel it contributes switching every attention module
// of a GPT through initialize() with no model change, a bidirectional encoder layer, and the
// pad/unpad helper.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';
import { TINY_GPT, tinyConfig, trainSteps } from '@ds-internal/gpt-fixtures';
import { createRegistry, DSConfigError, initialize, validateConfig } from '@ds/core';
import { CausalSelfAttention, fromArray, Generator, GPT, isAttentionHost, tidy, type Tensor } from '@ds/tensor';

import { FixedSparsityConfig, padToBlockSize, sparseAttention, SparseSelfAttention, sparseConfigOf, unpadSequenceOutput } from '../src/index.js';

const section = (s: unknown) => validateConfig({ train_batch_size: 1, sparse_attention: s } as never, { registry: createRegistry([sparseAttention()]) }).config.sparse_attention as Record<string, unknown>;
function problems(s: unknown): string {
  try {
    section(s);
  } catch (err) {
    expect(err).toBeInstanceOf(DSConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the section to be rejected');
}

describe('sparse_attention section', () => {
  it("fills DeepSpeed's defaults for the mode (fixed when no mode is given)", () => {
    expect(section({})).toEqual({ mode: 'fixed', block: 16, different_layout_per_head: false, num_local_blocks: 4, num_global_blocks: 1, attention: 'bidirectional', horizontal_global_attention: false, num_different_global_patterns: 1 });
    expect(section({ mode: 'bigbird', block: 32 })).toEqual({ mode: 'bigbird', block: 32, different_layout_per_head: false, num_random_blocks: 0, num_sliding_window_blocks: 3, num_global_blocks: 1, attention: 'bidirectional' });
    expect(section({ mode: 'variable' })).toMatchObject({ local_window_blocks: [4], global_block_indices: [0], global_block_end_indices: null, num_random_blocks: 0 });
    expect(section({ mode: 'dense' })).toEqual({ mode: 'dense', block: 16 });
  });

  it('rejects keys the mode does not read, unknown keys and unknown modes, by name', () => {
    expect(problems({ mode: 'bigbird', num_local_blocks: 4 })).toMatch(/sparse_attention\.num_local_blocks.*'num_local_blocks' has no effect in mode 'bigbird'/);
    expect(problems({ mode: 'dense', different_layout_per_head: true })).toMatch(/'different_layout_per_head' has no effect in mode 'dense'/);
    expect(problems({ mode: 'fixed', num_local_blcks: 4 })).toMatch(/num_local_blcks/);
    expect(problems({ mode: 'longformer' })).toMatch(/sparse_attention\.mode/);
    expect(problems({ mode: 'fixed', num_local_blocks: 4, num_global_blocks: 3 })).toMatch(/num_local_blocks 4 must be a multiple of num_global_blocks 3/);
    expect(problems({ mode: 'fixed', num_different_global_patterns: 2 })).toMatch(/num_different_global_patterns 2 > 1 needs different_layout_per_head true/);
  });

  it('fails when the section is present and the plugin is not registered, naming the package', () => {
    expect(() => validateConfig({ train_batch_size: 1, sparse_attention: { mode: 'fixed' } } as never, { registry: createRegistry([]) })).toThrow(/@ds\/sparse-attn/);
  });

  it('rejects a block size the kernels do not take when the kernel is made', async () => {
    const model = new GPT({ ...TINY_GPT, blockSize: 48, attentionKernel: 'dense' });
    const config = { train_micro_batch_size_per_gpu: 1, optimizer: { type: 'AdamW', params: { lr: 1e-3 } }, sparse_attention: { mode: 'dense', block: 12 } };
    await expect(initialize({ model, config, plugins: [sparseAttention()] })).rejects.toThrow(/sparse_attention\.block: block size 12 is not supported by the block-sparse kernels; use one of 1, 2, 4/);
  });
});

const fp32Config = (sparse?: Record<string, unknown>) => ({
  train_micro_batch_size_per_gpu: 2,
  gradient_accumulation_steps: 2,
  gradient_clipping: 0.5,
  optimizer: { type: 'AdamW', params: { lr: 1e-2, weight_decay: 0.01 } },
  ...(sparse ? { sparse_attention: sparse } : {}),
});

describe('the GPT through initialize()', () => {
  it('every attention module gets the sparse kernel from the config; a dense layout trains exactly like dense attention', async () => {
    const losses = async (sparse?: Record<string, unknown>) => {
      const model = new GPT({ ...TINY_GPT, nLayer: 2 });
      const { engine } = await initialize({ model, config: fp32Config(sparse), plugins: [sparseAttention()] });
      const hosts = [...model.modules()].flatMap((m) => (isAttentionHost(m) ? [m] : []));
      expect(hosts.length).toBe(2);
      for (const m of hosts) expect(m.attentionKernelName).toBe(sparse ? 'sparse' : 'dense');
      return trainSteps(engine, 0, 4);
    };
    const dense = await losses();
    const sparse = await losses({ mode: 'dense', block: 4 });
    expectClose(sparse, dense, { rtol: 1e-4, atol: 1e-5 }, 'losses, dense layout vs dense attention');
  });

  it('trains with a fixed layout at a longer sequence, the loss falling', async () => {
    const t = 64;
    const model = new GPT({ ...TINY_GPT, blockSize: t });
    const { engine } = await initialize({ model, config: fp32Config({ mode: 'fixed', block: 8, num_local_blocks: 2, attention: 'unidirectional' }), plugins: [sparseAttention()] });
    const l = await trainSteps(engine, 0, 8, 0, t);
    expect(l[l.length - 1]!).toBeLessThan(l[0]! * 0.9);
  });
});

describe('the GPT under bf16 autocast', () => {
  it('trains with a bigbird layout and the fixtures\' bf16 config, the loss falling', async () => {
    const t = 32;
    const model = new GPT({ ...TINY_GPT, blockSize: t });
    const { engine } = await initialize({ model, config: { ...tinyConfig(2), sparse_attention: { mode: 'bigbird', block: 8, num_random_blocks: 1 } }, plugins: [sparseAttention()] });
    const l = await trainSteps(engine, 0, 8, 0, t);
    expect(l.every(Number.isFinite)).toBe(true);
    expect(l[7]!).toBeLessThan(l[0]! * 0.9);
  });
});

describe('the GPT at seq 2048', () => {
  it('trains with sparse_attention (fixed, block 16, unidirectional) in its config, the loss falling', async () => {
    const t = 2048;
    const model = new GPT({ vocabSize: 32, blockSize: t, nLayer: 2, nHead: 2, nEmbd: 16, seed: 3 });
    const config = { train_micro_batch_size_per_gpu: 1, gradient_accumulation_steps: 1, gradient_clipping: 1, optimizer: { type: 'AdamW', params: { lr: 1e-2 } }, sparse_attention: { mode: 'fixed', block: 16, num_local_blocks: 4, attention: 'unidirectional' } };
    const { engine } = await initialize({ model, config, plugins: [sparseAttention()] });
    const l = await trainSteps(engine, 0, 12, 0, t);
    console.log(`seq ${t} losses: ${l.map((x) => x.toFixed(3)).join(' ')}`);
    expect(l[11]!).toBeLessThan(l[0]! * 0.7);
  }, 120_000);
});

describe('a bidirectional (BERT-like) layer', () => {
  it('uses the kernel unchanged: a dense layout equals the dense kernel, bidirectional', () => {
    const x = tidy(() => fromArray(Array.from({ length: 2 * 16 * 8 }, (_, i) => Math.sin(i * 0.37)), [2, 16, 8]).keep());
    const make = (kernel?: SparseSelfAttention) => new CausalSelfAttention({ nEmbd: 8, nHead: 2, causal: false, kernel, generator: new Generator(5) });
    const sparse = new SparseSelfAttention({ sparsity: (h) => new FixedSparsityConfig(h, { block: 4, numLocalBlocks: 4 }) });
    const a = make(sparse).call(x).toArray();
    const b = make().call(x).toArray();
    expectClose(a, b, { rtol: 1e-5, atol: 1e-6 }, 'one window covering the sequence = dense');
    expect(sparse.layoutFor(2, 16).density).toBe(1);
  });

  it('slices a master layout for shorter sequences (DeepSpeed max_seq_length)', () => {
    const k = new SparseSelfAttention({ sparsity: new FixedSparsityConfig(1, { block: 4 }), maxSeqLength: 40 });
    const master = new FixedSparsityConfig(1, { block: 4 }).makeLayout(40);
    expect(k.layoutFor(1, 24).rows(0)).toEqual(master.rows(0).slice(0, 6).map((r) => r.slice(0, 6)));
    expect(() => k.layoutFor(1, 44)).toThrow(/sequence length 44 exceeds maxSeqLength 40/);
    expect(() => k.layoutFor(1, 22)).toThrow(/sequence length 22 is not a multiple of the block size 4; pad the batch with padToBlockSize/);
  });
});

describe('padToBlockSize / unpadSequenceOutput', () => {
  it('pads ids, mask and positions to a block multiple and cuts the output back', () => {
    const ids = fromArray([5, 6, 7, 8, 9, 10], [2, 3], { dtype: 'i32' });
    const mask = fromArray([1, 1, 1, 1, 1, 0], [2, 3]);
    const p = padToBlockSize(4, { inputIds: ids, attentionMask: mask, positionIds: fromArray([0, 1, 2, 0, 1, 2], [2, 3], { dtype: 'i32' }) }, { padTokenId: 1 });
    expect(p.padLen).toBe(1);
    expect(p.inputIds!.toArray()).toEqual([5, 6, 7, 1, 8, 9, 10, 1]);
    expect(p.attentionMask!.toArray()).toEqual([1, 1, 1, 0, 1, 1, 0, 0]);
    expect(p.positionIds!.toArray()).toEqual([0, 1, 2, 1, 0, 1, 2, 1]);
    const out: Tensor = fromArray(Array.from({ length: 16 }, (_, i) => i), [2, 4, 2]);
    expect(unpadSequenceOutput(p.padLen, out).toArray()).toEqual([0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
    expect(padToBlockSize(3, { inputIds: ids }).padLen).toBe(0);
  });

  it('pads embeddings with the embeddings of the pad token', () => {
    const emb = fromArray([1, 2, 3, 4], [1, 2, 2]);
    const p = padToBlockSize(4, { inputsEmbeds: emb }, { padTokenId: 0, embed: (pad) => fromArray(new Array(pad.numel * 2).fill(9), [1, pad.shape[1]!, 2]) });
    expect(p.inputsEmbeds!.toArray()).toEqual([1, 2, 3, 4, 9, 9, 9, 9]);
    expect(() => padToBlockSize(4, { inputsEmbeds: emb })).toThrow(/inputsEmbeds needs opts\.embed/);
  });
});

void sparseConfigOf;
