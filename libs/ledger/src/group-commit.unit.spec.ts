import { IncomingBatch } from '@tollgate/messaging';
import { groupCommit, joinsGroup } from './group-commit';

/** One turn of the event loop (the schedule's linger). */
const turn = () => new Promise<void>((r) => setImmediate(r));

const batch = (topic: string, partition: number, messages: number): IncomingBatch => ({
  topic,
  partition,
  nextOffset: String(messages),
  messages: Array.from({ length: messages }, (_, i) => ({ offset: String(i), key: null, value: null, headers: {} })),
});

const named = (b: IncomingBatch) => `${b.topic}:${b.partition}/${b.messages.length}`;

/** The consumer's schedule over a commit the test settles by hand, recording each group it was given. */
function schedule(groupMessages: number) {
  const groups: Array<{ batches: IncomingBatch[]; settle: (e?: Error) => void }> = [];
  const batcher = groupCommit(
    (batches) =>
      new Promise<void>((resolve, reject) => {
        groups.push({ batches, settle: (e) => (e ? reject(e) : resolve()) });
      }),
    groupMessages,
  );
  return { batcher, groups, names: () => groups.map((g) => g.batches.map(named)) };
}

describe("metering's group commit: which partitions' batches share a transaction", () => {
  it('the batches handed over in one turn go together, one topic and each partition once per transaction', async () => {
    const { batcher, groups, names } = schedule(2000);
    const done = [batch('t', 0, 1), batch('t', 1, 2), batch('t', 0, 3), batch('u', 2, 4), batch('t', 3, 5)].map((b) => batcher.add(b));
    expect(groups).toHaveLength(0);
    await turn();
    // t:0's second batch waits for the first (its offset is written once per transaction); u goes in the second
    // transaction, t:0 again only once the first has committed.
    expect(names()).toEqual([['t:0/1', 't:1/2', 't:3/5'], ['u:2/4']]);
    groups[1]!.settle();
    await turn();
    expect(names()).toHaveLength(2);
    groups[0]!.settle();
    await turn();
    expect(names()[2]).toEqual(['t:0/3']);
    groups[2]!.settle();
    await Promise.all(done);
    expect(batcher.idle).toBe(true);
  });

  it('a batch too heavy for the group so far is passed over and heads a later one; a first batch goes however heavy', async () => {
    const { batcher, groups, names } = schedule(100);
    const done = [batch('t', 0, 60), batch('t', 1, 70), batch('t', 2, 30), batch('t', 3, 20)].map((b) => batcher.add(b));
    await turn();
    // 60 + 30 fit in 100; 70 is passed over, and 20 would take the first group to 110: both go in the second.
    expect(names()).toEqual([
      ['t:0/60', 't:2/30'],
      ['t:1/70', 't:3/20'],
    ]);
    groups[0]!.settle();
    groups[1]!.settle();
    await Promise.all(done);

    const heavy = [batch('t', 0, 500), batch('t', 1, 1)].map((b) => batcher.add(b));
    await turn();
    expect(names().slice(2)).toEqual([['t:0/500'], ['t:1/1']]);
    groups[2]!.settle();
    groups[3]!.settle();
    await Promise.all(heavy);
  });

  it('at most two transactions in flight; what queues meanwhile goes as soon as one commits', async () => {
    const { batcher, groups, names } = schedule(2);
    const done = [0, 1, 2, 3].map((p) => batcher.add(batch('t', p, 2)));
    await turn();
    expect(names()).toEqual([['t:0/2'], ['t:1/2']]);
    expect(batcher.queued).toBe(2);
    groups[0]!.settle();
    // No linger for a slot that frees: the next transaction starts before the next turn.
    await Promise.resolve();
    await Promise.resolve();
    await Promise.resolve();
    expect(names()).toEqual([['t:0/2'], ['t:1/2'], ['t:2/2']]);
    groups[1]!.settle();
    groups[2]!.settle();
    await turn();
    groups[3]!.settle();
    await Promise.all(done);
  });

  it("a transaction's failure reaches each of its batches", async () => {
    const { batcher, groups } = schedule(2000);
    const done = [batch('t', 0, 1), batch('t', 1, 1)].map((b) => batcher.add(b).then(() => 'ok', (e: Error) => e.message));
    await turn();
    groups[0]!.settle(new Error('the database is away'));
    expect(await Promise.all(done)).toEqual(['the database is away', 'the database is away']);
  });
});

describe('joinsGroup, the group rule', () => {
  const inFlight = [[batch('t', 5, 1)]];
  it('refuses a partition in a transaction in flight, even for an empty group', () => {
    expect(joinsGroup(batch('t', 5, 1), [], inFlight, 10)).toBe(false);
    expect(joinsGroup(batch('u', 5, 1), [], inFlight, 10)).toBe(true);
    expect(joinsGroup(batch('t', 6, 1), [], inFlight, 10)).toBe(true);
  });

  it('takes a batch of the group topic and a new partition while the messages stay within the cap', () => {
    const group = [batch('t', 0, 4), batch('t', 1, 4)];
    expect(joinsGroup(batch('t', 2, 2), group, [], 10)).toBe(true);
    expect(joinsGroup(batch('t', 2, 3), group, [], 10)).toBe(false);
    expect(joinsGroup(batch('t', 1, 1), group, [], 10)).toBe(false);
    expect(joinsGroup(batch('u', 2, 1), group, [], 10)).toBe(false);
  });
});
