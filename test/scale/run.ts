// Over 400 lines on purpose: one scale-out run (cluster, instances, load, kills, checks, figures) read top to bottom as it happens.
import { spawnSync } from 'node:child_process';
import { Agent, request } from 'node:http';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { v7 as uuidv7 } from 'uuid';
import { MeteringConsumerGroup, Topics } from '@tollgate/contracts';
import { freePort, repoRoot, Stack } from '../support/stack';
import { Answer, emptyFigures, Figures, infra, Observer, paidOrg, PaidOrg, sleep } from '../faults/harness';

/**
 * `npm run test:scale` (issue 19): Tollgate scaled out on one machine, the way a user outgrows one box, under paid
 * load, with a broker and a metering instance SIGKILLed mid-run.
 *
 * - a three-node KRaft cluster from the same Kafka jars (scripts/infra.js, `brokers: 3`): combined
 *   controller+broker nodes, one cluster id, a controller quorum of 3; the apps create their topics with
 *   replication factor 3 and min.insync.replicas 2 (KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS), and
 *   every publish waits for acks=all;
 * - two metering instances in one consumer group, both serving reservations over gRPC; three gateways, each given
 *   both metering addresses (METERING_GRPC_URL=ipv4:a,b: gRPC's pick_first takes the first that answers and moves
 *   to the other when it goes away), in different orders so that both instances serve holds;
 * - the example upstream, a query service, PostgreSQL (the local server, database SCALE_DATABASE, recreated);
 * - orgs with scarce credits (topped up a little every few seconds, so they keep running out) and ample credits,
 *   strict enforcement, driven by a few concurrent clients per gateway for SCALE_LOAD_S seconds.
 * At SCALE_BROKER_KILL_S one broker (the one leading most of the event topic's partitions) is SIGKILLed and
 * started again on its data SCALE_BROKER_DOWN_S later; at SCALE_METERING_KILL_S the second metering instance is
 * SIGKILLed and started again SCALE_METERING_DOWN_S later, as a supervisor would.
 *
 * Then, once metering has stored every offset the topic has: every 2xx the clients received is charged exactly
 * once and nothing else is charged, no strict org's balance ever went below zero, every balance is the sum of its
 * ledger, no hold is still held past its life (timeout plus publish window), no event dead-lettered. Prints 2xx per
 * 5 s window (throughput before, during and after) and the figures; exit 1 when an invariant is broken.
 *
 * Ports: SCALE_KAFKA_PORT (39820: brokers 39820-39822, controllers 39823-39825); SCALE_APP_PORT puts the apps on the
 * ten ports from there (default: each picked free, below the ephemeral range, where no outgoing connection takes it).
 */
const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const say = (m: string) => process.stderr.write(`scale: ${m}\n`);
const cfg = {
  loadS: num('SCALE_LOAD_S', 90),
  brokerKillS: num('SCALE_BROKER_KILL_S', 30),
  /** The broker is started again this long after its kill; the load goes on until it is back in sync (+15 s). */
  brokerDownS: num('SCALE_BROKER_DOWN_S', 30),
  meteringKillS: num('SCALE_METERING_KILL_S', 50),
  meteringDownS: num('SCALE_METERING_DOWN_S', 5),
  clientsPerGateway: num('SCALE_CLIENTS', 4),
  scarceOrgs: num('SCALE_SCARCE_ORGS', 4),
  ampleOrgs: num('SCALE_AMPLE_ORGS', 8),
  /** Share of calls made for scarce orgs. */
  scarceShare: num('SCALE_SCARCE_SHARE', 0.5),
  /** Credits granted to a scarce org at start (on top of the free plan's 50) and again every SCALE_TOPUP_S. */
  scarceCredits: num('SCALE_SCARCE_CREDITS', 5),
  topUpS: num('SCALE_TOPUP_S', 5),
  /** Shortened from 120 s / 120 s so that holds left open by the metering kill come back within the run. */
  holdTimeoutS: num('SCALE_HOLD_TIMEOUT_S', 20),
  publishWindowS: num('SCALE_PUBLISH_WINDOW_S', 30),
  windowS: 5,
};
const kafkaPort = num('SCALE_KAFKA_PORT', 39820);
/** The apps' first port (ten in a row), or none: then each is picked free below the ephemeral range (freePort). */
const appPort = process.env.SCALE_APP_PORT ? num('SCALE_APP_PORT', 0) : null;
const database = process.env.SCALE_DATABASE ?? 'tollgate_scale';
const work = join(repoRoot, '.tollgate', 'scale');

