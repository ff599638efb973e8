// Over 400 lines: the one coalescer five hot paths rely on, tested case by case (order, caps, slots, errors, shutdown, linger, admit).
import { runInNewContext } from 'node:vm';
import { Batcher, BatcherClosedError, BatcherOptions, BatchOutcomes } from './batcher';

/** One turn of the event loop (what the default linger waits for). */
const turn = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A flush the test settles by hand, recording each batch and how many flushes were in flight at most. */
function controlled<T, R = void>(opts: BatcherOptions<T> = {}) {
  const flushes: Array<{ items: T[]; resolve: (o: BatchOutcomes<R>) => void; reject: (e: unknown) => void }> = [];
  let flying = 0;
  let maxFlying = 0;
  const batcher = new Batcher<T, R>(
    (items) =>
      new Promise<BatchOutcomes<R>>((resolve, reject) => {
        flying++;
        maxFlying = Math.max(maxFlying, flying);
        const done = <A>(f: (a: A) => void) => (a: A) => {
          flying--;
          f(a);
        };
        flushes.push({ items, resolve: done(resolve), reject: done(reject) });
      }),
    opts,
  );
  return { batcher, flushes, maxFlying: () => maxFlying };
}

/** Settled state of a promise, without awaiting it. */
function track<R>(p: Promise<R>) {
  const s: { state: 'pending' | 'resolved' | 'rejected'; value?: R; error?: Error } = { state: 'pending' };
  p.then(
    (value) => Object.assign(s, { state: 'resolved', value }),
    (error: Error) => Object.assign(s, { state: 'rejected', error }),
  );
  return s;
}

