// Over 400 lines on purpose: everything the fault suite's scenarios share (broker, PostgreSQL cluster, load, checks), kept in one place so run.ts reads as the scenarios alone.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { Client } from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { MeteringConsumerGroup, Topics } from '@tollgate/contracts';
import { freePort, repoRoot, Stack } from '../support/stack';

/**
 * What the fault suite needs around the stack: its own broker it may kill and restart, its own PostgreSQL cluster
 * it may stop, a load generator that remembers every answer, and the checks every scenario ends with.
 */

// ---- the broker ------------------------------------------------------------------------------------------

interface KafkaHandle {
  brokers: string;
  started: boolean;
  pid?: number;
  stop(): Promise<void>;
}

interface Infra {
  ensureKafka(o: { log?: (m: string) => void; fresh?: boolean; name?: string; data?: string }): Promise<KafkaHandle>;
  ensureDatabase(url: string, o: { log?: (m: string) => void; fresh?: boolean }): Promise<string>;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const infra = require(join(repoRoot, 'scripts', 'infra.js')) as Infra;
const say = (m: string) => process.stderr.write(`faults: ${m}\n`);

/** The suite's own broker (`.tollgate/kafka-faults`, port FAULTS_KAFKA_PORT or 39792): killing it disturbs no one. */
export class Broker {
  private handle: KafkaHandle | null = null;

  async start(fresh: boolean): Promise<string> {
    const brokers = process.env.KAFKA_BROKERS;
    delete process.env.KAFKA_BROKERS; // ensureKafka would only check a broker named there
    const handle = await infra.ensureKafka({ log: say, fresh, name: 'kafka-faults', data: 'data' }).finally(() => {
      if (brokers) process.env.KAFKA_BROKERS = brokers;
    });
    if (!handle.started) throw new Error(`a broker already answers at ${handle.brokers}: the fault suite needs one it starts itself (set FAULTS_KAFKA_PORT)`);
    this.handle = handle;
    return handle.brokers;
  }

  /** SIGKILL: the broker dies without flushing or saying goodbye. */
  kill(): void {
    this.signal('SIGKILL');
  }

  pause(): void {
    this.signal('SIGSTOP');
  }

  resume(): void {
    this.signal('SIGCONT');
  }

  private signal(sig: NodeJS.Signals): void {
    try {
      if (this.handle?.pid) process.kill(this.handle.pid, sig);
    } catch {
      /* already gone */
    }
  }

  async restart(): Promise<void> {
    await this.handle?.stop().catch(() => undefined);
    await this.start(false);
  }

  async stop(): Promise<void> {
    this.resume();
    await this.handle?.stop();
  }
}

// ---- PostgreSQL ------------------------------------------------------------------------------------------

/**
 * A PostgreSQL cluster the suite may stop (FAULTS_PG_CLUSTER, default `<version>/tgfaults` on FAULTS_PG_PORT 5499,
 * created with pg_createcluster on first use): stopping the machine's main cluster would take the database away
 * from everything else running here. Stopped clusters are started again on every exit path.
 */
export class Postgres {
  private stopped = false;
  readonly version: string;
  readonly cluster: string;
  port = 0;

  constructor(spec = process.env.FAULTS_PG_CLUSTER ?? '') {
    const [version, cluster] = spec.includes('/') ? spec.split('/') : [installedVersion(), 'tgfaults'];
    this.version = version!;
    this.cluster = cluster!;
    // Must not throw: the exit listeners after this one stop the apps and the broker.
    const restart = () => {
      if (!this.stopped) return;
      this.stopped = false;
      try {
        this.ctl('start');
      } catch (e) {
        say(`could not start PostgreSQL ${this.version}/${this.cluster} again: ${(e as Error).message}`);
      }
    };
    process.once('exit', restart);
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.once(sig, () => {
        restart();
        process.exit(130);
      });
    }
  }

