import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Batcher } from '@tollgate/platform';
import { OutgoingMessage } from './messaging';

/**
 * A bounded, durable, append-only log of messages on local disk: the gateway's spool for events the broker could
 * not acknowledge in time. Segments `<16-digit seq>.spool` under one directory, each starting with an 8-byte magic
 * (`TGSPOOL1`) and holding records framed as
 *
 *     [u32 BE payload length][u32 BE CRC-32 of the payload][payload: JSON {t: topic, k: key, v: value, b?: 1 when v is base64, h?: headers}]
 *
 * Appends are group-committed: everything queued while a write is in flight goes out in the next single write,
 * followed by one fdatasync; an append resolves only after its bytes are on disk. A reader (the drainer) sees only
 * what is synced. A segment is deleted once the drainer acknowledged all of it; progress within a segment is kept in
 * memory only, so after a crash a segment is re-sent from its start (duplicates: consumers dedupe by event_id).
 *
 * Crash windows:
 * - During a write (before its fdatasync returned): the append never resolved, so its call was not answered. The
 *   record may be missing, torn or (page cache partly flushed) garbled: open() keeps every record up to the first
 *   one that is short or fails its checksum, truncates the rest and says how many bytes it dropped.
 * - After the fdatasync, before the append's caller answered: the record is delivered after restart; the client
 *   got no answer but the call is recorded (the same window as a crash right after a broker ack).
 * - After the broker acknowledged a drained batch, before the segment is deleted: the segment is sent again at
 *   the next start (event_id dedupes).
 * - Between creating a segment and syncing the directory: the segment's first records are not acknowledged
 *   before the directory entry is synced, so a lost entry loses no acknowledged record.
 */
export const SpoolMagic = Buffer.from('TGSPOOL1', 'ascii');
const headerBytes = 8;

export class SpoolFullError extends Error {}

export interface SpoolLogOptions {
  /** Most bytes the spool may hold on disk (all segments, headers included); an append past it is refused. */
  maxBytes: number;
  /** A new segment is started once the active one reaches this size (default 4 MiB). */
  segmentBytes?: number;
  log?: (level: 'error' | 'warn' | 'info', message: string, extra?: Record<string, unknown>) => void;
}

interface Segment {
  seq: number;
  path: string;
  /** Synced bytes: every record below is whole and on disk. */
  size: number;
  /** Where the drainer resumes: records below were acknowledged by the broker. */
  readPos: number;
}

/** A batch read for sending; pass it back to `acknowledge` once the broker has it. */
export interface SpoolBatch {
  messages: Array<{ topic: string; message: OutgoingMessage }>;
  bytes: number;
  segment: number;
  end: number;
}