describe('Batcher: concurrent calls coalesced into one flush per batch', () => {
  it('flushes the items added in one turn of the event loop together, in order, each caller getting its own result', async () => {
    const calls: number[][] = [];
    const b = new Batcher<number, number>(async (items) => {
      calls.push(items);
      return items.map((n) => n * 10);
    });
    const results = await Promise.all([1, 2, 3].map((n) => b.add(n)));
    expect(results).toEqual([10, 20, 30]);
    expect(calls).toEqual([[1, 2, 3]]);
  });

  it('an idle batcher flushes after one turn, without a timer; with linger none the flush starts inside add', async () => {
    const { batcher, flushes } = controlled<string>();
    void batcher.add('a');
    expect(flushes).toHaveLength(0);
    await turn();
    expect(flushes.map((f) => f.items)).toEqual([['a']]);

    const now = controlled<string>({ linger: 'none' });
    void now.batcher.add('x');
    expect(now.flushes.map((f) => f.items)).toEqual([['x']]);
    void now.batcher.add('y');
    void now.batcher.add('z');
    // A flush is in flight (concurrency 1): the next ones wait for it, then go together.
    expect(now.flushes).toHaveLength(1);
    now.flushes[0]!.resolve(undefined);
    await turn();
    expect(now.flushes.map((f) => f.items)).toEqual([['x'], ['y', 'z']]);
  });

  it('items added while a flush is in flight go together in the next one, started as soon as it settles', async () => {
    const { batcher, flushes } = controlled<number, number>();
    const first = track(batcher.add(1));
    await turn();
    const later = [2, 3, 4].map((n) => track(batcher.add(n)));
    await turn();
    await turn();
    expect(flushes).toHaveLength(1);
    flushes[0]!.resolve([100]);
    // Settling is a few microtasks, not a turn: the next flush starts before any I/O runs.
    await Promise.resolve();
    await Promise.resolve();
    await Promise.resolve();
    expect(first).toMatchObject({ state: 'resolved', value: 100 });
    expect(flushes.map((f) => f.items)).toEqual([[1], [2, 3, 4]]);
    flushes[1]!.resolve([200, 300, 400]);
    await turn();
    expect(later.map((s) => s.value)).toEqual([200, 300, 400]);
    expect(batcher.idle).toBe(true);
  });

  it('keeps a batch within maxItems and keeps the add order across batches', async () => {
    const calls: number[][] = [];
    const b = new Batcher<number, number>(
      async (items) => {
        calls.push(items);
        await sleep(1);
        return items;
      },
      { maxItems: 3 },
    );
    const out = await Promise.all(Array.from({ length: 8 }, (_, i) => b.add(i)));
    expect(out).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(calls).toEqual([[0, 1, 2], [3, 4, 5], [6, 7]]);
  });

  it('keeps a batch within maxWeight: an item heavier than the limit goes alone, and none overtakes a heavier one', async () => {
    const calls: number[][] = [];
    const b = new Batcher<number>(
      async (items) => {
        calls.push(items);
      },
      { maxWeight: 10, weigh: (n) => n },
    );
    await Promise.all([4, 5, 3, 12, 1, 9, 2].map((n) => b.add(n)));
    // 4+5 fit, 3 would pass 10; 3 then 12 (too heavy to join, goes alone next); 1+9; 2.
    expect(calls).toEqual([[4, 5], [3], [12], [1, 9], [2]]);
  });

  it('never has more than `concurrency` flushes in flight (1 by default)', async () => {
    for (const concurrency of [undefined, 1, 2, 3]) {
      let flying = 0;
      let most = 0;
      let flushes = 0;
      const b = new Batcher<number, number>(
        async (items) => {
          flushes++;
          most = Math.max(most, ++flying);
          await sleep(Math.random() * 3);
          flying--;
          return items;
        },
        { maxItems: 2, concurrency },
      );
      const adds: Array<Promise<number>> = [];
      for (let round = 0; round < 5; round++) {
        for (let i = 0; i < 7; i++) adds.push(b.add(round * 7 + i));
        await sleep(1);
      }
      expect(await Promise.all(adds)).toEqual(Array.from({ length: 35 }, (_, i) => i));
      expect(most).toBe(concurrency ?? 1);
      expect(flushes).toBeGreaterThanOrEqual(18);
    }
  });

  it('with two slots, starts a second flush for what queued behind the first, and more only as one settles', async () => {
    const { batcher, flushes, maxFlying } = controlled<number>({ concurrency: 2, maxItems: 2 });
    for (let i = 0; i < 7; i++) void batcher.add(i);
    await turn();
    expect(flushes.map((f) => f.items)).toEqual([[0, 1], [2, 3]]);
    expect(batcher.queued).toBe(3);
    expect(batcher.inFlight).toBe(2);
    flushes[1]!.resolve(undefined);
    await turn();
    expect(flushes.map((f) => f.items)).toEqual([[0, 1], [2, 3], [4, 5]]);
    flushes[0]!.resolve(undefined);
    await turn();
    expect(flushes.map((f) => f.items)).toEqual([[0, 1], [2, 3], [4, 5], [6]]);
    expect(maxFlying()).toBe(2);
  });
});

