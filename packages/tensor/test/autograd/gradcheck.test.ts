// Every differentiable op against central finite differences in float64.
import { describe, it } from 'vitest';
import { fromArray } from '../../src/create.js';
import * as ops from '../../src/ops/index.js';
import { gradcheck, rand } from '../helpers/gradcheck.js';

describe('gradients match finite differences (f64)', () => {
  it('add/sub/mul/div with broadcasting', () => {
    gradcheck((a, b) => ops.add(a!, b!), () => [rand([2, 3], 1), rand([3], 2)]);
    gradcheck((a, b) => ops.sub(a!, b!), () => [rand([2, 1, 3], 3), rand([4, 1], 4)]);
    gradcheck((a, b) => ops.mul(a!, b!), () => [rand([2, 3], 5), rand([2, 1], 6)]);
    gradcheck((a, b) => ops.div(a!, b!), () => [rand([3, 2], 7), rand([2], 8, 1, 3)]);
  });

  it('unary ops and scalar affine', () => {
    gradcheck((a) => ops.exp(a!), () => [rand([5], 9)]);
    gradcheck((a) => ops.log(ops.addScalar(a!, 2)), () => [rand([5], 10)]);
    gradcheck((a) => ops.sqrt(ops.addScalar(a!, 2)), () => [rand([5], 11)]);
    gradcheck((a) => ops.tanh(a!), () => [rand([5], 12)]);
    gradcheck((a) => ops.sigmoid(ops.square(a!)), () => [rand([5], 13)]);
    gradcheck((a) => ops.affine(a!, -2.5, 1), () => [rand([4], 14)]);
  });

  it('sum and mean over dims', () => {
    gradcheck((a) => ops.sum(a!), () => [rand([2, 3], 15)]);
    gradcheck((a) => ops.sum(a!, [0, 2]), () => [rand([2, 3, 2], 16)]);
    gradcheck((a) => ops.mean(a!, 1, true), () => [rand([2, 3, 2], 17)]);
  });

  it('shape ops', () => {
    gradcheck((a) => ops.reshape(ops.transpose(a!, 0, 2), [6, -1]), () => [rand([2, 3, 2], 18)]);
    gradcheck((a) => ops.mul(ops.permute(a!, [2, 0, 1]), ops.permute(a!, [2, 0, 1])), () => [rand([2, 3, 2], 19)]);
    gradcheck((a) => ops.narrow(a!, 1, 1, 2), () => [rand([2, 4], 20)]);
    gradcheck((a, b) => ops.cat([a!, b!], 1), () => [rand([2, 1, 2], 21), rand([2, 3, 2], 22)]);
    gradcheck((a) => ops.mul(ops.split(a!, 2, 0)[0]!, ops.split(a!, 2, 0)[1]!), () => [rand([4, 3], 23)]);
    gradcheck((a) => ops.expand(a!, [3, 2, 4]), () => [rand([2, 1], 24)]);
    gradcheck((a) => ops.contiguous(ops.transpose(a!, 0, 1)), () => [rand([3, 2], 25)]);
  });

  it('matmul (batched and shared) and linear', () => {
    gradcheck((a, b) => ops.matmul(a!, b!), () => [rand([2, 3, 4], 26), rand([2, 4, 2], 27)]);
    gradcheck((a, b) => ops.matmul(a!, b!), () => [rand([2, 3, 4], 28), rand([4, 5], 29)]);
    gradcheck((x, w, b) => ops.linear(x!, w!, b!), () => [rand([2, 3, 4], 30), rand([5, 4], 31), rand([5], 32)]);
  });

  it('gelu, softmax, layernorm', () => {
    gradcheck((a) => ops.gelu(a!), () => [rand([7], 33, 3)]);
    gradcheck((a) => ops.softmax(a!), () => [rand([3, 5], 34, 2)]);
    gradcheck((x, w, b) => ops.layerNorm(x!, w!, b!), () => [rand([3, 6], 35, 2), rand([6], 36), rand([6], 37)]);
  });

  it('fused residual add + layernorm: both outputs used, only the norm, only the sum', () => {
    const inputs = () => [rand([3, 6], 40, 2), rand([3, 6], 41), rand([6], 42), rand([6], 43)];
    gradcheck((x, r, w, b) => {
      const [h, y] = ops.addLayerNorm(x!, r!, w!, b!);
      return ops.add(ops.mul(h, h), y);
    }, inputs);
    gradcheck((x, r, w, b) => ops.addLayerNorm(x!, r!, w!, b!)[1], inputs);
    gradcheck((x, r, w, b) => ops.mul(ops.addLayerNorm(x!, r!, w!, b!)[0], x!), inputs);
  });

  it('embedding and cross-entropy (with an ignored row)', () => {
    const ids = (): ReturnType<typeof fromArray> => fromArray([1, 0, 3, 1], [2, 2], { dtype: 'i32' });
    gradcheck((t, i) => ops.embedding(i!, t!), () => [rand([4, 3], 38), ids()]);
    gradcheck((l, t) => ops.crossEntropy(l!, t!), () => [rand([2, 2, 5], 39, 2), fromArray([4, -1, 0, 2], [2, 2], { dtype: 'i32' })]);
  });

  it('causal attention', () => {
    gradcheck((q, k, v) => ops.causalAttention(q!, k!, v!), () => [rand([2, 3, 4], 40), rand([2, 3, 4], 41), rand([2, 3, 4], 42)]);
    // Packed [B, T, 3C] with 2 heads (the reference table has no packed kernels: the permuted path).
    gradcheck((x) => ops.causalAttentionPacked(x!, 2), () => [rand([2, 3, 12], 44)]);
  });

  it('dropout (fixed seed)', () => {
    gradcheck((a) => ops.dropout(a!, 0.3, { seed: 7 }), () => [rand([16], 43)]);
  });
});
