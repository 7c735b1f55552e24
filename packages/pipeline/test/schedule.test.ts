// The instruction streams, written by hand from the rules of DeepSpeed's runtime/pipe/schedule.py:
// TrainSchedule step s of stage k is a forward when s and k have the same parity; sends and
// receives come first in a step (forward: RecvActivation then SendGrad; backward: SendActivation
// then RecvGrad); the first and last stages load a micro batch before each forward; the last step
// ends with ReduceTiedGrads, ReduceGrads, OptimizerStep.
import { describe, expect, it } from 'vitest';

import { DSConfigError } from '@ds/core';

import { formatInstruction, InferenceSchedule, TrainSchedule } from '../src/index.js';
import { sendsFirst } from '../src/engine.js';

const stream = (s: { steps(): { kind: string }[][] }) => s.steps().map((cmds) => cmds.map((c) => formatInstruction(c as never)));
const END = ['ReduceTiedGrads()', 'ReduceGrads()', 'OptimizerStep()'];

describe('TrainSchedule (1F1B)', () => {
  it('2 stages x 2 micro batches', () => {
    expect(stream(new TrainSchedule(2, 2, 0))).toEqual([
      ['LoadMicroBatch(buffer_id=0)', 'ForwardPass(buffer_id=0)'],
      ['SendActivation(buffer_id=0)'],
      ['LoadMicroBatch(buffer_id=1)', 'ForwardPass(buffer_id=1)'],
      ['SendActivation(buffer_id=1)', 'RecvGrad(buffer_id=0)', 'BackwardPass(buffer_id=0)'],
      [],
      ['RecvGrad(buffer_id=1)', 'BackwardPass(buffer_id=1)', ...END],
    ]);
    expect(stream(new TrainSchedule(2, 2, 1))).toEqual([
      [],
      ['RecvActivation(buffer_id=0)', 'LoadMicroBatch(buffer_id=0)', 'ForwardPass(buffer_id=0)'],
      ['BackwardPass(buffer_id=0)'],
      ['RecvActivation(buffer_id=1)', 'SendGrad(buffer_id=0)', 'LoadMicroBatch(buffer_id=1)', 'ForwardPass(buffer_id=1)'],
      ['BackwardPass(buffer_id=1)'],
      ['SendGrad(buffer_id=1)', ...END],
    ]);
  });

  it('3 stages x 4 micro batches: the middle stage neither loads nor computes a loss', () => {
    // Stage 1 (odd): forwards at odd steps (micro batch (s - 1) / 2), backwards at even steps
    // (micro batch s / 2 - 3 + 1); 2 (4 + 3 - 1) = 12 steps; buffers max(2, min(3 - 1 + 1, 4)) = 3.
    const s = new TrainSchedule(4, 3, 1);
    expect(s.numPipeBuffers()).toBe(3);
    expect(stream(s)).toEqual([
      [],
      ['RecvActivation(buffer_id=0)', 'ForwardPass(buffer_id=0)'],
      ['SendActivation(buffer_id=0)'], // a backward step with no micro batch yet still sends the last forward's output
      ['RecvActivation(buffer_id=1)', 'ForwardPass(buffer_id=1)'],
      ['SendActivation(buffer_id=1)', 'RecvGrad(buffer_id=0)', 'BackwardPass(buffer_id=0)'],
      ['RecvActivation(buffer_id=2)', 'SendGrad(buffer_id=0)', 'ForwardPass(buffer_id=2)'],
      ['SendActivation(buffer_id=2)', 'RecvGrad(buffer_id=1)', 'BackwardPass(buffer_id=1)'],
      ['RecvActivation(buffer_id=0)', 'SendGrad(buffer_id=1)', 'ForwardPass(buffer_id=0)'],
      ['SendActivation(buffer_id=0)', 'RecvGrad(buffer_id=2)', 'BackwardPass(buffer_id=2)'],
      ['SendGrad(buffer_id=2)'],
      ['RecvGrad(buffer_id=0)', 'BackwardPass(buffer_id=0)'],
      ['SendGrad(buffer_id=0)', ...END],
    ]);
  });

  it('runs every micro batch forward and backward once on every stage, in order, in 2 (m + p - 1) steps', () => {
    for (const [m, p] of [[4, 2], [8, 4], [4, 4], [5, 3]] as const) {
      for (let k = 0; k < p; k++) {
        const s = new TrainSchedule(m, p, k);
        const steps = s.steps();
        expect(steps).toHaveLength(2 * (m + p - 1));
        const ids = (kind: string) => steps.flatMap((cmds, i) => cmds.filter((c) => c.kind === kind).map(() => s.stepToMicroBatch(i).microBatch));
        expect(ids('ForwardPass')).toEqual([...Array(m).keys()]);
        expect(ids('BackwardPass')).toEqual([...Array(m).keys()]);
        // Activations in flight never exceed the buffers: forwards minus backwards so far.
        let live = 0;
        for (const cmds of steps) for (const c of cmds) {
          if (c.kind === 'ForwardPass') live += 1;
          if (c.kind === 'BackwardPass') live -= 1;
          expect(live).toBeLessThanOrEqual(Math.min(p - k, m));
        }
      }
    }
  });

  it('rejects a stage outside the pipeline', () => {
    expect(() => new TrainSchedule(4, 2, 2)).toThrow(DSConfigError);
  });
});