describe('Batcher: errors reach their callers and nowhere else', () => {
  let unhandled: unknown[];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  beforeEach(() => {
    unhandled = [];
    process.on('unhandledRejection', onUnhandled);
  });
  afterEach(() => {
    process.off('unhandledRejection', onUnhandled);
  });

  it('an Error outcome rejects that item alone', async () => {
    const b = new Batcher<number, number>(async (items) => items.map((n) => (n % 2 ? new RangeError(`odd ${n}`) : n)));
    const s = [1, 2, 3, 4].map((n) => b.add(n).then((v) => ({ v }), (e: Error) => ({ e: e.message })));
    expect(await Promise.all(s)).toEqual([{ e: 'odd 1' }, { v: 2 }, { e: 'odd 3' }, { v: 4 }]);
  });

  it('a flush may settle items early, one by one; an item settled early keeps its outcome whatever follows', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number, number>(async (items, settle) => {
      settle(0, items[0]! * 2);
      settle(1, new Error('refused alone'));
      settle(7, 0); // no such item: ignored
      await gate;
      throw new Error('the rest failed');
    });
    const s = [1, 2, 3].map((n) => track(b.add(n)));
    await turn();
    await turn();
    expect(s.map((x) => x.state)).toEqual(['resolved', 'rejected', 'pending']);
    expect(s[0]!.value).toBe(2);
    release();
    await turn();
    expect(s.map((x) => x.state)).toEqual(['resolved', 'rejected', 'rejected']);
    expect(s[1]!.error!.message).toBe('refused alone');
    expect(s[2]!.error!.message).toBe('the rest failed');
  });

  it('a flush that rejects fails every item of its batch with its error, and the next batch goes on', async () => {
    const boom = new Error('broker away');
    let n = 0;
    const b = new Batcher<string, string>(async (items) => {
      if (n++ === 0) throw boom;
      return items.map((i) => i.toUpperCase());
    });
    const failed = await Promise.allSettled([b.add('a'), b.add('b')]);
    expect(failed).toEqual([
      { status: 'rejected', reason: boom },
      { status: 'rejected', reason: boom },
    ]);
    expect(await b.add('c')).toBe('C');
  });

  it('a flush that throws synchronously fails its batch the same way, and the batcher is not stuck', async () => {
    let n = 0;
    const b = new Batcher<number, number>((items) => {
      if (n++ === 0) throw new TypeError('bad flush');
      return Promise.resolve(items);
    });
    await expect(b.add(1)).rejects.toThrow('bad flush');
    expect(b.inFlight).toBe(0);
    expect(await b.add(2)).toBe(2);

    const now = new Batcher<number>(() => {
      throw new Error('sync, linger none');
    }, { linger: 'none' });
    await expect(now.add(1)).rejects.toThrow('sync, linger none');
  });

  it("an Error from another realm (node's own, under jest's vm) rejects as it is, whether thrown, returned or settled", async () => {
    const foreign = () => Object.assign(runInNewContext('new Error("connect ECONNREFUSED")') as Error, { code: 'ECONNREFUSED' });
    expect(foreign() instanceof Error).toBe(false);
    const codeOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: Error & { code?: string }) => e.code);
    const thrown = new Batcher<number>(() => Promise.reject(foreign()));
    const returned = new Batcher<number, number>(async (items) => items.map(() => foreign()));
    const settled = new Batcher<number, number>(async (items, settle) => {
      settle(0, foreign());
      return [1];
    });
    expect(await Promise.all([codeOf(thrown.add(1)), codeOf(returned.add(1)), codeOf(settled.add(1))])).toEqual(['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED']);
  });

  it('a thrown non-Error becomes an Error', async () => {
    const b = new Batcher<number>(() => Promise.reject('just a string'));
    await expect(b.add(1)).rejects.toThrow('just a string');
  });

  it('outcomes that do not pair with the items fail the whole batch', async () => {
    const b = new Batcher<number, number>(async (items) => items.slice(1));
    const s = await Promise.allSettled([b.add(1), b.add(2)]);
    expect(s.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((s[0] as PromiseRejectedResult).reason.message).toBe('a flush of 2 items gave 1 outcomes');
  });

  it('leaves no rejection unhandled when every caller handles its own', async () => {
    let n = 0;
    const b = new Batcher<number, number>(async (items) => {
      n++;
      if (n % 3 === 0) throw new Error('whole batch');
      if (n % 3 === 1) throw 'not even an Error';
      return items.map((i) => (i % 2 ? new Error('one') : i));
    }, { maxItems: 2 });
    const settled = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => b.add(i)));
    await turn();
    expect(settled.filter((s) => s.status === 'rejected').length).toBeGreaterThan(6);
    expect(unhandled).toEqual([]);
  });

  it('a weigh that throws refuses that add alone', async () => {
    const b = new Batcher<number>(async () => undefined, {
      weigh: (n) => {
        if (n < 0) throw new RangeError('negative');
        return n;
      },
    });
    await expect(b.add(-1)).rejects.toThrow('negative');
    await expect(b.add(1)).resolves.toBeUndefined();
  });
});

