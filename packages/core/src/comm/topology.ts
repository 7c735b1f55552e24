// The process topology: DeepSpeed's PipeModelDataParallelTopology (runtime/pipe/topology.py). The
// world is a grid of pipe x data x model ranks, model varying fastest, then data, then pipe:
//
//   rank = (pipe * data_degree + data) * model_degree + model
//
// so the ranks of one tensor-parallel group are neighbours (on one host, where the launcher puts
// consecutive ranks) and a pipeline stage is a contiguous block. Each axis has its groups: the ranks
// that share every other coordinate. The data-parallel group (not the world) is what gradient
// reduction, the batch-size rules, ZeRO partitioning and checkpoint naming use.
import { DSConfigError } from '../errors.js';
import type { Distributed } from './init.js';
import type { ProcessGroup } from './types.js';

export type Axis = 'pipe' | 'data' | 'model';
export const AXES: readonly Axis[] = ['pipe', 'data', 'model'];

export interface Degrees {
  pipe: number;
  data: number;
  model: number;
}

export type Coords = Degrees;

export class ProcessTopology {
  readonly degrees: Readonly<Degrees>;

  /**
   * `pipe` and `model` default to 1; `data` defaults to what is left of the world. A grid that does
   * not fill the world exactly is a DSConfigError naming the numbers.
   */
  constructor(
    readonly worldSize: number,
    degrees: Partial<Degrees> = {},
  ) {
    const pipe = degrees.pipe ?? 1;
    const model = degrees.model ?? 1;
    for (const [axis, d] of [['pipe', pipe], ['model', model], ['data', degrees.data ?? 1]] as const) {
      if (!Number.isInteger(d) || d < 1) throw new DSConfigError(`topology: the ${axis} degree must be a positive integer, got ${d}`);
    }
    if (worldSize % (pipe * model) !== 0) {
      throw new DSConfigError(`topology: ${worldSize} ranks do not divide into ${pipe} pipeline stage(s) x ${model} model-parallel rank(s); the world size must be a multiple of ${pipe * model}`);
    }
    const data = degrees.data ?? worldSize / (pipe * model);
    if (pipe * data * model !== worldSize) {
      throw new DSConfigError(`topology: pipe ${pipe} x data ${data} x model ${model} = ${pipe * data * model} ranks, but the world has ${worldSize}; make the product equal the world size`);
    }
    this.degrees = Object.freeze({ pipe, data, model });
  }

  coords(rank: number): Coords {
    const { data, model } = this.degrees;
    return { pipe: Math.floor(rank / (data * model)), data: Math.floor(rank / model) % data, model: rank % model };
  }

  rankOf(c: Coords): number {
    const { data, model } = this.degrees;
    return (c.pipe * data + c.data) * model + c.model;
  }

  /** Every group of `axis`: for each setting of the other two coordinates, the ranks along the axis, in axis order. */
  axisGroups(axis: Axis): number[][] {
    const others = AXES.filter((a) => a !== axis) as [Axis, Axis];
    const groups: number[][] = [];
    for (let i = 0; i < this.degrees[others[0]]; i++) {
      for (let j = 0; j < this.degrees[others[1]]; j++) {
        const ranks: number[] = [];
        for (let k = 0; k < this.degrees[axis]; k++) {
          ranks.push(this.rankOf({ [others[0]]: i, [others[1]]: j, [axis]: k } as unknown as Coords));
        }
        groups.push(ranks);
      }
    }
    return groups.sort((a, b) => a[0]! - b[0]!);
  }

  /** The ranks of `axis`'s group that `rank` belongs to. */
  groupOf(axis: Axis, rank: number): number[] {
    return this.axisGroups(axis).find((g) => g.includes(rank))!;
  }

  toString(): string {
    const { pipe, data, model } = this.degrees;
    return `pipe ${pipe} x data ${data} x model ${model}`;
  }
}

/** The topology with this rank's process group on each axis (null where the axis has one rank). */
export interface ParallelGroups {
  readonly topology: ProcessTopology;
  /** This rank's coordinates. */
  readonly coords: Coords;
  readonly world: ProcessGroup | null;
  readonly data: ProcessGroup | null;
  readonly pipe: ProcessGroup | null;
  readonly model: ProcessGroup | null;
}

/**
 * Collective over the world: builds the topology's groups. Every rank creates every group of every
 * axis in the same order (newGroup's naming depends on it) and keeps its own. An axis that spans the
 * whole world reuses the world group; an axis of degree 1 has no group.
 */
export async function buildParallelGroups(dist: Distributed | null, degrees: Partial<Degrees> = {}): Promise<ParallelGroups> {
  const worldSize = dist?.size ?? 1;
  const rank = dist?.rank ?? 0;
  const topology = new ProcessTopology(worldSize, degrees);
  const groups: Record<Axis, ProcessGroup | null> = { pipe: null, data: null, model: null };
  for (const axis of AXES) {
    const degree = topology.degrees[axis];
    if (!dist || degree === 1) continue;
    if (degree === worldSize) {
      groups[axis] = dist.world;
      continue;
    }
    for (const ranks of topology.axisGroups(axis)) {
      const g = await dist.newGroup(ranks, { name: `${axis}[${ranks.join(',')}]` });
      if (g) groups[axis] = g;
    }
  }
  return { topology, coords: topology.coords(rank), world: dist?.world ?? null, ...groups };
}
