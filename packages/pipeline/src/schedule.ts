// The pipeline schedules as explicit instruction streams: DeepSpeed's runtime/pipe/schedule.py.
// A schedule yields, step by step, the list of instructions one stage executes; the engine maps
// each instruction kind to a handler. TrainSchedule is 1F1B (PipeDream-Flush): 2 (m + p - 1) steps,
// forward or backward by the parity of (step, stage), sends and receives ordered by stage parity so
// that neighbours never both wait on each other; InferenceSchedule is m + p - 1 forward-only steps
// alternating two buffers.
import { DSConfigError } from '@ds/core';

export type Instruction =
  | { kind: 'LoadMicroBatch'; buffer: number }
  | { kind: 'ForwardPass'; buffer: number }
  | { kind: 'BackwardPass'; buffer: number }
  | { kind: 'SendActivation'; buffer: number }
  | { kind: 'RecvActivation'; buffer: number }
  | { kind: 'SendGrad'; buffer: number }
  | { kind: 'RecvGrad'; buffer: number }
  | { kind: 'ReduceTiedGrads' }
  | { kind: 'ReduceGrads' }
  | { kind: 'OptimizerStep' };

export type InstructionKind = Instruction['kind'];

/** DeepSpeed's repr of an instruction: `ForwardPass(buffer_id=0)`, `OptimizerStep()`. */
export function formatInstruction(i: Instruction): string {
  return 'buffer' in i ? `${i.kind}(buffer_id=${i.buffer})` : `${i.kind}()`;
}

const buf = (kind: Exclude<InstructionKind, 'ReduceTiedGrads' | 'ReduceGrads' | 'OptimizerStep'>, buffer: number): Instruction => ({ kind, buffer });
const even = (x: number) => x % 2 === 0;

abstract class PipeSchedule {
  constructor(
    readonly microBatches: number,
    readonly stages: number,
    readonly stageId: number,
  ) {
    for (const [name, v] of [['microBatches', microBatches], ['stages', stages]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new DSConfigError(`${this.constructor.name}: ${name} must be a positive integer, got ${v}`);
    }
    if (!Number.isInteger(stageId) || stageId < 0 || stageId >= stages) throw new DSConfigError(`${this.constructor.name}: stageId ${stageId} is outside [0, ${stages})`);
  }
  abstract steps(): Instruction[][];
  abstract numPipeBuffers(): number;
  protected validMicroBatch(id: number): boolean {
    return id >= 0 && id < this.microBatches;
  }
  protected validStage(id: number): boolean {
    return id >= 0 && id < this.stages;
  }
  protected bufferIdx(microBatch: number): number {
    return microBatch % this.numPipeBuffers();
  }
  get isFirstStage(): boolean {
    return this.stageId === 0;
  }
  get isLastStage(): boolean {
    return this.stageId === this.stages - 1;
  }
}

/** 1F1B training: warm-up forwards, steady one-forward-one-backward, cool-down backwards, then the step. */
export class TrainSchedule extends PipeSchedule {
  steps(): Instruction[][] {
    const out: Instruction[][] = [];
    const total = 2 * (this.microBatches + this.stages - 1);
    const prevStage = this.stageId - 1;
    const nextStage = this.stageId + 1;
    let prevMb = -1;
    for (let step = 0; step < total; step++) {
      const { microBatch: mb, forward } = this.stepToMicroBatch(step);
      const cmds: Instruction[] = [];
      if (forward) {
        if (this.validMicroBatch(mb) && this.validStage(prevStage)) cmds.push(buf('RecvActivation', this.bufferIdx(mb)));
        if (this.validMicroBatch(prevMb) && this.validStage(prevStage)) cmds.push(buf('SendGrad', this.bufferIdx(prevMb)));
      } else {
        if (this.validMicroBatch(prevMb) && this.validStage(nextStage)) cmds.push(buf('SendActivation', this.bufferIdx(prevMb)));
        if (this.validMicroBatch(mb) && this.validStage(nextStage)) cmds.push(buf('RecvGrad', this.bufferIdx(mb)));
      }
      if ((this.isFirstStage || this.isLastStage) && forward && this.validMicroBatch(mb)) cmds.push(buf('LoadMicroBatch', this.bufferIdx(mb)));
      if (this.validMicroBatch(mb)) cmds.push(buf(forward ? 'ForwardPass' : 'BackwardPass', this.bufferIdx(mb)));
      if (step === total - 1) cmds.push({ kind: 'ReduceTiedGrads' }, { kind: 'ReduceGrads' }, { kind: 'OptimizerStep' });
      prevMb = mb;
      out.push(cmds);
    }
    return out;
  }

  /** Buffers in flight on this stage: max(2, min(stages - stage + 1, micro batches)). */
  numPipeBuffers(): number {
    return Math.max(2, Math.min(this.stages - this.stageId + 1, this.microBatches));
  }

  /** The micro batch a step works on, and whether it is a forward (by the parity of step and stage). */
  stepToMicroBatch(step: number): { microBatch: number; forward: boolean } {
    const s = this.stageId;
    const p = this.stages;
    if (even(step) && even(s)) return { microBatch: step / 2 - Math.floor(s / 2), forward: true };
    if (!even(step) && !even(s)) return { microBatch: (step - 1) / 2 - Math.floor(s / 2), forward: true };
    if (even(step) && !even(s)) return { microBatch: step / 2 - p + Math.floor((s + 1) / 2), forward: false };
    return { microBatch: (step - 1) / 2 - p + 1 + Math.floor(s / 2), forward: false };
  }
}

/** Forward-only: micro batch (step - stage) at each step, two buffers alternating between receive and send. */
export class InferenceSchedule extends PipeSchedule {
  steps(): Instruction[][] {
    const out: Instruction[][] = [];
    const total = this.microBatches + this.stages - 1;
    const hasPrev = this.validStage(this.stageId - 1);
    const hasNext = this.validStage(this.stageId + 1);
    for (let step = 0; step < total; step++) {
      const cmds: Instruction[] = [];
      const mb = step - this.stageId;
      const recvBuf = even(this.stageId) ? step % 2 : (step + 1) % 2;
      const sendBuf = even(this.stageId) ? (step + 1) % 2 : step % 2;
      if ((this.isFirstStage || this.isLastStage) && this.validMicroBatch(mb)) cmds.push(buf('LoadMicroBatch', recvBuf));
      const send = hasNext && this.validMicroBatch(mb - 1) ? buf('SendActivation', sendBuf) : null;
      const recv = hasPrev && this.validMicroBatch(mb) ? buf('RecvActivation', recvBuf) : null;
      const ordered = even(this.stageId) ? [send, recv] : [recv, send];
      for (const c of ordered) if (c) cmds.push(c);
      if (this.validMicroBatch(mb)) cmds.push(buf('ForwardPass', recvBuf));
      out.push(cmds);
    }
    return out;
  }
  numPipeBuffers(): number {
    return 2;
  }
}