describe('Batcher: drain and close for shutdown', () => {
  it('close flushes what is queued and waits for what is in flight, then refuses new items', async () => {
    const { batcher, flushes } = controlled<number, number>({ maxItems: 2 });
    const a = [1, 2, 3, 4, 5].map((n) => track(batcher.add(n)));
    await turn();
    expect(flushes).toHaveLength(1);
    const closed = track(batcher.close());
    await expect(batcher.add(6)).rejects.toBeInstanceOf(BatcherClosedError);
    flushes[0]!.resolve([1, 2]);
    await turn();
    expect(closed.state).toBe('pending');
    flushes[1]!.resolve([3, 4]);
    await turn();
    flushes[2]!.resolve([5]);
    await turn();
    expect(closed.state).toBe('resolved');
    expect(a.map((s) => s.value)).toEqual([1, 2, 3, 4, 5]);
    expect(flushes.map((f) => f.items)).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('close while items wait for their linger flushes them at once', async () => {
    const calls: number[][] = [];
    const b = new Batcher<number>(
      async (items) => {
        calls.push(items);
      },
      { linger: 60_000 },
    );
    const p = [b.add(1), b.add(2)];
    const started = Date.now();
    await b.close();
    await Promise.all(p);
    expect(calls).toEqual([[1, 2]]);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('close still settles callers whose flush fails, and resolves itself', async () => {
    const b = new Batcher<number>(async () => {
      throw new Error('disk full');
    });
    const p = b.add(1);
    await b.close();
    await expect(p).rejects.toThrow('disk full');
  });

  it('drain resolves at once when idle, and after the last flush otherwise, the batcher staying open', async () => {
    const { batcher, flushes } = controlled<number>();
    await batcher.drain();
    void batcher.add(1);
    const drained = track(batcher.drain());
    // drain does not wait for the linger.
    expect(flushes).toHaveLength(1);
    void batcher.add(2);
    flushes[0]!.resolve(undefined);
    await turn();
    expect(drained.state).toBe('pending');
    flushes[1]!.resolve(undefined);
    await turn();
    expect(drained.state).toBe('resolved');
    // Still open after a drain.
    void batcher.add(3);
    expect(batcher.idle).toBe(false);
  });
});

describe('Batcher: linger and admit', () => {
  it('a numeric linger waits that long for company, and flushes early once maxItems are queued', async () => {
    const calls: Array<{ items: number[]; at: number }> = [];
    const start = Date.now();
    const b = new Batcher<number>(
      async (items) => {
        calls.push({ items, at: Date.now() - start });
      },
      { linger: 40, maxItems: 3 },
    );
    const first = b.add(1);
    await sleep(10);
    const second = b.add(2);
    await Promise.all([first, second]);
    expect(calls[0]!.items).toEqual([1, 2]);
    expect(calls[0]!.at).toBeGreaterThanOrEqual(35);

    const full = [b.add(3), b.add(4), b.add(5)];
    await turn();
    expect(calls[1]!.items).toEqual([3, 4, 5]);
    await Promise.all(full);
  });

  it('passes over an item admit refuses; it keeps its place for the next flush', async () => {
    // One item per key in a batch, and none of a key being flushed (the consumer's rule for partitions).
    const { batcher, flushes } = controlled<{ key: string; n: number }>({
      concurrency: 2,
      admit: (item, batch, inFlight) => !batch.some((b) => b.key === item.key) && !inFlight.some((f) => f.some((b) => b.key === item.key)),
    });
    const items = [
      { key: 'p0', n: 1 },
      { key: 'p0', n: 2 },
      { key: 'p1', n: 3 },
      { key: 'p0', n: 4 },
      { key: 'p2', n: 5 },
    ];
    for (const i of items) void batcher.add(i);
    await turn();
    const ns = () => flushes.map((f) => f.items.map((i) => i.n));
    // The first batch takes p0, p1, p2; the second slot finds only p0 items, and p0 is in flight: nothing goes.
    expect(ns()).toEqual([[1, 3, 5]]);
    expect(batcher.queued).toBe(2);
    flushes[0]!.resolve(undefined);
    await turn();
    expect(ns()).toEqual([[1, 3, 5], [2]]);
    flushes[1]!.resolve(undefined);
    await turn();
    expect(ns()).toEqual([[1, 3, 5], [2], [4]]);
    flushes[2]!.resolve(undefined);
    await batcher.close();
  });

  it("admit can pass over an item too heavy for the batch so far, letting lighter ones join (the consumer's group cap)", async () => {
    type B = { partition: number; messages: number };
    const calls: number[][] = [];
    const b = new Batcher<B>(
      async (items) => {
        calls.push(items.map((i) => i.partition));
      },
      {
        concurrency: 2,
        admit: (item, group) => !group.some((g) => g.partition === item.partition) && group.reduce((s, g) => s + g.messages, 0) + item.messages <= 100,
      },
    );
    await Promise.all([{ partition: 0, messages: 60 }, { partition: 1, messages: 70 }, { partition: 2, messages: 30 }, { partition: 3, messages: 20 }].map((x) => b.add(x)));
    // 0 (60) + 2 (30) fit under 100; 1 (70) is passed over and heads the next group with 3 (20).
    expect(calls).toEqual([[0, 2], [1, 3]]);
  });

  it('with nothing in flight the first item always goes, even one admit would refuse', async () => {
    const calls: number[][] = [];
    const b = new Batcher<number>(
      async (items) => {
        calls.push(items);
      },
      { admit: () => false },
    );
    await Promise.all([b.add(1), b.add(2), b.add(3)]);
    expect(calls).toEqual([[1], [2], [3]]);
  });

  it('an admit that throws rejects that item alone', async () => {
    const calls: number[][] = [];
    const b = new Batcher<number>(
      async (items) => {
        calls.push(items);
      },
      {
        admit: (n) => {
          if (n === 2) throw new Error('no rule for 2');
          return true;
        },
      },
    );
    const s = await Promise.allSettled([b.add(1), b.add(2), b.add(3)]);
    expect(s.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(calls).toEqual([[1, 3]]);
    expect(b.idle).toBe(true);
  });
});

describe('Batcher: options and a randomised run', () => {
  it('refuses options it cannot honour', () => {
    const f = async () => undefined;
    expect(() => new Batcher<number>(f, { maxItems: 0 })).toThrow(RangeError);
    expect(() => new Batcher<number>(f, { maxWeight: 0 })).toThrow(RangeError);
    expect(() => new Batcher<number>(f, { concurrency: 0 })).toThrow(RangeError);
    expect(() => new Batcher<number>(f, { concurrency: 1.5 })).toThrow(RangeError);
    expect(() => new Batcher<number>(f, { linger: -1 })).toThrow(RangeError);
  });

  it('settles every item exactly once with its own outcome, in add order, within every cap (random load and failures)', async () => {
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const concurrency of [1, 2]) {
      const flushed: number[][] = [];
      let flying = 0;
      let most = 0;
      const b = new Batcher<number, number>(
        async (items) => {
          most = Math.max(most, ++flying);
          flushed.push(items);
          await sleep(rand() * 2);
          flying--;
          if (rand() < 0.1) throw new Error(`batch ${items[0]} failed`);
          return items.map((n) => (n % 7 === 0 ? new Error(`item ${n}`) : n * 2));
        },
        { maxItems: 5, maxWeight: 12, weigh: (n) => (n % 4) + 1, concurrency },
      );
      const adds: Array<Promise<string>> = [];
      let next = 0;
      for (let round = 0; round < 40; round++) {
        const k = Math.floor(rand() * 9);
        for (let i = 0; i < k; i++) {
          const n = next++;
          adds.push(b.add(n).then((v) => `ok ${v}`, (e: Error) => e.message));
        }
        if (rand() < 0.5) await turn();
        else await sleep(rand() * 2);
      }
      const outcomes = await Promise.all(adds);
      await b.close();
      // Each caller got its own outcome: its own doubled value, its own error, or its batch's error.
      outcomes.forEach((o, n) => {
        const batch = flushed.find((items) => items.includes(n))!;
        expect([`ok ${n * 2}`, `item ${n}`, `batch ${batch[0]} failed`]).toContain(o);
        if (n % 7 === 0) expect(o).not.toBe(`ok ${n * 2}`);
      });
      // Every item flushed exactly once, batches in add order, within the caps.
      expect(flushed.flat()).toEqual(Array.from({ length: next }, (_, i) => i));
      for (const items of flushed) {
        expect(items.length).toBeLessThanOrEqual(5);
        const weight = items.reduce((s, n) => s + (n % 4) + 1, 0);
        if (items.length > 1) expect(weight).toBeLessThanOrEqual(12);
      }
      expect(most).toBeLessThanOrEqual(concurrency);
    }
  });
});