  /** Creates the cluster when missing, starts it; returns its DATABASE_URL for `database`. */
  ensure(database: string): string {
    let line = clusters().find((c) => c.version === this.version && c.cluster === this.cluster);
    if (!line) {
      const port = process.env.FAULTS_PG_PORT ?? '5499';
      say(`creating PostgreSQL cluster ${this.version}/${this.cluster} on port ${port} (trust on 127.0.0.1, for the fault suite)`);
      run('pg_createcluster', [this.version, this.cluster, '-p', port]);
      // Like the machine's main cluster: trust over the socket and 127.0.0.1 (nothing else listens).
      writeFileSync(`/etc/postgresql/${this.version}/${this.cluster}/pg_hba.conf`, 'local all all trust\nhost all all 127.0.0.1/32 trust\n');
      line = clusters().find((c) => c.version === this.version && c.cluster === this.cluster)!;
    }
    this.port = line.port;
    if (line.status !== 'online') this.ctl('start');
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  stop(): void {
    this.stopped = true;
    this.ctl('stop', ['-m', 'fast']);
  }

  start(): void {
    this.ctl('start');
    this.stopped = false;
  }

  private ctl(action: string, extra: string[] = []): void {
    run('pg_ctlcluster', [this.version, this.cluster, action, ...extra]);
  }
}

function installedVersion(): string {
  const versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error('no PostgreSQL under /usr/lib/postgresql: set FAULTS_PG_CLUSTER=<version>/<cluster>');
  return versions[0];
}

function clusters(): Array<{ version: string; cluster: string; port: number; status: string }> {
  return run('pg_lsclusters', ['--no-header'])
    .split('\n')
    .filter(Boolean)
    .map((l) => l.trim().split(/\s+/))
    .map(([version, cluster, port, status]) => ({ version: version!, cluster: cluster!, port: Number(port), status: status! }));
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.error?.message ?? ''}${r.stdout}${r.stderr}`);
  return r.stdout;
}

// ---- orgs and load ---------------------------------------------------------------------------------------

export interface PaidOrg {
  orgId: string;
  key: string;
}

/** An org on `plan` that no rate limit or balance stops during a scenario (unless `credits` is 0). */
export async function paidOrg(stack: Stack, prefix: string, opts: { plan?: string; profile?: string; credits?: number } = {}): Promise<PaidOrg> {
  const id = `${prefix}-${uuidv7().slice(-12)}`;
  const org = await stack.admin<{ id: string }>('POST', '/admin/orgs', { id, name: id, plan: opts.plan ?? 'starter', ...(opts.profile ? { profile: opts.profile } : {}) });
  if (org.status !== 201) throw new Error(`create org: ${org.status} ${JSON.stringify(org.body)}`);
  const key = await stack.admin<{ key: string }>('POST', `/admin/orgs/${id}/keys`, { name: 'faults' });
  if (key.status !== 201) throw new Error(`create key: ${key.status} ${JSON.stringify(key.body)}`);
  if ((opts.profile ?? 'trackyard') === 'trackyard') {
    const limits = await stack.admin('PUT', `/admin/orgs/${id}/limits`, { minute: 1_000_000, day: 100_000_000 });
    if (limits.status !== 200) throw new Error(`limits: ${limits.status} ${JSON.stringify(limits.body)}`);
  }
  const credits = opts.credits ?? 1_000_000;
  if (credits > 0) {
    const grant = await stack.admin('POST', `/admin/orgs/${id}/credits`, { amount: credits, reason: 'fault suite', idempotency_key: uuidv7() });
    if (grant.status !== 201) throw new Error(`credits: ${grant.status} ${JSON.stringify(grant.body)}`);
  }
  return { orgId: id, key: key.body.key };
}

export interface Answer {
  requestId: string;
  orgId: string;
  /** HTTP status, or 0 when the client gave up (timeout) or the connection failed before an answer. */
  status: number;
  timedOut: boolean;
}

export interface LoadTarget {
  port: number;
  org: PaidOrg;
}

export interface LoadOptions {
  /** Concurrent clients per target (default 2). */
  clients?: number;
  /** Client timeout (default 10 s). */
  timeoutMs?: number;
  /** Share of calls whose client gives up mid-call: the upstream is asked to take longer than the client waits. */
  impatient?: number;
}

/** Clients calling POST /search (1 credit) through gateways, each call with its own x-request-id. */
export class Load {
  readonly answers: Answer[] = [];
  private running = false;
  private workers: Array<Promise<void>> = [];

  constructor(private readonly stack: Stack, private readonly targets: LoadTarget[], private readonly opts: LoadOptions = {}) {}

  start(): this {
    this.running = true;
    for (const t of this.targets) for (let i = 0; i < (this.opts.clients ?? 2); i++) this.workers.push(this.worker(t));
    return this;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }

  private async worker(t: LoadTarget): Promise<void> {
    while (this.running) {
      const requestId = uuidv7();
      const impatient = Math.random() < (this.opts.impatient ?? 0);
      const headers: Record<string, string> = { authorization: `Bearer ${t.org.key}`, 'content-type': 'application/json', 'x-request-id': requestId };
      if (impatient) headers['x-upstream-delay-ms'] = String(150 + Math.floor(Math.random() * 150));
      const answer: Answer = { requestId, orgId: t.org.orgId, status: 0, timedOut: false };
      try {
        const res = await fetch(this.stack.gatewayUrl('/api/external/v1/search', t.port), {
          method: 'POST',
          headers,
          body: '{"query":"faults"}',
          signal: AbortSignal.timeout(impatient ? 20 + Math.floor(Math.random() * 100) : (this.opts.timeoutMs ?? 10_000)),
        });
        await res.arrayBuffer();
        answer.status = res.status;
      } catch (e) {
        answer.timedOut = (e as Error).name === 'TimeoutError' || (e as Error).name === 'AbortError';
        if (!answer.timedOut) await new Promise((r) => setTimeout(r, 50)); // connection refused: don't spin
      }
      this.answers.push(answer);
    }
  }
}

// ---- what the suite checks -------------------------------------------------------------------------------

export interface Figures {
  scenario: string;
  seconds: number;
  answered2xx: number;
  answeredOther: number;
  timedOut: number;
  published: number;
  metered: number;
  deadLettered: number;
  /** Copies of events that event_id deduplication dropped (published - metered - dead-lettered). */
  duplicates: number;
  /** Calls answered 2xx (or valid events produced) that were metered more than once. */
  meteredTwice: number;
  /** Calls answered 2xx (or valid events produced) with no usage row, or a 2xx charged other than its cost. */
  lost: number;
  /** Orgs whose balance differs from the sum of their ledger (or from its last balance_after). */
  unbalanced: number;
  notes: string[];
  failures: string[];
}

export class Observer {
  readonly db: Client;
  private readonly kafka: Kafka;

  constructor(databaseUrl: string, brokers: string) {
    this.db = new Client({ connectionString: databaseUrl });
    this.kafka = new Kafka({ clientId: 'tollgate-faults', brokers: brokers.split(','), logLevel: logLevel.NOTHING, retry: { retries: 10 } });
  }

  async connect(): Promise<void> {
    // PostgreSQL going away (scenario 3) ends this connection; the next query fails, and reconnect() follows.
    this.db.on('error', () => undefined);
    await this.db.connect();
  }

  async reconnect(databaseUrl: string): Promise<void> {
    await this.db.end().catch(() => undefined);
    (this as { db: Client }).db = new Client({ connectionString: databaseUrl });
    await this.connect();
  }

  async close(): Promise<void> {
    await this.db.end().catch(() => undefined);
  }

  async endOffsets(): Promise<number> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      return (await admin.fetchTopicOffsets(Topics.RequestCompleted)).reduce((s, p) => s + Number(p.high), 0);
    } finally {
      await admin.disconnect();
    }
  }

  async counts(): Promise<{ usage: number; dead: number }> {
    const r = await this.db.query<{ usage: string; dead: string }>(`SELECT (SELECT count(*) FROM usage_records) usage, (SELECT count(*) FROM dead_letters) dead`);
    return { usage: Number(r.rows[0]!.usage), dead: Number(r.rows[0]!.dead) };
  }

  /** Waits until metering has stored every offset Kafka has, spools are empty, and nothing moved for 3 s. */
  async quiesce(spoolDirs: string[], timeoutMs = 180_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    let stableSince = Date.now();
    while (Date.now() < deadline) {
      try {
        const spooled = spoolDirs.some((d) => safeList(d).some((f) => f.endsWith('.spool')));
        const ends = await this.endOffsets();
        const stored = Number((await this.db.query<{ s: string }>(`SELECT COALESCE(sum(next_offset),0) s FROM consumer_offsets WHERE group_id = $1 AND topic = $2`, [MeteringConsumerGroup, Topics.RequestCompleted])).rows[0]!.s);
        const { usage, dead } = await this.counts();
        const now = `${spooled}/${ends}/${stored}/${usage}/${dead}`;
        if (now !== last) {
          last = now;
          stableSince = Date.now();
        } else if (!spooled && stored >= ends && Date.now() - stableSince >= 3000) return;
      } catch (e) {
        last = `error: ${(e as Error).message}`;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`not quiescent after ${timeoutMs} ms (spooled/end offsets/stored offsets/usage/dead letters: ${last})`);
  }

  /** Each answered call against the usage rows carrying its request id. */
  async checkAnswers(answers: Answer[], f: Figures, costOf2xx = 1): Promise<void> {
    const orgs = [...new Set(answers.map((a) => a.orgId))];
    const rows = (await this.db.query<{ request_id: string; n: number; credits: string; statuses: number[] }>(
      `SELECT request_id, count(*)::int n, sum(credits) credits, array_agg(status_code) statuses FROM usage_records WHERE org_id = ANY($1) GROUP BY request_id`,
      [orgs],
    )).rows;
    const byId = new Map(rows.map((r) => [r.request_id, r]));
    let chargedTimeouts = 0;
    for (const a of answers) {
      const row = byId.get(a.requestId);
      if (a.status >= 200 && a.status < 300) {
        f.answered2xx++;
        if (!row) f.lost++;
        else if (row.n > 1) f.meteredTwice++;
        else if (Number(row.credits) !== costOf2xx) {
          f.lost++;
          f.failures.push(`call ${a.requestId} answered ${a.status} was charged ${row.credits}`);
        }
      } else if (a.status === 0) {
        f.timedOut++;
        if (row && row.n > 1) f.meteredTwice++;
        if (row && Number(row.credits) > 0) chargedTimeouts++;
      } else {
        f.answeredOther++;
        if (row && row.n > 1) f.meteredTwice++;
        if (row && Number(row.credits) > 0) f.failures.push(`call ${a.requestId} answered ${a.status} was charged ${row.credits}`);
      }
    }
    if (f.timedOut > 0) f.notes.push(`${f.timedOut} calls the client gave up on; ${chargedTimeouts} of them charged (answer already on the wire when the client gave up)`);
    const statuses = new Map<number, number>();
    for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
    f.notes.push(`answers by status: ${[...statuses].sort((x, y) => x[0] - y[0]).map(([s, n]) => `${s || 'none'}: ${n}`).join(', ')}`);
  }

  /** Events produced straight to the topic: each valid one metered exactly once, at `cost`. */
  async checkEvents(eventIds: string[], f: Figures, cost = 1): Promise<void> {
    const rows = (await this.db.query<{ event_id: string; credits: string }>(`SELECT event_id, credits FROM usage_records WHERE event_id = ANY($1)`, [eventIds])).rows;
    const seen = new Map(rows.map((r) => [r.event_id, Number(r.credits)]));
    for (const id of eventIds) {
      if (!seen.has(id)) f.lost++;
      else if (seen.get(id) !== cost) f.failures.push(`event ${id} charged ${seen.get(id)}, expected ${cost}`);
    }
  }

  /** Every org's balance equals the sum of its ledger and its last entry's balance_after. */
  async checkBalances(f: Figures): Promise<void> {
    const bad = (await this.db.query<{ org_id: string; balance: string; sum: string; last: string }>(`
      SELECT a.org_id, a.balance, COALESCE(l.sum, 0) sum, l.last
        FROM accounts a
        LEFT JOIN (SELECT org_id, sum(amount) sum, (array_agg(balance_after ORDER BY seq DESC))[1] last FROM ledger_entries GROUP BY org_id) l USING (org_id)
       WHERE a.balance <> COALESCE(l.sum, 0) OR a.balance <> COALESCE(l.last, 0)`)).rows;
    f.unbalanced = bad.length;
    for (const b of bad.slice(0, 5)) f.failures.push(`org ${b.org_id}: balance ${b.balance}, ledger sum ${b.sum}, last balance_after ${b.last}`);
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export function emptyFigures(scenario: string): Figures {
  return { scenario, seconds: 0, answered2xx: 0, answeredOther: 0, timedOut: 0, published: 0, metered: 0, deadLettered: 0, duplicates: 0, meteredTwice: 0, lost: 0, unbalanced: 0, notes: [], failures: [] };
}

/** A profiles directory where trackyard enforces credits eventually (for a second gateway). */
export function eventualProfilesDir(): string {
  const dir = join(repoRoot, '.tollgate', 'faults', 'profiles-eventual');
  mkdirSync(dir, { recursive: true });
  const src = join(repoRoot, 'config', 'profiles');
  for (const name of readdirSync(src)) {
    let text = readFileSync(join(src, name), 'utf8');
    if (name === 'trackyard.yaml') text = text.replace(/enforcement:\s*strict/, 'enforcement: eventual');
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

export async function startGateway(stack: Stack, name: string, env: Record<string, string> = {}): Promise<number> {
  const port = await freePort();
  await stack.startApp('gateway', name, { GATEWAY_PORT: String(port), GATEWAY_SPOOL_DIR: spoolDir(name), ...env });
  return port;
}

export function spoolDir(name: string): string {
  return join(repoRoot, '.tollgate', 'faults', 'spool', name);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export { say };
export { infra };
