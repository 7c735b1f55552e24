// Partition rules worked by hand from DeepSpeed's runtime/utils.py (partition_uniform,
// partition_balanced) and PipelineModule._partition_layers (parameters, uniform, type:regex).
import { describe, expect, it } from 'vitest';

import { DSConfigError, DSUnsupportedError } from '@ds/core';
import { Linear, Module, type Tensor } from '@ds/tensor';

import { LayerSpec, partitionBalanced, partitionLayers, partitionUniform, prefixSum } from '../src/index.js';

describe('partitionUniform', () => {
  it('gives the first layers % stages stages one layer more', () => {
    expect(partitionUniform(10, 4)).toEqual([0, 3, 6, 8, 10]); // 3, 3, 2, 2
    expect(partitionUniform(8, 4)).toEqual([0, 2, 4, 6, 8]);
    expect(partitionUniform(7, 2)).toEqual([0, 4, 7]);
  });
  it('with fewer layers than stages, leaves the last stages empty (DeepSpeed does; PipelineModule rejects it)', () => {
    expect(partitionUniform(3, 4)).toEqual([0, 1, 2, 3, 3]);
  });
});

describe('partitionBalanced', () => {
  it('prefix sums are inclusive', () => {
    expect(prefixSum([3, 4, 5])).toEqual([3, 7, 12]);
  });
  it('minimises the heaviest stage', () => {
    // [1 2 3 | 4 5 | 6]: 6, 9, 6; no split keeps every stage under 9 (5 + 6 > 8 and 1 + 2 + 3 + 4 > 8).
    expect(partitionBalanced([1, 2, 3, 4, 5, 6], 3)).toEqual([0, 3, 5, 6]);
    // A heavy first layer stands alone: [4 | 1 1 1 1].
    expect(partitionBalanced([4, 1, 1, 1, 1], 2)).toEqual([0, 1, 5]);
    expect(partitionBalanced([1, 1, 1, 1], 2)).toEqual([0, 2, 4]);
    // Equal weights over 3 stages: 2, 2, 2.
    expect(partitionBalanced([5, 5, 5, 5, 5, 5], 3)).toEqual([0, 2, 4, 6]);
  });
  it('falls back to uniform when there are no more layers than stages', () => {
    expect(partitionBalanced([7, 1], 2)).toEqual([0, 1, 2]);
  });
});

class Embed extends Module<[Tensor], Tensor> {
  readonly lin: Linear;
  constructor(n: number) {
    super();
    this.lin = this.registerModule('lin', new Linear(n, n));
  }
  forward(x: Tensor): Tensor {
    return this.lin.call(x);
  }
}
class TransformerBlock extends Embed {}
class Norm extends Embed {}

describe('partitionLayers', () => {
  // Trainable parameters: Embed(8) 72, blocks(4) 20 each, Norm(2) 6.
  const layers = [new LayerSpec(Embed, 8), ...Array.from({ length: 4 }, () => new LayerSpec(TransformerBlock, 4)), new LayerSpec(Norm, 2)];

  it("'parameters' balances trainable parameter counts", () => {
    // Weights [72, 20, 20, 20, 20, 6]: the embedding alone (72) against 86 for the rest is the best of 2 stages.
    expect(partitionLayers(layers, 2, 'parameters')).toEqual([0, 1, 6]);
    // 3 stages: the bottleneck is 72 (the embedding); the fill packs each stage up to it from the
    // left: 20 + 20 + 20 = 60 fits, a fourth block would make 80 -> [72 | 20 20 20 | 20 6].
    expect(partitionLayers(layers, 3, 'parameters')).toEqual([0, 1, 4, 6]);
  });
  it("'uniform' balances layer counts", () => {
    expect(partitionLayers(layers, 4, 'uniform')).toEqual([0, 2, 4, 5, 6]);
  });
  it("'type:<regex>' balances the matching layers, case-insensitively", () => {
    // Weights [0, 1, 1, 1, 1, 0]: two blocks per stage; the unmatched layers go with the neighbours the fill gives them.
    expect(partitionLayers(layers, 2, 'type:transformerblock')).toEqual([0, 3, 6]);
    expect(partitionLayers(layers, 2, 'TYPE:Block')).toEqual([0, 3, 6]);
  });
  it('names the numbers when a stage would be empty or the regex matches too few layers', () => {
    expect(() => partitionLayers(layers.slice(0, 3), 4, 'uniform')).toThrow(DSConfigError);
    expect(() => partitionLayers(layers.slice(0, 3), 4, 'uniform')).toThrow(/3 layer\(s\) split by 'uniform' over 4 stages leave stage 3 without layers/);
    expect(() => partitionLayers(layers, 5, 'type:block')).toThrow(/matches 4 layer\(s\), fewer than the 5 stages/);
  });
  it("rejects 'profile' (not implemented, as in DeepSpeed) and unknown methods", () => {
    expect(() => partitionLayers(layers, 2, 'profile')).toThrow(DSUnsupportedError);
    expect(() => partitionLayers(layers, 2, 'explicit')).toThrow(/'explicit' is not one of 'parameters', 'uniform', 'type:<regex>'/);
  });
});
