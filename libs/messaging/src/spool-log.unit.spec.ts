import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, decodeRecords, encodeRecord, SpoolFullError, SpoolLog, SpoolMagic } from './spool-log';
import { OutgoingMessage, Publisher } from './messaging';
import { SpoolingPublisher, SpoolingPublisherOptions } from './spooling-publisher';
import { DeadLetterFile } from './dead-letter-file';

const msg = (i: number): OutgoingMessage => ({ key: `org-${i % 3}`, value: JSON.stringify({ event_id: `e-${i}`, n: i }) });

async function tempDir(): Promise<string> {
  return fs.mkdtemp(join(tmpdir(), 'tollgate-spool-'));
}

async function drainAll(spool: SpoolLog): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const b = await spool.next(200);
    if (!b) return out;
    for (const r of b.messages) out.push(String(r.message.value));
    await spool.acknowledge(b);
  }
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((n) => n.endsWith('.spool')).sort();
}

describe('spool record format', () => {
  it('frames a record as length, CRC-32 of the payload, payload; decodes strings, binary values and headers back', () => {
    const frame = encodeRecord('t1', { key: 'k', value: 'v', headers: { a: 'b' } });
    const len = frame.readUInt32BE(0);
    expect(frame.length).toBe(8 + len);
    expect(frame.readUInt32BE(4)).toBe(crc32(frame.subarray(8)));
    const bin = encodeRecord('t2', { key: 'k2', value: Buffer.from([0, 1, 255]) });
    const { records, end, torn } = decodeRecords(Buffer.concat([frame, bin]));
    expect(torn).toBe(false);
    expect(end).toBe(frame.length + bin.length);
    expect(records).toEqual([
      { topic: 't1', message: { key: 'k', value: 'v', headers: { a: 'b' } } },
      { topic: 't2', message: { key: 'k2', value: Buffer.from([0, 1, 255]) } },
    ]);
  });

  it('CRC-32 is the IEEE one zlib computes', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
  });

  it('stops at a short or corrupted record and reports where the whole records end', () => {
    const a = encodeRecord('t', msg(1));
    const b = encodeRecord('t', msg(2));
    expect(decodeRecords(Buffer.concat([a, b.subarray(0, b.length - 1)]))).toMatchObject({ end: a.length, torn: true });
    expect(decodeRecords(Buffer.concat([a, b.subarray(0, 5)]))).toMatchObject({ end: a.length, torn: true });
    const flipped = Buffer.from(b);
    flipped[flipped.length - 2] = flipped[flipped.length - 2]! ^ 0x20;
    expect(decodeRecords(Buffer.concat([a, flipped]))).toMatchObject({ end: a.length, torn: true });
  });
});