interface Node {
  id: number;
  address: string;
  pid: number;
  alive: boolean;
  kill(signal?: NodeJS.Signals): void;
  restart(): Promise<void>;
}
interface Cluster {
  brokers: string;
  started: boolean;
  nodes?: Node[];
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** A profiles directory where trackyard's holds live SCALE_HOLD_TIMEOUT_S (strict, as shipped). */
function scaleProfilesDir(): string {
  const dir = join(work, 'profiles');
  mkdirSync(dir, { recursive: true });
  const src = join(repoRoot, 'config', 'profiles');
  for (const name of readdirSync(src)) {
    let text = readFileSync(join(src, name), 'utf8');
    if (name === 'trackyard.yaml') {
      if (!/enforcement:\s*strict/.test(text)) throw new Error('config/profiles/trackyard.yaml is no longer strict: the scale test needs strict enforcement');
      text = text.replace(/reservation_timeout_seconds:\s*\d+/, `reservation_timeout_seconds: ${cfg.holdTimeoutS}`);
    }
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

// ---- the load ----------------------------------------------------------------------------------------------

interface Timed extends Answer {
  /** Seconds since the load started, when the answer (or the failure) came. */
  at: number;
  gateway: number;
  /** Client-side milliseconds, and the gateway's steps from its Server-Timing header (GATEWAY_SERVER_TIMING=1). */
  ms: number;
  steps: Record<string, number> | null;
}

/** Clients on keep-alive connections calling POST /search (1 credit) on one gateway, a random org each call. */
class Load {
  readonly answers: Timed[] = [];
  private running = false;
  private workers: Array<Promise<void>> = [];
  private started = 0;

  constructor(
    private readonly gateways: number[],
    private readonly scarce: PaidOrg[],
    private readonly ample: PaidOrg[],
    private readonly clients: number,
  ) {}

  start(): this {
    this.running = true;
    this.started = Date.now();
    this.gateways.forEach((port, g) => {
      const agent = new Agent({ keepAlive: true, maxSockets: this.clients });
      for (let i = 0; i < this.clients; i++) this.workers.push(this.worker(port, g, agent));
    });
    return this;
  }

  seconds(): number {
    return (Date.now() - this.started) / 1000;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }

  private async worker(port: number, gateway: number, agent: Agent): Promise<void> {
    while (this.running) {
      const from = Math.random() < cfg.scarceShare ? this.scarce : this.ample;
      const org = from[Math.floor(Math.random() * from.length)]!;
      const requestId = uuidv7();
      const t = process.hrtime.bigint();
      const { status, timing } = await call(port, agent, org.key, requestId);
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      this.answers.push({ requestId, orgId: org.orgId, status: status > 0 ? status : 0, timedOut: status === -1, at: this.seconds(), gateway, ms, steps: parseTiming(timing) });
      if (status === 0) await sleep(50); // connection refused: don't spin
    }
  }
}

function parseTiming(header: string | undefined): Record<string, number> | null {
  if (!header) return null;
  const steps: Record<string, number> = {};
  for (const part of header.split(',')) {
    const m = /^\s*([\w-]+);dur=([\d.]+)/.exec(part);
    if (m) steps[m[1]!] = Number(m[2]);
  }
  return steps;
}

/** One paid call: its status (0 when the connection failed, -1 when the client gave up after 10 s), its Server-Timing. */
function call(port: number, agent: Agent, key: string, requestId: string): Promise<{ status: number; timing?: string }> {
  return new Promise((resolve) => {
    const body = '{"query":"scale"}';
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/api/external/v1/search',
        agent,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId },
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        const timing = res.headers['server-timing'];
        res.once('end', () => resolve({ status: res.statusCode ?? 0, timing: Array.isArray(timing) ? timing.join(',') : timing }));
        res.once('error', () => resolve({ status: 0 }));
      },
    );
    req.once('timeout', () => {
      req.destroy();
      resolve({ status: -1 });
    });
    req.once('error', () => resolve({ status: 0 }));
    req.end(body);
  });
}

// ---- what happened when ------------------------------------------------------------------------------------

interface Mark {
  at: number;
  what: string;
}

