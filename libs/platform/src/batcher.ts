import { types } from 'node:util';

/**
 * What a flush gives back: one outcome per item, in the items' order (an Error, see isError, rejects that item
 * alone, anything else resolves it), or nothing at all when the items resolve with no value. A flush that throws or
 * rejects fails every item of its batch with that error.
 */
export type BatchOutcomes<R> = ReadonlyArray<R | Error> | (R extends void ? void : never);

/**
 * Flushes one batch. `settle(i, outcome)` hands item i its outcome before the flush is over (a slow path that
 * decides items one by one need not keep the first ones waiting for the last); an item settled early keeps that
 * outcome, whatever the flush returns or throws afterwards.
 */
export type Flush<T, R> = (items: T[], settle: (index: number, outcome: R | Error) => void) => Promise<BatchOutcomes<R>>;

export interface BatcherOptions<T> {
  /** Most items in one flush (default: no limit). */
  maxItems?: number;
  /**
   * Most total weight (bytes, messages: whatever `weigh` says) of one flush. The first item of a flush always goes,
   * however heavy; a batch stops at the first item that would take it past the limit, so items never overtake
   * each other for their weight. Each item is weighed once, when it is added.
   */
  maxWeight?: number;
  weigh?: (item: T) => number;
  /** Most flushes in flight at once (default 1: a flush starts only once the one before it has settled). */
  concurrency?: number;
  /**
   * How long the first item waits for company while a flush could start: `'turn'` (the default) until the event
   * loop has handled every socket it found ready (setImmediate: microseconds, no timer), `'none'` not at all (the
   * flush starts inside `add`), or a number of milliseconds (a flush then starts early once maxItems or maxWeight
   * is reached). Items that queue while every flush slot is taken go as soon as one frees, with no linger.
   */
  linger?: 'turn' | 'none' | number;
  /**
   * Whether `item` may join `batch` now, given the batches in flight (e.g. one per key, or none of a key already
   * being flushed). An item refused is passed over and keeps its place for a later flush. With nothing in flight
   * the first item of a batch is not asked: it always goes, so the batcher never stalls.
   */
  admit?: (item: T, batch: readonly T[], inFlight: ReadonlyArray<readonly T[]>) => boolean;
}

export class BatcherClosedError extends Error {}

interface Waiting<T, R> {
  item: T;
  weight: number;
  resolve: (r: R) => void;
  reject: (e: Error) => void;
}

/**
 * Whether `e` is an Error, made in this realm or another: node's own errors (a refused connection's, say) come from
 * the main realm, which under a vm context (as jest runs code) has another Error, and must still reject, unwrapped.
 */
export const isError = (e: unknown): e is Error => e instanceof Error || types.isNativeError(e);

/** `e` if it is an Error (see isError), else an Error saying what it is. */
export const asError = (e: unknown): Error => (isError(e) ? e : new Error(String(e)));

/**
 * Coalesces concurrent calls into batches: `add` queues an item and returns a promise of that item's own outcome;
 * the queued items go to one async `flush` per batch (at most `maxItems` and `maxWeight` each, at most
 * `concurrency` flushes in flight), and each caller is resolved or rejected with its own result. When a flush
 * settles, the next one starts at once with whatever queued meanwhile: an idle process pays no delay, a busy one
 * pays one round trip (one send, one commit, one fdatasync) per batch instead of per call.
 *
 * Exactness: an item's promise settles only once its flush has settled, so a caller that waits for it knows the
 * flush's effect happened (a broker ack, a commit, an fsync) or failed. A flush that throws (synchronously too) or
 * rejects fails its whole batch with that error; the batcher itself never leaves a rejection unhandled. `close`
 * refuses new items and flushes every queued one before it resolves.
 */
export class Batcher<T, R = void> {
  private queue: Array<Waiting<T, R>> = [];
  private queuedWeight = 0;
  private readonly flying = new Set<readonly T[]>();
  private timer: { cancel: () => void } | null = null;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  private readonly maxItems: number;
  private readonly maxWeight: number;
  private readonly concurrency: number;
  private readonly linger: 'turn' | 'none' | number;

  constructor(
    private readonly flush: Flush<T, R>,
    private readonly opts: BatcherOptions<T> = {},
  ) {
    this.maxItems = opts.maxItems ?? Number.POSITIVE_INFINITY;
    this.maxWeight = opts.maxWeight ?? Number.POSITIVE_INFINITY;
    this.concurrency = opts.concurrency ?? 1;
    this.linger = opts.linger ?? 'turn';
    if (!(this.maxItems >= 1)) throw new RangeError(`maxItems must be at least 1 (got ${opts.maxItems})`);
    if (!(this.maxWeight > 0)) throw new RangeError(`maxWeight must be positive (got ${opts.maxWeight})`);
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new RangeError(`concurrency must be a positive integer (got ${opts.concurrency})`);
    if (typeof this.linger === 'number' && !(this.linger >= 0)) throw new RangeError(`linger must be 'turn', 'none' or milliseconds >= 0 (got ${opts.linger})`);
  }