describe('SpoolLog', () => {
  it('gives back appended messages in order across segments and deletes the segments it drained', async () => {
    const dir = await tempDir();
    const spool = await SpoolLog.open(dir, { maxBytes: 1024 * 1024, segmentBytes: 300 });
    for (let i = 0; i < 30; i++) await spool.append('t', [msg(i)]);
    expect((await segmentFiles(dir)).length).toBeGreaterThan(1);
    expect(spool.holdsAny()).toBe(true);
    expect(await drainAll(spool)).toEqual(Array.from({ length: 30 }, (_, i) => String(msg(i).value)));
    expect(spool.holdsAny()).toBe(false);
    expect(await segmentFiles(dir)).toEqual([]);
    expect(spool.bytes()).toBe(0);
    await spool.close();
  });

  it('group-commits appends: those made while a write is in flight go in one write and one fdatasync, each resolving once synced', async () => {
    const dir = await tempDir();
    const spool = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    await spool.append('t', [msg(0)]); // the segment exists from here on
    const probe = await fs.open(join(dir, 'probe'), 'w');
    const syncs = jest.spyOn(Object.getPrototypeOf(probe) as { datasync: () => Promise<void> }, 'datasync');
    await probe.close();
    try {
      const appends = Array.from({ length: 50 }, (_, i) => spool.append('t', [msg(i + 1)]));
      expect(spool.holdsAny()).toBe(true);
      await Promise.all(appends);
      // The first append is written at once, alone; the 49 made while it was being written go together.
      expect(syncs).toHaveBeenCalledTimes(2);
    } finally {
      syncs.mockRestore();
    }
    expect(await drainAll(spool)).toEqual(Array.from({ length: 51 }, (_, i) => String(msg(i).value)));
    await spool.close();
  });

  it('close waits for the appends under way: each one that resolved is on disk for the next start', async () => {
    const dir = await tempDir();
    const spool = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    const appends = Array.from({ length: 5 }, (_, i) => spool.append('t', [msg(i)]));
    await spool.close();
    await Promise.all(appends);
    await expect(spool.append('t', [msg(9)])).rejects.toThrow('spool is closed');
    const again = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    expect(await drainAll(again)).toEqual(Array.from({ length: 5 }, (_, i) => String(msg(i).value)));
    await again.close();
  });

  it('recovers what a previous process left, in order, and sends a partly drained segment again from its start', async () => {
    const dir = await tempDir();
    const first = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    for (let i = 0; i < 5; i++) await first.append('t', [msg(i)]);
    const b = (await first.next(1))!; // one record acknowledged, nothing deleted
    await first.acknowledge(b);
    // The process dies here: no close().
    const second = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    expect(await drainAll(second)).toEqual([0, 1, 2, 3, 4].map((i) => String(msg(i).value)));
    await second.close();
    await first.close(); // only to release the file handle the "crashed" one kept
  });

  it('cuts a torn tail (a write cut short by a crash) and keeps every whole record before it', async () => {
    const dir = await tempDir();
    const first = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    for (let i = 0; i < 3; i++) await first.append('t', [msg(i)]);
    const [file] = await segmentFiles(dir);
    const path = join(dir, file!);
    const whole = (await fs.stat(path)).size;
    const torn = encodeRecord('t', msg(3));
    await fs.appendFile(path, torn.subarray(0, torn.length - 7));
    const warnings: string[] = [];
    const second = await SpoolLog.open(dir, { maxBytes: 1024 * 1024, log: (_l, m) => warnings.push(m) });
    expect((await fs.stat(path)).size).toBe(whole);
    expect(warnings.join('\n')).toMatch(/torn tail of \d+ bytes after 3 whole records/);
    // Appends after recovery follow the last whole record.
    await second.append('t', [msg(4)]);
    expect(await drainAll(second)).toEqual([0, 1, 2, 4].map((i) => String(msg(i).value)));
    await second.close();
    await first.close();
  });

  it('removes a segment whose header never reached the disk', async () => {
    const dir = await tempDir();
    await fs.writeFile(join(dir, '0000000000000001.spool'), SpoolMagic.subarray(0, 3));
    const spool = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    expect(spool.holdsAny()).toBe(false);
    expect(await segmentFiles(dir)).toEqual([]);
    await spool.close();
  });

  it('refuses an append past maxBytes (SpoolFullError) and takes appends again once drained', async () => {
    const dir = await tempDir();
    const spool = await SpoolLog.open(dir, { maxBytes: 600 });
    let taken = 0;
    let refused: unknown = null;
    for (let i = 0; i < 50 && !refused; i++) {
      await spool.append('t', [msg(i)]).then(() => taken++, (e: unknown) => (refused = e));
    }
    expect(refused).toBeInstanceOf(SpoolFullError);
    expect(spool.bytes()).toBeLessThanOrEqual(600);
    expect((await drainAll(spool)).length).toBe(taken);
    await expect(spool.append('t', [msg(99)])).resolves.toBeUndefined();
    await spool.close();
  });

  it('refuses a directory a live process already holds', async () => {
    const dir = await tempDir();
    await fs.writeFile(join(dir, 'owner.pid'), String(process.ppid));
    await expect(SpoolLog.open(dir, { maxBytes: 1024 * 1024 })).rejects.toThrow(/in use by process/);
  });
});

/** A broker stand-in: `down` makes sends hang (a stopped broker) until it comes back. */
class FakeBroker implements Publisher {
  readonly received: string[] = [];
  private waiters: Array<() => void> = [];
  down = false;
  async publish(_topic: string, messages: OutgoingMessage[]): Promise<void> {
    while (this.down) await new Promise<void>((r) => this.waiters.push(r));
    for (const m of messages) this.received.push(String(m.value));
  }
  up(): void {
    this.down = false;
    for (const w of this.waiters.splice(0)) w();
  }
  async close(): Promise<void> {}
}

