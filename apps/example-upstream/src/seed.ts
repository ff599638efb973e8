import { createHash } from 'node:crypto';

/**
 * Deterministic randomness for the example upstream. Every value it serves is a pure function of the
 * request (path, query, body): the same request always gets byte-identical bodies, across restarts and
 * machines, so tests can compare responses and per-entity billing sees stable ids. Nothing here reads
 * the clock or Math.random.
 */

/** Every date the fake serves is this instant or a fixed offset from it (2026-01-01T00:00:00Z). */
export const CatalogEpochMs = Date.UTC(2026, 0, 1);

const DayMs = 86_400_000;

/** FNV-1a, 32 bit: cheap, stable seed for the generator below. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** A stable id: `prefix` + the first `length` hex digits of sha1 of the parts (ids collide far less than FNV seeds). */
export function stableId(prefix: string, parts: Array<string | number>, length = 12): string {
  return prefix + createHash('sha1').update(parts.join('\u0000')).digest('hex').slice(0, length);
}

/** JSON with sorted keys, so `{a,b}` and `{b,a}` seed the same data. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** A small PRNG (mulberry32) seeded from FNV-1a of the parts; the sequence depends on the parts only. */
export class Seed {
  private state: number;

  constructor(...parts: Array<string | number>) {
    this.state = fnv1a(parts.join('\u0000'));
  }

  /** Next value in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A whole number in [min, max], both inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  bool(probability = 0.5): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Seed.pick: empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** `count` distinct indexes in [0, size), in draw order. */
  distinctIndexes(count: number, size: number): number[] {
    const chosen: number[] = [];
    const seen = new Set<number>();
    while (chosen.length < Math.min(count, size)) {
      const i = Math.floor(this.next() * size);
      if (seen.has(i)) continue;
      seen.add(i);
      chosen.push(i);
    }
    return chosen;
  }

  /** A fixed date: the catalog epoch minus up to `maxDaysBefore` days (whole seconds), ISO 8601 with `Z`. */
  dateBefore(maxDaysBefore: number): string {
    const offsetMs = Math.floor(this.next() * maxDaysBefore * DayMs / 1000) * 1000;
    return isoSeconds(CatalogEpochMs - offsetMs);
  }
}

/** `2026-01-01T00:00:00Z`: the seeds' timestamp style (no milliseconds). */
export function isoSeconds(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function isoDate(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 10);
}

export function addDays(epochMs: number, days: number): number {
  return epochMs + days * DayMs;
}

export function slugify(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}

export function titleCase(slug: string): string {
  return slug
    .split(/[-_.\s]+/)
    .filter(Boolean)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(' ');
}