function windows(answers: Timed[], marks: Mark[], seconds: number): { table: string; rows: Array<{ from: number; ok: number; other: Map<number, number> }> } {
  const rows: Array<{ from: number; ok: number; other: Map<number, number> }> = [];
  for (let from = 0; from < seconds; from += cfg.windowS) rows.push({ from, ok: 0, other: new Map() });
  for (const a of answers) {
    const row = rows[Math.min(rows.length - 1, Math.floor(a.at / cfg.windowS))]!;
    if (a.status >= 200 && a.status < 300) row.ok++;
    else row.other.set(a.status, (row.other.get(a.status) ?? 0) + 1);
  }
  const lines = ['| window (s) | 2xx | 2xx/s | other answers | what happened |', '| --- | ---: | ---: | --- | --- |'];
  for (const r of rows) {
    const what = marks.filter((m) => m.at >= r.from && m.at < r.from + cfg.windowS).map((m) => `${m.what} at ${m.at.toFixed(1)} s`).join('; ');
    const other = [...r.other].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s || 'none'}: ${n}`).join(', ');
    lines.push(`| ${r.from}-${r.from + cfg.windowS} | ${r.ok} | ${(r.ok / cfg.windowS).toFixed(0)} | ${other || '-'} | ${what} |`);
  }
  return { table: lines.join('\n'), rows };
}

// ---- checks beyond the fault suite's ----------------------------------------------------------------------

async function checkOverdraft(observer: Observer, orgIds: string[], f: Figures): Promise<{ minBalance: number; debt: number }> {
  const r = (await observer.db.query<{ org_id: string; balance: string; debt: string; low: string | null }>(
    `SELECT a.org_id, a.balance, a.debt, (SELECT min(balance_after) FROM ledger_entries l WHERE l.org_id = a.org_id) low FROM accounts a WHERE a.org_id = ANY($1)`,
    [orgIds],
  )).rows;
  let minBalance = Infinity;
  let debt = 0;
  for (const row of r) {
    const low = Math.min(Number(row.balance), row.low === null ? Infinity : Number(row.low));
    minBalance = Math.min(minBalance, low);
    debt += Number(row.debt);
    if (low < 0) f.failures.push(`org ${row.org_id} (strict) went below zero: lowest balance ${low}`);
    if (Number(row.debt) !== 0) f.failures.push(`org ${row.org_id} (strict) has debt ${row.debt}`);
  }
  if (r.length !== orgIds.length) f.failures.push(`${orgIds.length - r.length} orgs have no account`);
  return { minBalance, debt };
}

/** Usage rows no answer accounts for: charged, with a request id no client saw answered 2xx or gave up on. */
async function checkPhantoms(observer: Observer, answers: Timed[], orgIds: string[], f: Figures): Promise<number> {
  const explained = new Set(answers.filter((a) => (a.status >= 200 && a.status < 300) || a.status === 0).map((a) => a.requestId));
  const rows = (await observer.db.query<{ request_id: string | null; credits: string }>(`SELECT request_id, credits FROM usage_records WHERE org_id = ANY($1) AND credits > 0`, [orgIds])).rows;
  const phantoms = rows.filter((r) => !r.request_id || !explained.has(r.request_id));
  for (const p of phantoms.slice(0, 5)) f.failures.push(`a charge of ${p.credits} for request ${p.request_id} that no client saw answered 2xx`);
  return phantoms.length;
}

/**
 * Holds and leases after the drain: waits until none is held any more or the last one is past its life (its
 * `expires_at`, a lease's end, plus the publish window and two sweeps), then fails on any still held past it.
 * Returns the counts and the time waited.
 */
async function checkHolds(observer: Observer, f: Figures): Promise<{ pastLife: number; byStatus: string; waitedS: number }> {
  const slackS = cfg.publishWindowS + 15;
  const started = Date.now();
  for (;;) {
    const r = (await observer.db.query<{ open: string; wait: number | null }>(
      `SELECT count(*) open, EXTRACT(EPOCH FROM max(expires_at) + make_interval(secs => $1) - clock_timestamp())::float8 wait FROM reservations WHERE status = 'held'`,
      [slackS],
    )).rows[0]!;
    if (Number(r.open) === 0 || r.wait === null || r.wait <= 0) break;
    await sleep(Math.min(2000, r.wait * 1000));
  }
  const r = (await observer.db.query<{ past: string }>(
    `SELECT count(*) past FROM reservations WHERE status = 'held' AND expires_at < clock_timestamp() - make_interval(secs => $1)`,
    [slackS],
  )).rows[0]!;
  const statuses = (await observer.db.query<{ kind: string; status: string; n: string }>(
    `SELECT COALESCE(to_jsonb(r) ->> 'kind', 'hold') kind, status, count(*) n FROM reservations r GROUP BY 1, 2 ORDER BY 1, 2`,
  )).rows;
  const pastLife = Number(r.past);
  if (pastLife > 0) f.failures.push(`${pastLife} holds or leases still held more than ${slackS} s past their expiry`);
  return { pastLife, byStatus: statuses.map((x) => `${x.kind} ${x.status} ${x.n}`).join(', '), waitedS: (Date.now() - started) / 1000 };
}

/**
 * Every lease's money: its `lease` entries take its credits, the usage rows paid from it add up to its `spent`, and
 * once it has ended its `release` entries have given back exactly what no call spent.
 */
async function checkLeases(observer: Observer, f: Figures): Promise<{ leases: number; taken: number; spent: number; returned: number }> {
  const rows = (await observer.db.query<{ org_id: string; id: string; credits: string; spent: string; status: string; taken: string; back: string; used: string }>(`
    SELECT r.org_id, r.id, r.credits, r.spent, r.status,
           COALESCE((SELECT -sum(amount) FROM ledger_entries l WHERE l.org_id = r.org_id AND l.type = 'lease' AND l.cause = 'lease:' || r.id), 0) taken,
           COALESCE((SELECT sum(amount) FROM ledger_entries l WHERE l.org_id = r.org_id AND l.type = 'release' AND (l.cause = 'lease:' || r.id OR l.cause LIKE 'lease:' || r.id || ':%')), 0) back,
           COALESCE((SELECT sum(credits) FROM usage_records u WHERE u.org_id = r.org_id AND u.lease_id = r.id), 0) used
      FROM reservations r WHERE r.kind = 'lease'`)).rows;
  const bad: string[] = [];
  let taken = 0;
  let spent = 0;
  let returned = 0;
  for (const r of rows) {
    const [credits, sp, tk, back, used] = [r.credits, r.spent, r.taken, r.back, r.used].map(Number) as [number, number, number, number, number];
    taken += tk;
    spent += sp;
    returned += back;
    if (tk !== credits) bad.push(`lease ${r.id} of ${r.org_id}: ${credits} credits, lease entries take ${tk}`);
    if (used !== sp) bad.push(`lease ${r.id} of ${r.org_id}: spent ${sp}, its usage rows ${used}`);
    if (r.status !== 'held' && back !== credits - sp) bad.push(`lease ${r.id} of ${r.org_id} (${r.status}): ${credits} credits, ${sp} spent, ${back} given back`);
  }
  if (bad.length > 0) f.failures.push(`${bad.length} leases whose entries do not add up, e.g.:\n    ${bad.slice(0, 5).join('\n    ')}`);
  return { leases: rows.length, taken, spent, returned };
}

/**
 * `tollgate audit --read-topic`: the ledger's invariants (sequence, balances, projections, each hold's and lease's
 * entries, charges against usage rows) and every consumed offset in the log metered or dead-lettered.
 */
function audit(databaseUrl: string, brokers: string, f: Figures): string {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'tollgate.js'), 'audit', '--read-topic', '--hold-grace', String(cfg.publishWindowS + 15), '--json'], {
    env: { ...process.env, DATABASE_URL: databaseUrl, KAFKA_BROKERS: brokers },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  let report: { clean?: boolean; checks?: string[]; violations?: unknown[] } = {};
  try {
    report = JSON.parse(r.stdout) as typeof report;
  } catch {
    /* not JSON: reported below */
  }
  if (r.status !== 0 || report.clean !== true) {
    f.failures.push(`tollgate audit exit ${r.status}: ${JSON.stringify(report.violations ?? []).slice(0, 1500) || (r.stdout + r.stderr).slice(-1500)}`);
    return `NOT clean (exit ${r.status})`;
  }
  return `clean (${(report.checks ?? []).join(', ')})`;
}

/** The event topic's replication as the brokers report it: every partition with 3 replicas and min.insync 2. */
async function checkTopic(kafka: Kafka, f: Figures): Promise<string> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const meta = (await admin.fetchTopicMetadata({ topics: [Topics.RequestCompleted] })).topics[0]!;
    const configs = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: Topics.RequestCompleted, configNames: ['min.insync.replicas'] }] });
    const minIsr = configs.resources[0]?.configEntries.find((c) => c.configName === 'min.insync.replicas')?.configValue;
    const replicas = [...new Set(meta.partitions.map((p) => p.replicas.length))];
    if (replicas.length !== 1 || replicas[0] !== 3 || minIsr !== '2') f.failures.push(`topic ${Topics.RequestCompleted}: replicas ${replicas.join('/')}, min.insync.replicas ${minIsr} (expected 3 and 2)`);
    return `${meta.partitions.length} partitions, ${replicas.join('/')} replicas, min.insync.replicas ${minIsr}`;
  } finally {
    await admin.disconnect();
  }
}

/** Waits until node `id` is in the ISR of every partition of the event topic. */
async function inSync(kafka: Kafka, id: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const admin = kafka.admin();
  await admin.connect();
  try {
    for (;;) {
      try {
        const meta = (await admin.fetchTopicMetadata({ topics: [Topics.RequestCompleted] })).topics[0]!;
        if (meta.partitions.every((p) => p.isr.includes(id))) return;
      } catch {
        /* metadata from a node still starting: ask again */
      }
      if (Date.now() > deadline) throw new Error(`broker ${id} not back in the ISR of every partition within ${timeoutMs / 1000} s`);
      await sleep(500);
    }
  } finally {
    await admin.disconnect();
  }
}

/** The node leading most partitions of the event topic. */
async function busiestNode(kafka: Kafka): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const meta = (await admin.fetchTopicMetadata({ topics: [Topics.RequestCompleted] })).topics[0]!;
    const leads = new Map<number, number>();
    for (const p of meta.partitions) leads.set(p.leader, (leads.get(p.leader) ?? 0) + 1);
    return [...leads].sort((a, b) => b[1] - a[1])[0]![0];
  } finally {
    await admin.disconnect();
  }
}

async function groupMembers(kafka: Kafka): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await admin.describeGroups([MeteringConsumerGroup])).groups[0]?.members.length ?? 0;
  } finally {
    await admin.disconnect();
  }
}

/** Holds a metering instance decided since it started (tollgate_holds_total on its /metrics), or -1. */
async function holdsDecided(port: number): Promise<number> {
  try {
    const token = process.env.TOLLGATE_METRICS_TOKEN;
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers, signal: AbortSignal.timeout(5000) })).text();
    return text.split('\n').filter((l) => l.startsWith('tollgate_holds_total')).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  } catch {
    return -1;
  }
}

/**
 * Starts something as a supervisor would (`npm run up`, systemd, Kubernetes): an exit during start-up is followed
 * by another attempt, at most three; each is noted in the figures, never hidden. A cluster that has just formed
 * can refuse the first clients (the group coordinator still loading, a connection closed).
 */
async function supervised<T>(f: Figures, name: string, start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (e) {
      const why = (e as Error).message.split('\n').find((l) => /cannot start|exited|not ready/.test(l)) ?? (e as Error).message.split('\n')[0];
      if (attempt >= 3) throw e;
      f.notes.push(`${name} failed to start (attempt ${attempt}: ${why?.slice(0, 200)}); started again`);
      say(`${name} failed to start (attempt ${attempt}: ${why?.slice(0, 200)}); starting it again`);
      await sleep(1000);
    }
  }
}

const picked = new Set<number>();
async function appPortAt(i: number): Promise<number> {
  if (appPort !== null) return appPort + i;
  for (;;) {
    const p = await freePort();
    if (!picked.has(p)) return picked.add(p), p;
  }
}

// ---- the run -----------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = Date.now();
  process.env.TOLLGATE_KAFKA_PORT = String(kafkaPort);
  delete process.env.KAFKA_BROKERS;
  rmSync(work, { recursive: true, force: true });
  const databaseUrl = await infra.ensureDatabase(process.env.SCALE_DATABASE_URL ?? `postgres://postgres@127.0.0.1:5432/${database}`, { log: say, fresh: true });
  const cluster = (await (infra.ensureKafka as unknown as (o: object) => Promise<Cluster>)({ log: say, fresh: true, name: 'kafka-scale', data: 'data', brokers: 3 })) as Cluster;
  if (!cluster.started || !cluster.nodes) throw new Error(`a broker already answers at ${cluster.brokers}: the scale test needs a cluster it starts itself (set SCALE_KAFKA_PORT)`);
  const stopCluster = () => cluster.stop().catch(() => undefined);
  const ports = {
    upstream: await appPortAt(0),
    metering: await appPortAt(1),
    meteringGrpc: await appPortAt(2),
    metering2: await appPortAt(3),
    metering2Grpc: await appPortAt(4),
    query: await appPortAt(5),
    queryGrpc: await appPortAt(6),
    gateway: await appPortAt(7),
    gateway2: await appPortAt(8),
    gateway3: await appPortAt(9),
  };
  const both = (first: number, second: number) => `ipv4:127.0.0.1:${first},127.0.0.1:${second}`;
  const spool = (name: string) => join(work, 'spool', name);
  const f = emptyFigures('scale-out');
  let stack: Stack | null = null;
  const observer = new Observer(databaseUrl, cluster.brokers);
  try {
    Object.assign(process.env, cluster.env, { DATABASE_URL: databaseUrl, KAFKA_BROKERS: cluster.brokers });
    stack = await supervised(f, 'the stack', () => Stack.start({
      profile: 'trackyard',
      ports: { gateway: ports.gateway, metering: ports.metering, meteringGrpc: ports.meteringGrpc, query: ports.query, queryGrpc: ports.queryGrpc, upstream: ports.upstream },
      env: {
        ...cluster.env,
        LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
        TOLLGATE_PROFILES_DIR: scaleProfilesDir(),
        RESERVATION_PUBLISH_WINDOW_SECONDS: String(cfg.publishWindowS),
        GATEWAY_SPOOL_DIR: spool('gateway'),
        GATEWAY_SERVER_TIMING: '1',
        METERING_GRPC_URL: both(ports.meteringGrpc, ports.metering2Grpc),
      },
    }));
    const s = stack;
    process.once('exit', () => {
      for (const child of s.processes.values()) if (child.exitCode === null) child.kill('SIGKILL');
    });
    const metering2 = () =>
      supervised(f, 'metering-2', () => s.startApp('metering', 'metering-2', { METERING_PORT: String(ports.metering2), METERING_GRPC_PORT: String(ports.metering2Grpc) }));
    await metering2();
    // Gateways 2 and 3 hold at metering-2 first: its kill moves them to metering-1.
    for (const [name, port] of [['gateway-2', ports.gateway2], ['gateway-3', ports.gateway3]] as const) {
      await supervised(f, name, () =>
        s.startApp('gateway', name, { GATEWAY_PORT: String(port), GATEWAY_SPOOL_DIR: spool(name), METERING_GRPC_URL: both(ports.metering2Grpc, ports.meteringGrpc) }),
      );
    }
    await observer.connect();
    const kafka = new Kafka({ clientId: 'tollgate-scale', brokers: cluster.brokers.split(','), logLevel: logLevel.NOTHING, retry: { retries: 10 } });
    f.notes.push(`topic: ${await checkTopic(kafka, f)}`);

    // Scarce orgs on the free plan (its 50 one-time credits, no monthly allowance) plus a small grant.
    const scarce = await Promise.all(Array.from({ length: cfg.scarceOrgs }, () => paidOrg(s, 'scarce', { plan: 'free', credits: cfg.scarceCredits })));
    const ample = await Promise.all(Array.from({ length: cfg.ampleOrgs }, () => paidOrg(s, 'ample', { credits: 10_000_000 })));
    const orgs = [...scarce, ...ample];
    const gateways = [ports.gateway, ports.gateway2, ports.gateway3];
    say(`${gateways.length} gateways, 2 metering, 3 brokers; ${scarce.length} scarce orgs (${cfg.scarceCredits} credits + ${cfg.scarceCredits} every ${cfg.topUpS} s), ${ample.length} ample; ${cfg.clientsPerGateway} clients per gateway for ${cfg.loadS} s`);

    const marks: Mark[] = [];
    const load = new Load(gateways, scarce, ample, cfg.clientsPerGateway).start();
    const mark = (what: string) => {
      marks.push({ at: load.seconds(), what });
      say(`${load.seconds().toFixed(1)} s: ${what}`);
    };
    const until = (s: number) => sleep(Math.max(0, s * 1000 - load.seconds() * 1000));
    let topUps = 0;
    const topUpTimer = setInterval(() => {
      for (const o of scarce) {
        void s.admin('POST', `/admin/orgs/${o.orgId}/credits`, { amount: cfg.scarceCredits, reason: 'scale top-up', idempotency_key: uuidv7() }).then((r) => {
          if (r.status === 201) topUps++;
          else f.notes.push(`a top-up answered ${r.status}`);
        });
      }
    }, cfg.topUpS * 1000);
    let backAt: number | null = null;
    const timeline = (async () => {
      await until(Math.min(3, cfg.brokerKillS));
      f.notes.push(`consumer group members at 3 s: ${await groupMembers(kafka)}`);
      await until(cfg.brokerKillS);
      const leader = await busiestNode(kafka).catch(() => 1);
      const node = cluster.nodes!.find((n) => n.id === leader) ?? cluster.nodes![0]!;
      node.kill('SIGKILL');
      mark(`broker ${node.id} (leading most partitions) SIGKILLed`);
      await until(cfg.meteringKillS);
      const decided = [await holdsDecided(ports.metering), await holdsDecided(ports.metering2)];
      f.notes.push(`holds decided before metering-2's kill: metering-1 ${decided[0]}, metering-2 ${decided[1]}`);
      if (!(decided[1]! > 0)) f.failures.push(`metering-2 decided no hold before its kill (${decided[1]}): the gateways did not spread over both instances`);
      await s.kill('metering-2');
      mark('metering-2 SIGKILLed');
      await sleep(cfg.meteringDownS * 1000);
      await metering2();
      mark('metering-2 ready again');
      f.notes.push(`consumer group members after metering-2's restart: ${await groupMembers(kafka).catch(() => -1)}`);
      await until(cfg.brokerKillS + cfg.brokerDownS);
      await node.restart();
      mark(`broker ${node.id} listening again`);
      await inSync(kafka, node.id, 90_000);
      backAt = load.seconds();
      mark(`broker ${node.id} back in every partition's ISR`);
    })();
    const failed = timeline.then(() => null, (e: Error) => e);
    await until(cfg.loadS);
    // The load goes on until 15 s after the broker is back in sync (its restart, a log recovery, can be slow).
    let guard: NodeJS.Timeout | undefined;
    await Promise.race([failed, new Promise((r) => (guard = setTimeout(r, 90_000)))]);
    clearTimeout(guard);
    if (backAt !== null) await until(Math.max(cfg.loadS, backAt + 15));
    clearInterval(topUpTimer);
    await load.stop();
    f.notes.push(`holds decided after the restart, by the end: metering-1 ${await holdsDecided(ports.metering)} (since its start), metering-2 ${await holdsDecided(ports.metering2)} (since its restart)`);
    const timelineError = await failed;
    if (timelineError) throw timelineError;
    const loadSeconds = load.seconds();
    say(`load stopped after ${loadSeconds.toFixed(0)} s: ${load.answers.length} answers; waiting for metering to drain`);

    const drainStarted = Date.now();
    await observer.quiesce(['gateway', 'gateway-2', 'gateway-3'].map(spool), 180_000);
    const drainS = (Date.now() - drainStarted) / 1000;
    const { usage, dead } = await observer.counts();
    f.published = await observer.endOffsets();
    f.metered = usage;
    f.deadLettered = dead;
    f.duplicates = f.published - f.metered - f.deadLettered;
    // The money once every hold and lease has ended (their remainders returned by the sweepers).
    const holds = await checkHolds(observer, f);
    await observer.checkAnswers(load.answers, f);
    await observer.checkBalances(f);
    const orgIds = orgs.map((o) => o.orgId);
    const overdraft = await checkOverdraft(observer, orgIds, f);
    const phantoms = await checkPhantoms(observer, load.answers, orgIds, f);
    const leases = await checkLeases(observer, f);
    const audited = audit(databaseUrl, cluster.brokers, f);
    if (f.lost > 0) f.failures.push(`${f.lost} calls answered 2xx not charged (once, at their cost)`);
    if (f.meteredTwice > 0) f.failures.push(`${f.meteredTwice} calls charged more than once`);
    if (f.unbalanced > 0) f.failures.push(`${f.unbalanced} orgs whose balance is not the sum of their ledger`);
    if (f.deadLettered > 0) f.failures.push(`${f.deadLettered} events dead-lettered`);
    const scarceIds = new Set(scarce.map((o) => o.orgId));
    const scarce2xx = load.answers.filter((a) => scarceIds.has(a.orgId) && a.status >= 200 && a.status < 300).length;
    const scarce402 = load.answers.filter((a) => scarceIds.has(a.orgId) && a.status === 402).length;

    const w = windows(load.answers, marks, Math.ceil(loadSeconds / cfg.windowS) * cfg.windowS);
    const rate = (from: number, to: number) => {
      const n = load.answers.filter((a) => a.at >= from && a.at < to && a.status >= 200 && a.status < 300).length;
      return to > from ? n / (to - from) : 0;
    };
    const at = (what: string) => marks.find((m) => m.what.includes(what))?.at ?? NaN;
    const phases = [
      ['before (all up)', 0, at('SIGKILLed')],
      ['broker down', at('SIGKILLed'), at('metering-2 SIGKILLed')],
      ['broker and metering-2 down', at('metering-2 SIGKILLed'), at('metering-2 ready')],
      ['broker down, metering-2 back', at('metering-2 ready'), at('listening again')],
      ['broker restarted, catching up', at('listening again'), at('back in every')],
      ['after (all back in sync)', at('back in every'), loadSeconds],
    ] as const;
    console.log(`\n2xx per ${cfg.windowS} s window (3 gateways, ${cfg.clientsPerGateway} clients each, ${orgs.length} orgs):\n`);
    console.log(w.table);
    // Where a 2xx's time went in each phase: the client's p50 and the gateway's steps' p50 (Server-Timing).
    const stepNames = [...new Set(load.answers.flatMap((a) => Object.keys(a.steps ?? {})))];
    const p50 = (xs: number[]) => (xs.length === 0 ? NaN : xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!);
    console.log(`\n| phase | seconds | 2xx/s | p50 ms (client) | ${stepNames.map((n) => `${n} p50 ms`).join(' | ')} |`);
    console.log(`| --- | ---: | ---: | ---: | ${stepNames.map(() => '---:').join(' | ')} |`);
    for (const [name, from, to] of phases) {
      const ok = load.answers.filter((a) => a.at >= from && a.at < to && a.status >= 200 && a.status < 300);
      const steps = stepNames.map((n) => p50(ok.flatMap((a) => (a.steps?.[n] === undefined ? [] : [a.steps[n]!]))).toFixed(1));
      console.log(`| ${name} | ${from.toFixed(1)}-${to.toFixed(1)} | ${rate(from, to).toFixed(0)} | ${p50(ok.map((a) => a.ms)).toFixed(1)} | ${steps.join(' | ')} |`);
    }
    const status = new Map<number, number>();
    for (const a of load.answers) status.set(a.status, (status.get(a.status) ?? 0) + 1);
    console.log('\n| invariant / figure | value |\n| --- | --- |');
    const rows: Array<[string, string | number]> = [
      ['answers (all)', load.answers.length],
      ['answers by status', [...status].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k || 'none'}: ${v}`).join(', ')],
      ['2xx seen by clients', f.answered2xx],
      ['2xx charged exactly once', `${f.answered2xx - f.lost - f.meteredTwice} of ${f.answered2xx}`],
      ['2xx not charged (lost)', f.lost],
      ['charged twice', f.meteredTwice],
      ['charges no client saw as 2xx', phantoms],
      ['events published / metered / dead-lettered / duplicates dropped', `${f.published} / ${f.metered} / ${f.deadLettered} / ${f.duplicates}`],
      ['lowest balance of any strict org, ever (ledger)', overdraft.minBalance],
      ['debt', overdraft.debt],
      ['orgs whose balance is not the sum of their ledger', f.unbalanced],
      ['holds and leases held past their life', `${holds.pastLife} (after waiting ${holds.waitedS.toFixed(0)} s for the last to end)`],
      ['reservations by kind and status', holds.byStatus],
      ['leases: count / credits taken / spent / given back', `${leases.leases} / ${leases.taken} / ${leases.spent} / ${leases.returned}`],
      ['tollgate audit --read-topic', audited],
      ['scarce orgs: 2xx / 402', `${scarce2xx} / ${scarce402} (credits they had: ${cfg.scarceOrgs * (50 + cfg.scarceCredits) + topUps * cfg.scarceCredits})`],
      ['drain after the load', `${drainS.toFixed(1)} s`],
    ];
    for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
  } catch (e) {
    f.failures.push(`the run failed: ${(e as Error).stack ?? (e as Error).message}`);
    if (stack) {
      const log = (stack.logs.get('metering') ?? []).join('').split('\n').slice(-10);
      f.failures.push(`metering's last log lines:\n    ${log.join('\n    ')}`);
    }
  } finally {
    // Each app's last lines, for reading after the run.
    mkdirSync(join(work, 'logs'), { recursive: true });
    for (const [name, lines] of stack?.logs ?? []) writeFileSync(join(work, 'logs', `${name}.log`), lines.join(''));
    await stack?.stop().catch(() => undefined);
    await observer.close();
    await stopCluster();
  }
  for (const n of f.notes) console.log(`note: ${n}`);
  console.log(`\nscale test took ${((Date.now() - started) / 1000).toFixed(0)} s (${JSON.stringify(cfg)})`);
  if (f.failures.length > 0) {
    console.log(`FAILED:\n  ${f.failures.join('\n  ')}`);
    process.exit(1);
  }
  console.log('every invariant held');
}

main().catch((e: Error) => {
  console.error(`scale test: ${e.stack ?? e.message}`);
  process.exit(1);
});