/** A SpoolingPublisher over `spool`, its dead letters in the spool's directory. */
async function spooling(inner: Publisher, spool: SpoolLog, opts: SpoolingPublisherOptions): Promise<SpoolingPublisher> {
  return new SpoolingPublisher(inner, spool, await DeadLetterFile.open(spool.dir), opts);
}

describe('SpoolingPublisher', () => {
  const until = async (fn: () => boolean) => {
    for (let i = 0; i < 400 && !fn(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(fn()).toBe(true);
  };

  it('answers from the spool when the broker does not ack in time, and delivers everything once it is back, in order', async () => {
    const broker = new FakeBroker();
    const spool = await SpoolLog.open(await tempDir(), { maxBytes: 1024 * 1024 });
    const publisher = await spooling(broker, spool, { deadlineMs: 30, retryMs: 5 });
    publisher.start();
    await publisher.publish('t', [msg(0)]);
    broker.down = true;
    const started = Date.now();
    for (let i = 1; i <= 5; i++) await publisher.publish('t', [msg(i)]);
    expect(Date.now() - started).toBeLessThan(1000); // only the first waited for the deadline
    expect(spool.holdsAny()).toBe(true);
    broker.up();
    await until(() => !spool.holdsAny());
    // Message 1's own send landed after the deadline, and its spooled copy too: a duplicate, deduped by event_id.
    const distinct = [...new Set(broker.received)];
    expect(distinct).toEqual([0, 1, 2, 3, 4, 5].map((i) => String(msg(i).value)));
    // While the spool held anything, new messages went behind it: the broker saw 2..5 in order.
    const order = broker.received.filter((v) => v !== String(msg(1).value));
    expect(order).toEqual([0, 2, 3, 4, 5].map((i) => String(msg(i).value)));
    await publisher.close();
  });

  it('rejects when the spool is full, so the call is refused rather than unrecorded', async () => {
    const broker = new FakeBroker();
    broker.down = true;
    const spool = await SpoolLog.open(await tempDir(), { maxBytes: 400 });
    const publisher = await spooling(broker, spool, { deadlineMs: 5 });
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => publisher.publish('t', [msg(i)])));
    expect(results.some((r) => r.status === 'rejected')).toBe(true);
    expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
    expect(publisher.accepting(0.5)).toBe(false);
    broker.up();
    await until(() => !spool.holdsAny());
    await publisher.close();
  });

  it('takes a new broker publisher when the current one keeps refusing (an idempotent producer stuck after an unclean broker restart)', async () => {
    const stuck: Publisher = { publish: () => Promise.reject(new Error('OutOfOrderSequenceException')), close: async () => undefined };
    const fresh = new FakeBroker();
    const spool = await SpoolLog.open(await tempDir(), { maxBytes: 1024 * 1024 });
    const publisher = await spooling(stuck, spool, { deadlineMs: 20, retryMs: 2, maxRetryMs: 10, connect: async () => fresh });
    publisher.start();
    for (let i = 0; i < 3; i++) await publisher.publish('t', [msg(i)]);
    await until(() => !spool.holdsAny());
    expect(fresh.received).toEqual([0, 1, 2].map((i) => String(msg(i).value)));
    await publisher.publish('t', [msg(3)]); // and the direct path uses it too
    expect(fresh.received).toHaveLength(4);
    await publisher.close();
  });

  it('sends what an earlier run left in the spool before anything new', async () => {
    const dir = await tempDir();
    const left = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    await left.append('t', [msg(0), msg(1)]);
    await left.close(); // the earlier process is gone (close keeps what is unsent)
    const broker = new FakeBroker();
    const publisher = await spooling(broker, await SpoolLog.open(dir, { maxBytes: 1024 * 1024 }), { deadlineMs: 50, retryMs: 5 });
    publisher.start();
    await publisher.publish('t', [msg(2)]);
    await until(() => broker.received.length === 3 && !publisher.spool.holdsAny());
    expect(broker.received).toEqual([0, 1, 2].map((i) => String(msg(i).value)));
    expect(await segmentFiles(dir)).toEqual([]);
    await publisher.close();
  });
});
