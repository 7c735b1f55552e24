// DeepSpeed's training_data: initialize() wraps a dataset in a data loader that gives this
// data-parallel rank its share of every epoch, one micro batch at a time (DeepSpeedDataLoader over
// torch's DistributedSampler). The rules kept from DistributedSampler: an epoch's indices are
// shuffled with a seed that depends on the epoch (setEpoch), padded by repeating from the start so
// every rank gets as many samples (or, with drop_last, cut to a multiple of the ranks), and rank r
// takes every world-th index starting at r. Batches are `train_micro_batch_size_per_gpu` samples;
// `dataloader_drop_last` drops the last incomplete one. Differs from PyTorch in one respect: the
// shuffle is this package's own (a seeded Fisher-Yates), so the order is not torch.randperm's.
import { DSConfigError } from '../errors.js';

/** Anything indexable with a length: an array, or an object with `length` and `get(i)`. */
export type Dataset<T> = readonly T[] | { readonly length: number; get(index: number): T };

export interface DataLoaderOptions<T, B> {
  /** Samples per batch (the micro batch per rank). */
  batchSize: number;
  /** Data-parallel rank and size. */
  rank: number;
  worldSize: number;
  /** Shuffle each epoch (DistributedSampler's default: true). */
  shuffle?: boolean;
  /** The shuffle seed; epoch e uses seed + e. Default 0. */
  seed?: number;
  /** Sampler drop_last: cut the epoch to a multiple of the ranks instead of padding it. Default false. */
  dropLastSamples?: boolean;
  /** dataloader_drop_last: drop this rank's last incomplete batch. Default false. */
  dropLast?: boolean;
  /** Turns a list of samples into a batch (DeepSpeed's collate_fn); default: the list itself. */
  collate?: (samples: T[]) => B;
}

/** Mulberry32: a small deterministic generator for the shuffle. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class DistributedDataLoader<T, B = T[]> implements Iterable<B> {
  private epoch = 0;
  private readonly get: (i: number) => T;
  readonly datasetLength: number;

  constructor(
    dataset: Dataset<T>,
    private readonly opts: DataLoaderOptions<T, B>,
  ) {
    const { batchSize, rank, worldSize } = opts;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new DSConfigError(`data loader: batch size must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(worldSize) || worldSize < 1 || !Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new DSConfigError(`data loader: rank ${rank} is not a rank of a data-parallel group of ${worldSize}`);
    }
    this.datasetLength = dataset.length;
    this.get = Array.isArray(dataset) ? (i) => (dataset as readonly T[])[i]! : (i) => (dataset as { get(index: number): T }).get(i);
    if (this.datasetLength < 1) throw new DSConfigError('data loader: the training data is empty');
    if (opts.dropLastSamples && this.datasetLength < worldSize) {
      throw new DSConfigError(`data loader: ${this.datasetLength} sample(s) cannot be split over ${worldSize} ranks with drop_last; give at least one sample per rank`);
    }
  }

  /** The epoch the next iteration shuffles for (DistributedSampler.set_epoch). */
  setEpoch(epoch: number): void {
    this.epoch = epoch;
  }

  /** This rank's sample indices for the current epoch. */
  indices(): number[] {
    const n = this.datasetLength;
    const world = this.opts.worldSize;
    const order = Array.from({ length: n }, (_, i) => i);
    if (this.opts.shuffle ?? true) {
      const rand = mulberry32((this.opts.seed ?? 0) + this.epoch);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
    }
    const perRank = this.opts.dropLastSamples ? Math.floor(n / world) : Math.ceil(n / world);
    const total = perRank * world;
    while (order.length < total) order.push(...order.slice(0, total - order.length));
    order.length = total;
    return order.filter((_, i) => i % world === this.opts.rank);
  }

  /** Batches per epoch on this rank. */
  get length(): number {
    const n = this.opts.dropLastSamples ? Math.floor(this.datasetLength / this.opts.worldSize) : Math.ceil(this.datasetLength / this.opts.worldSize);
    return this.opts.dropLast ? Math.floor(n / this.opts.batchSize) : Math.ceil(n / this.opts.batchSize);
  }

  *[Symbol.iterator](): Iterator<B> {
    const idx = this.indices();
    const collate = this.opts.collate ?? ((s: T[]) => s as unknown as B);
    for (let at = 0; at < idx.length; at += this.opts.batchSize) {
      const slice = idx.slice(at, at + this.opts.batchSize);
      if (slice.length < this.opts.batchSize && this.opts.dropLast) return;
      yield collate(slice.map((i) => this.get(i)));
    }
  }
}
