// Regions of a tier as extents of one address space (a swap file): 4096-aligned so that O_DIRECT
// applies, first fit from the freed extents, otherwise appended at the end.
import { DSShapeError, type OffloadRegion } from '@ds/core';

export const EXTENT_ALIGN = 4096;

export const alignUp = (n: number): number => Math.ceil(n / EXTENT_ALIGN) * EXTENT_ALIGN;

export interface Extent {
  start: number;
  size: number;
}

export class ExtentMap {
  private readonly live = new Map<number, Extent & { region: OffloadRegion }>();
  private readonly holes: Extent[] = [];
  private nextId = 0;
  /** The end of the highest extent ever handed out: the file's size. */
  end = 0;

  constructor(private readonly tier: string) {}

  /** Where `bytes` would go, without taking it: a hole that fits, or the end. */
  place(bytes: number): Extent {
    const size = alignUp(Math.max(bytes, 1));
    const hole = this.holes.find((h) => h.size >= size);
    return hole ? { start: hole.start, size } : { start: this.end, size };
  }

  take(bytes: number, label: string): OffloadRegion {
    const at = this.place(bytes);
    const k = this.holes.findIndex((h) => h.start === at.start);
    if (k >= 0) {
      const h = this.holes[k]!;
      if (h.size === at.size) this.holes.splice(k, 1);
      else this.holes[k] = { start: h.start + at.size, size: h.size - at.size };
    } else {
      this.end = at.start + at.size;
    }
    const region: OffloadRegion = { tier: this.tier, id: this.nextId++, bytes, label };
    this.live.set(region.id, { ...at, region });
    return region;
  }

  /** The extent of a live region, checking that [offset, offset + n) lies inside it. */
  extent(region: OffloadRegion, offset: number, n: number, what: string): Extent {
    const e = this.live.get(region.id);
    if (!e || e.region !== region) throw new DSShapeError(`${this.tier} tier: ${what} on region ${region.id} (${region.label}), which is not live in this tier (freed, or from another tier)`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + n > region.bytes) {
      throw new DSShapeError(`${this.tier} tier: ${what} of bytes ${offset}..${offset + n} is outside region ${region.id} (${region.label}, ${region.bytes} B)`);
    }
    return e;
  }

  release(region: OffloadRegion): Extent {
    const e = this.extent(region, 0, 0, 'free');
    this.live.delete(region.id);
    this.holes.push({ start: e.start, size: e.size });
    this.holes.sort((a, b) => a.start - b.start);
    // Merge neighbours so a freed run can hold a larger region again.
    for (let i = this.holes.length - 1; i > 0; i--) {
      const a = this.holes[i - 1]!;
      const b = this.holes[i]!;
      if (a.start + a.size === b.start) {
        a.size += b.size;
        this.holes.splice(i, 1);
      }
    }
    return e;
  }

  get count(): number {
    return this.live.size;
  }

  get reservedBytes(): number {
    let n = 0;
    for (const e of this.live.values()) n += e.region.bytes;
    return n;
  }
}