  /** Items waiting for a flush (not yet in one). */
  get queued(): number {
    return this.queue.length;
  }

  /** Flushes started and not yet settled. */
  get inFlight(): number {
    return this.flying.size;
  }

  /** Nothing queued and nothing being flushed. */
  get idle(): boolean {
    return this.queue.length === 0 && this.flying.size === 0;
  }

  /** Queues `item`; resolves or rejects with its own outcome once the flush it went in has settled. */
  add(item: T): Promise<R> {
    if (this.closed) return Promise.reject(new BatcherClosedError('the batcher is closed'));
    return new Promise<R>((resolve, reject) => {
      const weight = this.opts.weigh ? this.opts.weigh(item) : 1;
      this.queue.push({ item, weight, resolve, reject });
      this.queuedWeight += weight;
      this.schedule();
    });
  }

  /** Flushes what is queued now without waiting for the linger; resolves once nothing is queued or in flight. */
  drain(): Promise<void> {
    this.cancelTimer();
    this.pump();
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Refuses new items (BatcherClosedError), flushes every queued one and waits for every flush in flight. */
  close(): Promise<void> {
    this.closed = true;
    return this.drain();
  }

  private schedule(): void {
    // Every slot taken: the flush that settles first starts the next one.
    if (this.flying.size >= this.concurrency) return;
    const full = this.queue.length >= this.maxItems || this.queuedWeight >= this.maxWeight;
    if (this.linger === 'none' || (typeof this.linger === 'number' && full)) {
      this.cancelTimer();
      this.pump();
      return;
    }
    if (this.timer) return;
    if (this.linger === 'turn') {
      const t = setImmediate(() => this.lingered());
      this.timer = { cancel: () => clearImmediate(t) };
    } else {
      const t = setTimeout(() => this.lingered(), this.linger);
      this.timer = { cancel: () => clearTimeout(t) };
    }
  }

  private lingered(): void {
    this.timer = null;
    this.pump();
  }

  private cancelTimer(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  /** Starts flushes while a slot is free and something can go. */
  private pump(): void {
    while (this.flying.size < this.concurrency && this.queue.length > 0) {
      const batch = this.take();
      if (batch.length === 0) break;
      this.run(batch);
    }
    if (this.queue.length === 0) this.cancelTimer();
    this.notifyIdle();
  }

  /** The next batch, in queue order, within maxItems and maxWeight, of the items `admit` lets in. */
  private take(): Array<Waiting<T, R>> {
    const admit = this.opts.admit;
    const batch: Array<Waiting<T, R>> = [];
    const items: T[] = [];
    const passed: Array<Waiting<T, R>> = [];
    const flying = admit ? [...this.flying] : [];
    let weight = 0;
    let i = 0;
    for (; i < this.queue.length && batch.length < this.maxItems; i++) {
      const w = this.queue[i]!;
      if (admit && (batch.length > 0 || flying.length > 0)) {
        let ok: boolean;
        try {
          ok = admit(w.item, items, flying);
        } catch (e) {
          // A broken rule fails its item alone rather than the batcher.
          this.queuedWeight -= w.weight;
          w.reject(asError(e));
          continue;
        }
        if (!ok) {
          passed.push(w);
          continue;
        }
      }
      if (batch.length > 0 && weight + w.weight > this.maxWeight) break;
      batch.push(w);
      items.push(w.item);
      weight += w.weight;
    }
    if (passed.length === 0) this.queue.splice(0, i);
    else this.queue = passed.concat(this.queue.slice(i));
    this.queuedWeight -= weight;
    return batch;
  }

  private run(batch: Array<Waiting<T, R>>): void {
    const items = batch.map((w) => w.item);
    this.flying.add(items);
    const early = (i: number, o: R | Error) => {
      const w = batch[i];
      if (!w) return;
      if (isError(o)) w.reject(o);
      else w.resolve(o);
    };
    let flushed: Promise<BatchOutcomes<R>>;
    try {
      flushed = Promise.resolve(this.flush(items, early));
    } catch (e) {
      flushed = Promise.reject(asError(e));
    }
    void flushed
      .then(
        (outcomes) => this.settle(batch, outcomes),
        (e: unknown) => {
          const err = asError(e);
          for (const w of batch) w.reject(err);
        },
      )
      .finally(() => {
        this.flying.delete(items);
        this.pump();
      });
  }

  private settle(batch: Array<Waiting<T, R>>, outcomes: BatchOutcomes<R>): void {
    if (outcomes === undefined) {
      for (const w of batch) w.resolve(undefined as R);
      return;
    }
    const list = outcomes as ReadonlyArray<R | Error>;
    if (list.length !== batch.length) {
      // Outcomes that don't pair with the items can't be handed out: every item of the batch fails.
      const err = new Error(`a flush of ${batch.length} items gave ${list.length} outcomes`);
      for (const w of batch) w.reject(err);
      return;
    }
    batch.forEach((w, i) => {
      const o = list[i] as R | Error;
      if (isError(o)) w.reject(o);
      else w.resolve(o);
    });
  }

  private notifyIdle(): void {
    if (!this.idle || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of waiters) r();
  }
}