describe('InferenceSchedule', () => {
  it('2 stages x 2 micro batches: two buffers, alternating receive and send', () => {
    expect(stream(new InferenceSchedule(2, 2, 0))).toEqual([
      ['LoadMicroBatch(buffer_id=0)', 'ForwardPass(buffer_id=0)'],
      ['LoadMicroBatch(buffer_id=1)', 'SendActivation(buffer_id=0)', 'ForwardPass(buffer_id=1)'],
      ['SendActivation(buffer_id=1)'],
    ]);
    expect(stream(new InferenceSchedule(2, 2, 1))).toEqual([
      [],
      ['LoadMicroBatch(buffer_id=0)', 'RecvActivation(buffer_id=0)', 'ForwardPass(buffer_id=0)'],
      ['LoadMicroBatch(buffer_id=1)', 'RecvActivation(buffer_id=1)', 'ForwardPass(buffer_id=1)'],
    ]);
  });
  it('a middle (odd) stage receives before it sends', () => {
    expect(stream(new InferenceSchedule(2, 3, 1))).toEqual([
      [],
      ['RecvActivation(buffer_id=0)', 'ForwardPass(buffer_id=0)'],
      ['RecvActivation(buffer_id=1)', 'SendActivation(buffer_id=0)', 'ForwardPass(buffer_id=1)'],
      ['SendActivation(buffer_id=1)'],
    ]);
  });
});

describe('the engine runs a step sends first (sendsFirst)', () => {
  // Sends only start a transfer here, so the engine issues them before the step's receive: the
  // neighbour waiting on the send does not wait out our receive too. Order otherwise kept.
  it('moves SendGrad ahead of RecvActivation and keeps the rest in order; leaves steps without a later send alone', () => {
    const steps = new TrainSchedule(4, 2, 1).steps();
    const reordered = steps.map((cmds) => sendsFirst(cmds).map((c) => formatInstruction(c)));
    expect(reordered[3]).toEqual(['SendGrad(buffer_id=0)', 'RecvActivation(buffer_id=1)', 'LoadMicroBatch(buffer_id=1)', 'ForwardPass(buffer_id=1)']);
    steps.forEach((cmds, i) => {
      const out = sendsFirst(cmds);
      expect([...out].sort((a, b) => formatInstruction(a).localeCompare(formatInstruction(b))), `step ${i}: same instructions`).toEqual([...cmds].sort((a, b) => formatInstruction(a).localeCompare(formatInstruction(b))));
      const firstOther = out.findIndex((c) => !c.kind.startsWith('Send'));
      expect(out.slice(firstOther).some((c) => c.kind.startsWith('Send')), `step ${i}: no send after another instruction`).toBe(false);
    });
    // Stage 0's backward steps already send first: returned as they are.
    for (const cmds of new TrainSchedule(4, 2, 0).steps()) if (cmds[0]?.kind === 'SendActivation') expect(sendsFirst(cmds)).toBe(cmds);
  });
});
