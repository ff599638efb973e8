import { ConsumerStall, PartitionPosition } from './consumer-stall';

describe('ConsumerStall: a partition is stalled once it stays behind its log end, its offset unmoved, for stallMs', () => {
  const at = (partition: number, stored: bigint | null, end: bigint, start = 0n): PartitionPosition => ({ partition, stored, start, end });

  it('is never stalled at the log end: an idle consumer stays ready however long nothing comes', () => {
    const s = new ConsumerStall(1000);
    for (let t = 0; t <= 10_000; t += 500) s.observe(t, [at(0, 7n, 7n), at(1, null, 0n)]);
    expect(s.stalled(10_000)).toEqual([]);
  });

  it('is not stalled while the offset moves, however far behind (catching up, start-up), nor before stallMs', () => {
    const s = new ConsumerStall(1000);
    s.observe(0, [at(0, 0n, 5000n)]);
    expect(s.stalled(999)).toEqual([]);
    s.observe(900, [at(0, 200n, 5100n)]);
    s.observe(1800, [at(0, 400n, 5200n)]);
    expect(s.stalled(1800)).toEqual([]);
  });

  it('is stalled behind the log end with the same offset for stallMs, and no longer once the offset moves', () => {
    const s = new ConsumerStall(1000);
    s.observe(0, [at(0, 3n, 10n), at(1, 10n, 10n)]);
    s.observe(1000, [at(0, 3n, 12n), at(1, 10n, 10n)]);
    expect(s.stalled(1000)).toEqual([{ partition: 0, read: 3n, end: 12n, since: 0 }]);
    s.observe(1500, [at(0, 4n, 12n), at(1, 10n, 10n)]);
    expect(s.stalled(2000)).toEqual([]);
  });

  it('is stalled with an offset past the log end (a replaced log the consumer never moved from)', () => {
    const s = new ConsumerStall(1000);
    s.observe(0, [at(0, 50_000n, 3n)]);
    s.observe(1200, [at(0, 50_000n, 3n)]);
    expect(s.stalled(1200)).toEqual([{ partition: 0, read: 50_000n, end: 3n, since: 0 }]);
  });

  it('counts a partition never read, or read only below what retention removed, from its log start', () => {
    const s = new ConsumerStall(1000);
    s.observe(0, [at(0, null, 40n, 40n), at(1, 2n, 40n, 40n), at(2, null, 41n, 40n)]);
    s.observe(1000, [at(0, null, 40n, 40n), at(1, 2n, 40n, 40n), at(2, null, 41n, 40n)]);
    expect(s.stalled(1000)).toEqual([{ partition: 2, read: 40n, end: 41n, since: 0 }]);
  });

  it('forgets a partition no longer assigned (a rebalance gave it to another member)', () => {
    const s = new ConsumerStall(1000);
    s.observe(0, [at(0, 3n, 10n), at(1, 3n, 10n)]);
    s.observe(500, [at(1, 3n, 10n)]);
    s.observe(1000, [at(0, 3n, 10n), at(1, 3n, 10n)]);
    expect(s.stalled(1000)).toEqual([{ partition: 1, read: 3n, end: 10n, since: 0 }]);
  });
});
