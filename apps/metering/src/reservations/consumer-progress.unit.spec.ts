import { ConsumerProgress } from './consumer-progress';

const ends = (...offsets: number[]) => new Map(offsets.map((o, p) => [p, BigInt(o)]));
const stored = (...offsets: Array<number | undefined>) =>
  new Map(offsets.flatMap((o, p) => (o === undefined ? [] : [[p, BigInt(o)] as const])));

describe('ConsumerProgress: when every event published on a partition has been read', () => {
  const t0 = 1_000_000;
  const afterGrace = t0 + 10 * 60_000;

  it('given snapshots at t0, t0+5s, t0+10s, when the consumer has read up to the second snapshot\'s end, then the horizon is t0+5s', () => {
    const progress = new ConsumerProgress(0);
    progress.record({ at: t0, ends: ends(10) });
    progress.record({ at: t0 + 5000, ends: ends(20) });
    progress.record({ at: t0 + 10_000, ends: ends(30) });
    expect(progress.horizons(stored(25)).settledBefore(0, afterGrace)).toBe(t0 + 5000);
  });

  it('given a consumer that reached no snapshot, when asked, then nothing is settled (a stalled partition keeps its holds)', () => {
    const progress = new ConsumerProgress(0);
    progress.record({ at: t0, ends: ends(10) });
    progress.record({ at: t0 + 5000, ends: ends(20) });
    expect(progress.horizons(stored(9)).settledBefore(0, afterGrace)).toBeNull();
    expect(progress.horizons(stored()).settledBefore(0, afterGrace)).toBeNull();
  });

  it('given an empty partition never read, when asked, then it is settled up to the latest snapshot', () => {
    const progress = new ConsumerProgress(0);
    progress.record({ at: t0, ends: ends(0, 4) });
    expect(progress.horizons(stored(undefined, 4)).settledBefore(0, afterGrace)).toBe(t0);
  });

  it('given a stored offset past the log end (topic recreated), when asked, then nothing is known', () => {
    const progress = new ConsumerProgress(0);
    progress.record({ at: t0, ends: ends(10) });
    expect(progress.horizons(stored(11)).settledBefore(0, afterGrace)).toBeNull();
  });

  it('given one stalled partition, when asked about a hold keyed to another one, then that hold is settled', () => {
    const progress = new ConsumerProgress(0);
    progress.record({ at: t0, ends: ends(10, 10) });
    const h = progress.horizons(stored(3, 10));
    expect(h.settledBefore(1, afterGrace)).toBe(t0);
    expect(h.settledBefore(0, afterGrace)).toBeNull();
  });

  it('given holds taken before the partition count was known for the grace period, when asked, then they wait for every partition', () => {
    const progress = new ConsumerProgress(60_000);
    progress.record({ at: t0, ends: ends(10, 10) });
    progress.record({ at: t0 + 5000, ends: ends(20, 20) });
    const h = progress.horizons(stored(20, 10));
    expect(h.settledBefore(0, t0 + 60_000)).toBe(t0 + 5000);
    expect(h.settledBefore(0, t0 + 59_999)).toBe(t0);
    expect(progress.horizons(stored(20, 5)).settledBefore(0, t0)).toBeNull();
  });

  it('given the partition count changes, when asked about holds taken before the change plus grace, then they wait for every partition', () => {
    const progress = new ConsumerProgress(60_000);
    progress.record({ at: t0, ends: ends(10) });
    progress.record({ at: t0 + 120_000, ends: ends(10, 0, 0) });
    const h = progress.horizons(stored(10, undefined, undefined));
    expect(h.settledBefore(1, t0 + 170_000)).toBe(t0 + 120_000);
    const h2 = progress.horizons(stored(4, undefined, undefined));
    expect(h2.settledBefore(1, t0 + 170_000)).toBeNull();
    expect(h2.settledBefore(1, t0 + 180_000)).toBe(t0 + 120_000);
  });

  it('given snapshots pruned after a horizon was found, when asked again with the same offsets, then the answer is the same', () => {
    const progress = new ConsumerProgress(0);
    for (let i = 0; i < 10; i++) progress.record({ at: t0 + i * 5000, ends: ends(i * 10, i * 10) });
    const first = progress.horizons(stored(45, 90));
    const again = progress.horizons(stored(45, 90));
    expect([first.settledBefore(0, afterGrace), first.settledBefore(1, afterGrace)]).toEqual([t0 + 20_000, t0 + 45_000]);
    expect([again.settledBefore(0, afterGrace), again.settledBefore(1, afterGrace)]).toEqual([t0 + 20_000, t0 + 45_000]);
  });

  it('given a snapshot older than the last, when recorded, then it throws', () => {
    const progress = new ConsumerProgress(0);
    progress.record({ at: t0, ends: ends(1) });
    expect(() => progress.record({ at: t0 - 1, ends: ends(1) })).toThrow(RangeError);
  });
});