/** Encodes one message as a framed record. */
export function encodeRecord(topic: string, m: OutgoingMessage): Buffer {
  const binary = Buffer.isBuffer(m.value);
  const body: Record<string, unknown> = { t: topic, k: m.key, v: binary ? (m.value as Buffer).toString('base64') : m.value };
  if (binary) body.b = 1;
  if (m.headers && Object.keys(m.headers).length > 0) body.h = m.headers;
  const payload = Buffer.from(JSON.stringify(body), 'utf8');
  const frame = Buffer.allocUnsafe(8 + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt32BE(crc32(payload), 4);
  payload.copy(frame, 8);
  return frame;
}

/**
 * Decodes the records of `buf` from `from`. Stops at the end, or at the first record that is incomplete or fails
 * its checksum (`torn`): `end` is the offset after the last whole record.
 */
export function decodeRecords(buf: Buffer, from = 0, limitBytes = Infinity): { records: Array<{ topic: string; message: OutgoingMessage }>; end: number; torn: boolean } {
  const records: Array<{ topic: string; message: OutgoingMessage }> = [];
  let pos = from;
  while (pos < buf.length && pos - from < limitBytes) {
    if (buf.length - pos < 8) return { records, end: pos, torn: true };
    const len = buf.readUInt32BE(pos);
    const sum = buf.readUInt32BE(pos + 4);
    if (buf.length - pos - 8 < len) return { records, end: pos, torn: true };
    const payload = buf.subarray(pos + 8, pos + 8 + len);
    if (crc32(payload) !== sum) return { records, end: pos, torn: true };
    let body: { t: string; k: string; v: string; b?: number; h?: Record<string, string> };
    try {
      body = JSON.parse(payload.toString('utf8')) as typeof body;
    } catch {
      return { records, end: pos, torn: true };
    }
    const message: OutgoingMessage = { key: body.k, value: body.b ? Buffer.from(body.v, 'base64') : body.v };
    if (body.h) message.headers = body.h;
    records.push({ topic: body.t, message });
    pos += 8 + len;
  }
  return { records, end: pos, torn: false };
}

export class SpoolLog {
  private readonly segments: Segment[] = [];
  private active: { seq: number; fh: fs.FileHandle } | null = null;
  /**
   * The group commit: one write and one fdatasync per batch of frames, one batch at a time. `linger: 'none'`: an
   * append to an idle spool is written at once; those made while a write is in flight go together in the next.
   */
  private readonly appends = new Batcher<Buffer>((frames) => this.writeFrames(frames), { linger: 'none' });
  /** Bytes appended and not yet written (queued, or in the write in flight). */
  private queuedBytes = 0;
  /** Serialises segment creation, writes and deletion. */
  private lock: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly segmentBytes: number;

  private constructor(readonly dir: string, private readonly opts: SpoolLogOptions) {
    this.segmentBytes = opts.segmentBytes ?? 4 * 1024 * 1024;
  }

  /**
   * Opens (creating) the spool in `dir`, recovering what a previous process left: every whole record is kept
   * for the drainer, a torn tail is cut off. Refuses a directory another live process holds (`owner.pid`).
   */
  static async open(dir: string, opts: SpoolLogOptions): Promise<SpoolLog> {
    await fs.mkdir(dir, { recursive: true });
    await claimOwnership(dir);
    const spool = new SpoolLog(dir, opts);
    await spool.recover();
    return spool;
  }

  private async recover(): Promise<void> {
    const names = (await fs.readdir(this.dir)).filter((n) => /^\d{16}\.spool$/.test(n)).sort();
    for (const name of names) {
      const path = join(this.dir, name);
      const buf = await fs.readFile(path);
      if (buf.length < headerBytes || !buf.subarray(0, headerBytes).equals(SpoolMagic)) {
        // Created but its header never synced (a crash right after creation): it holds no acknowledged record.
        this.opts.log?.('warn', `spool: ${path} has no valid header (${buf.length} bytes); removing it`);
        await fs.rm(path, { force: true });
        continue;
      }
      const { records, end, torn } = decodeRecords(buf, headerBytes);
      if (torn) {
        this.opts.log?.('warn', `spool: ${path}: dropped a torn tail of ${buf.length - end} bytes after ${records.length} whole records (a write cut short by a crash; its call was never answered)`);
        const fh = await fs.open(path, 'r+');
        try {
          await fh.truncate(end);
          await fh.datasync();
        } finally {
          await fh.close();
        }
      }
      if (records.length === 0) {
        await fs.rm(path, { force: true });
        continue;
      }
      this.segments.push({ seq: Number(name.slice(0, 16)), path, size: end, readPos: headerBytes });
    }
    const pending = this.pendingRecordsBytes();
    if (pending > 0) this.opts.log?.('warn', `spool: ${this.segments.length} segment(s), ${pending} bytes of events left by an earlier run; sending them first`);
  }

  get maxBytes(): number {
    return this.opts.maxBytes;
  }

  /** Bytes on disk (all segments), plus appends queued for the next write. */
  bytes(): number {
    return this.segments.reduce((s, g) => s + g.size, 0) + this.queuedBytes;
  }

  /** True while anything is spooled or being appended that the broker has not acknowledged. */
  holdsAny(): boolean {
    return !this.appends.idle || this.segments.some((s) => s.readPos < s.size);
  }

  private pendingRecordsBytes(): number {
    return this.segments.reduce((s, g) => s + (g.size - g.readPos), 0);
  }

  /** Appends messages durably; resolves once they are fdatasync'd. Refuses with SpoolFullError past maxBytes. */
  append(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('spool is closed'));
    const frame = Buffer.concat(messages.map((m) => encodeRecord(topic, m)));
    if (this.bytes() + frame.length + headerBytes > this.opts.maxBytes) {
      return Promise.reject(new SpoolFullError(`the gateway's event spool is full (${this.bytes()} of ${this.opts.maxBytes} bytes)`));
    }
    this.queuedBytes += frame.length;
    return this.appends.add(frame);
  }

  private async writeFrames(frames: Buffer[]): Promise<void> {
    const buf = frames.length === 1 ? frames[0]! : Buffer.concat(frames);
    try {
      await this.exclusive(() => this.writeDurably(buf));
    } finally {
      this.queuedBytes -= buf.length;
    }
  }

  private async writeDurably(buf: Buffer): Promise<void> {
    let seg = this.activeSegment();
    if (!this.active || !seg || seg.size >= this.segmentBytes) seg = await this.startSegment();
    const fh = this.active!.fh;
    try {
      let written = 0;
      while (written < buf.length) written += (await fh.write(buf, written, buf.length - written, seg.size + written)).bytesWritten;
      await fh.datasync();
    } catch (e) {
      // Nothing of this write is acknowledged: cut it off so a later append does not follow garbage.
      await fh.truncate(seg.size).catch(() => undefined);
      throw e;
    }
    seg.size += buf.length;
  }

  private activeSegment(): Segment | undefined {
    return this.active ? this.segments.find((s) => s.seq === this.active!.seq) : undefined;
  }

  private async startSegment(): Promise<Segment> {
    if (this.active) await this.active.fh.close();
    const seq = Math.max(0, ...this.segments.map((s) => s.seq)) + 1;
    const path = join(this.dir, `${String(seq).padStart(16, '0')}.spool`);
    const fh = await fs.open(path, 'wx');
    await fh.write(SpoolMagic, 0, headerBytes, 0);
    await fh.datasync();
    await syncDir(this.dir);
    this.active = { seq, fh };
    const seg: Segment = { seq, path, size: headerBytes, readPos: headerBytes };
    this.segments.push(seg);
    return seg;
  }

  /** The next synced records not yet acknowledged, oldest first, up to about `maxBytes`; null when there are none. */
  async next(maxBytes = 1024 * 1024): Promise<SpoolBatch | null> {
    const seg = this.segments.find((s) => s.readPos < s.size);
    if (!seg) return null;
    const fh = await fs.open(seg.path, 'r');
    try {
      const want = seg.size - seg.readPos;
      let length = Math.min(want, Math.max(maxBytes, 8));
      let buf = Buffer.allocUnsafe(length);
      await fh.read(buf, 0, length, seg.readPos);
      // A record larger than the read: read at least the first one whole.
      if (length >= 8) {
        const first = 8 + buf.readUInt32BE(0);
        if (first > length && first <= want) {
          length = first;
          buf = Buffer.allocUnsafe(length);
          await fh.read(buf, 0, length, seg.readPos);
        }
      }
      const { records, end } = decodeRecords(buf, 0);
      if (records.length === 0) throw new Error(`spool: ${seg.path} at ${seg.readPos}: unreadable record in synced data`);
      return { messages: records, bytes: end, segment: seg.seq, end: seg.readPos + end };
    } finally {
      await fh.close();
    }
  }

  /** The broker has `batch`: its records are never sent again by this process; a finished segment is deleted. */
  async acknowledge(batch: SpoolBatch): Promise<void> {
    await this.exclusive(async () => {
      const seg = this.segments.find((s) => s.seq === batch.segment);
      if (!seg) return;
      seg.readPos = Math.max(seg.readPos, batch.end);
      if (seg.readPos < seg.size) return;
      if (this.active?.seq === seg.seq) {
        // The active segment is finished only if no append is waiting for it; the next append starts a new one.
        if (this.appends.queued > 0) return;
        await this.active.fh.close();
        this.active = null;
      }
      // Crash before this unlink: the segment is sent again at start (duplicates, deduped by event_id).
      await fs.rm(seg.path, { force: true });
      this.segments.splice(this.segments.indexOf(seg), 1);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.appends.close();
    await this.exclusive(async () => {
      await this.active?.fh.close();
      this.active = null;
    });
    await fs.rm(join(this.dir, 'owner.pid'), { force: true });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }
}

/** One process per spool directory: two drainers of one spool would not lose anything, but sizes would be wrong. */
async function claimOwnership(dir: string): Promise<void> {
  const file = join(dir, 'owner.pid');
  const existing = await fs.readFile(file, 'utf8').catch(() => null);
  const pid = existing ? Number(existing.trim()) : 0;
  if (pid > 0 && pid !== process.pid && alive(pid)) {
    throw new Error(`the spool directory ${dir} is in use by process ${pid}; give each gateway its own GATEWAY_SPOOL_DIR (remove ${file} if that process is not a gateway)`);
  }
  await fs.writeFile(file, String(process.pid));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const crcTable = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE), as zlib computes it. */
export function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = crcTable[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
