import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { parse, stringify } from 'yaml';
import { freePort, repoRoot, Stack } from '../support/stack';
import { checkLane, ClientResult, LaneFacts, LedgerEntry, show, UsageRow, Violation } from './check';
import { FuzzCall, generateCalls, lanes } from './hostile-calls';
import { Prng } from './prng';
import { rawRequest } from './raw-client';
import { Normalisation, ScriptedUpstream } from './scripted-upstream';

/**
 * The money fuzzer (README, "The money fuzzer"): per seed, hostile calls from four orgs (trace and trackyard,
 * ample and scarce credits) through real gateways, the broker and metering, in front of scripted upstreams;
 * then the invariants of test/fuzz/check.ts. The same seed makes the same calls and the same answers.
 */

export interface FuzzOptions {
  calls: number;
  /** How long metering may take to meter everything and close every hold once the calls are done. */
  settleMs: number;
  /** A gateway whose peak resident memory (VmHWM) passes this failed to bound what it reads. */
  rssLimitMb: number;
  /** Only well-behaved calls and answers (FUZZ_TAME=1): the checker's own control. */
  tame?: boolean;
  log: (line: string) => void;
}

export interface SeedReport {
  seed: number;
  calls: number;
  statuses: Record<string, number>;
  violations: Violation[];
  /** The calls the violations name, described for reproduction. */
  culprits: Map<number, string>;
  /** How often each trait of a call (and its answer's mode) comes with each invariant's violations: where the holes are. */
  traits: Map<string, number>;
  peakRssMb: Record<string, number>;
  deadLetters: string[];
  settled: boolean;
  tame: boolean;
  ms: number;
  /** Set-up and calls, before the wait for metering. */
  callsMs: number;
}

/** Shipped profiles plus a trackyard plan with no credits of its own, so scarce trackyard orgs start from a top-up. */
function fuzzProfilesDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-fuzz-profiles-'));
  const from = join(repoRoot, 'config', 'profiles');
  for (const f of readdirSync(from)) {
    let text = readFileSync(join(from, f), 'utf8');
    if (f === 'trackyard.yaml') {
      const doc = parse(text) as { plans: unknown[] };
      doc.plans.push({ name: 'fuzz', one_time_credits: 0, monthly_allowance: 0, limits: {} });
      text = stringify(doc);
    }
    writeFileSync(join(dir, f), text);
  }
  return dir;
}

type ProfileName = 'trace' | 'trackyard';

export class MoneyFuzzer {
  private runs = 0;
  private readonly upstreams = { trace: new ScriptedUpstream('trace'), trackyard: new ScriptedUpstream('trackyard') };
  private readonly gateways: Record<ProfileName, { name: string; port: number; spool: string }> = {
    trace: { name: '', port: 0, spool: '' },
    trackyard: { name: '', port: 0, spool: '' },
  };

  private constructor(readonly stack: Stack, private readonly db: Client, private readonly profilesDir: string) {}

  static async start(): Promise<MoneyFuzzer> {
    const profilesDir = fuzzProfilesDir();
    // A short publish window: a lease's rest comes back ~10 s after it was taken, so a run settles with every lease
    // closed and the ledger's balance at rest (README, "How money moves").
    const stack = await Stack.start({ profile: 'trace', env: { TOLLGATE_PROFILES_DIR: profilesDir, RESERVATION_PUBLISH_WINDOW_SECONDS: '3' } });
    const db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
    const fuzzer = new MoneyFuzzer(stack, db, profilesDir);
    for (const p of ['trace', 'trackyard'] as const) await fuzzer.upstreams[p].start();
    return fuzzer;
  }

  async stop(): Promise<void> {
    await this.stack.stop();
    await this.db.end();
    for (const p of ['trace', 'trackyard'] as const) {
      await this.upstreams[p].stop();
      if (this.gateways[p].spool) rmSync(this.gateways[p].spool, { recursive: true, force: true });
    }
    rmSync(this.profilesDir, { recursive: true, force: true });
  }

  /**
   * One gateway per profile in front of its scripted upstream, kept across seeds (starting one costs seconds);
   * a gateway that died, or whose seed failed (its spool may hold what the broker refused), is replaced.
   */
  private async ensureGateways(replace: boolean): Promise<void> {
    for (const p of ['trace', 'trackyard'] as const) {
      const g = this.gateways[p];
      const child = g.name ? this.stack.processes.get(g.name) : undefined;
      const alive = child !== undefined && child.exitCode === null && child.signalCode === null;
      if (alive && !replace) continue;
      if (alive) await this.stack.stopProcess(g.name);
      if (g.spool) rmSync(g.spool, { recursive: true, force: true });
      g.name = `fuzz-${p}-${this.runs}`;
      g.port = await freePort();
      g.spool = mkdtempSync(join(tmpdir(), 'tollgate-fuzz-spool-'));
      await this.stack.startApp('gateway', g.name, { GATEWAY_PORT: String(g.port), UPSTREAM_URL: this.upstreams[p].url, TOLLGATE_PROFILE: p, GATEWAY_SPOOL_DIR: g.spool });
    }
  }

  private lastFailed = false;

  async runSeed(seed: number, o: FuzzOptions): Promise<SeedReport> {
    const started = Date.now();
    const run = ++this.runs;
    const rng = new Prng(seed ^ 0x5eed);
    const normalisation: Normalisation = rng.chance(0.5) ? 'segments' : 'decode-first';
    const dlqFrom = Number((await this.db.query(`SELECT COALESCE(MAX(id), 0) AS id FROM dead_letters`)).rows[0].id);

    // Four orgs; limits out of the way (the fuzzer is about money, not about 429s).
    const orgs: Array<{ orgId: string; key: string }> = [];
    for (const [i, lane] of lanes.entries()) {
      const id = `fz${seed}-${i}-${Date.now().toString(36)}${run}`;
      const org = await this.stack.admin<{ id: string }>('POST', '/admin/orgs', { id, name: `fuzz ${seed} ${i}`, plan: lane.profile === 'trace' ? 'standard' : 'fuzz', profile: lane.profile });
      if (org.status !== 201) throw new Error(`create org: ${org.status} ${JSON.stringify(org.body)}`);
      const key = await this.stack.admin<{ key: string }>('POST', `/admin/orgs/${id}/keys`, { name: 'fuzz' });
      const limits = await this.stack.admin('PUT', `/admin/orgs/${id}/limits`, { minute: 1_000_000, day: 100_000_000 });
      const credits = lane.scarce ? rng.int(5, 20) : 1_000_000;
      const grant = await this.stack.admin('POST', `/admin/orgs/${id}/credits`, { amount: credits, reason: 'fuzz', idempotency_key: `${id}-grant` });
      if (key.status !== 201 || limits.status !== 200 || grant.status !== 201) throw new Error(`set up org ${id}: ${key.status} ${limits.status} ${grant.status}`);
      orgs.push({ orgId: id, key: key.body.key });
    }

    const upstreams = this.upstreams;
    const runTag = `${run}-${Date.now().toString(36)}`;
    for (const p of ['trace', 'trackyard'] as const) upstreams[p].reset(runTag, seed, normalisation);
    await this.ensureGateways(this.lastFailed);
    const gateways = this.gateways;

    const calls = generateCalls(seed, o.calls, runTag, (lane) => orgs[lane]!.key, o.tame ?? false);
    for (const c of calls) upstreams[lanes[c.lane]!.profile].plans.set(c.n, c.plan);
    const results = new Map<number, ClientResult>();
    const statuses: Record<string, number> = {};
    // Each org's calls one at a time (re-access and 402s then depend on the seed only); the four orgs in parallel.
    await Promise.all(
      lanes.map(async (lane, i) => {
        for (const c of calls.filter((x) => x.lane === i)) {
          const r = await rawRequest(gateways[lane.profile].port, c.request, 40_000).then(
            (res) => ({ n: c.n, status: res.status, requestId: res.headers['x-request-id'] ?? null }),
            (e: Error) => ({ n: c.n, status: null, requestId: null, error: e.message }),
          );
          results.set(c.n, r);
          const k = `${lane.profile}:${r.status ?? 'no-answer'}`;
          statuses[k] = (statuses[k] ?? 0) + 1;
        }
      }),
    );

    const callsMs = Date.now() - started;
    const settled = await this.settle(orgs.map((x) => x.orgId), o.settleMs);
    const peakRssMb: Record<string, number> = {};
    const violations: Violation[] = [];
    for (const p of ['trace', 'trackyard'] as const) {
      const child = this.stack.processes.get(gateways[p].name);
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        violations.push({ invariant: 'gateway-died', detail: `the ${p} gateway exited (${child?.exitCode ?? child?.signalCode}): ${this.stack.logs.get(gateways[p].name)?.join('').slice(-2000)}` });
        continue;
      }
      peakRssMb[p] = peakRss(child.pid!);
      if (peakRssMb[p]! > o.rssLimitMb) violations.push({ invariant: 'memory', detail: `the ${p} gateway's peak resident memory reached ${peakRssMb[p]} MB (limit ${o.rssLimitMb} MB)` });
    }

    for (const [i, lane] of lanes.entries()) {
      const { orgId } = orgs[i]!;
      const facts: LaneFacts = {
        lane: i, profile: lane.profile, orgId,
        results: calls.filter((c) => c.lane === i).map((c) => results.get(c.n)!),
        served: upstreams[lane.profile].served,
        usage: await this.usage(orgId),
        ledger: await this.ledger(orgId),
        balance: (await this.stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance,
        openHolds: await this.openHolds(orgId),
      };
      violations.push(...checkLane(facts));
    }

    const dead = await this.db.query(`SELECT reason, convert_from(key, 'UTF8') AS org, length(value) AS bytes FROM dead_letters WHERE id > $1 AND convert_from(key, 'UTF8') = ANY($2) ORDER BY id`, [dlqFrom, orgs.map((x) => x.orgId)]);
    const deadLetters = dead.rows.map((r: { reason: string; org: string; bytes: number }) => `${r.org}: ${r.bytes} bytes: ${r.reason.slice(0, 300)}`);

    const culprits = new Map<number, string>();
    const traits = new Map<string, number>();
    for (const v of violations) {
      if (v.call === undefined) continue;
      const c = calls[v.call]!;
      const answer = upstreams[lanes[c.lane]!.profile].served.get(v.call);
      for (const t of [...(c.traits.length ? c.traits : ['plain']), `answer:${answer?.mode ?? 'none'}`]) {
        const k = `${v.invariant} <- ${t.replace(/^(query:).*/, '$1…')}`;
        traits.set(k, (traits.get(k) ?? 0) + 1);
      }
    }
    for (const v of violations) {
      if (v.call !== undefined && !culprits.has(v.call)) culprits.set(v.call, describeCall(calls[v.call]!, results.get(v.call), upstreams[lanes[calls[v.call]!.lane]!.profile].served.get(v.call)));
    }

    this.lastFailed = violations.length > 0;
    const report: SeedReport = { seed, calls: o.calls, statuses, violations, culprits, traits, peakRssMb, deadLetters, settled, tame: o.tame ?? false, ms: Date.now() - started, callsMs };
    o.log(summary(report));
    return report;
  }

  /** Waits until no hold of the orgs is open and their /usage totals stopped moving, or `ms` passed. */
  private async settle(orgIds: string[], ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    let last = '';
    let stableSince = Date.now();
    while (Date.now() < deadline) {
      const totals = await Promise.all(orgIds.map(async (id) => (await this.stack.admin<{ total_count: number }>('GET', `/admin/orgs/${id}/usage?limit=1`)).body.total_count));
      const holds = (await this.db.query(`SELECT COUNT(*)::int AS n FROM reservations WHERE org_id = ANY($1) AND status = 'held'`, [orgIds])).rows[0].n as number;
      const now = JSON.stringify(totals);
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
      if (holds === 0 && Date.now() - stableSince >= 1500) return true;
      // Holds that outlive 20 s of a still /usage (a lease closes within ~13 s: 5 s of draw time, the 3 s window, a
      // sweep) belong to events that will not come (dead-lettered, stuck in a spool): waiting for their release by
      // time proves nothing more; the checker reports them.
      if (Date.now() - stableSince >= 20_000) return false;
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  }

  private async usage(orgId: string): Promise<UsageRow[]> {
    const rows: UsageRow[] = [];
    for (let offset = 0; ; offset += 500) {
      const page = await this.stack.admin<{ usage: UsageRow[] }>('GET', `/admin/orgs/${orgId}/usage?limit=500&offset=${offset}`);
      rows.push(...page.body.usage);
      if (page.body.usage.length < 500) return rows;
    }
  }

  private async ledger(orgId: string): Promise<LedgerEntry[]> {
    const entries: LedgerEntry[] = [];
    for (let after = 0; ; ) {
      const page = await this.stack.admin<{ entries: LedgerEntry[] }>('GET', `/admin/orgs/${orgId}/ledger?after=${after}&limit=500`);
      entries.push(...page.body.entries);
      if (page.body.entries.length < 500) return entries;
      after = page.body.entries[page.body.entries.length - 1]!.seq;
    }
  }

  private async openHolds(orgId: string): Promise<number> {
    return (await this.db.query(`SELECT COUNT(*)::int AS n FROM reservations WHERE org_id = $1 AND status = 'held'`, [orgId])).rows[0].n as number;
  }
}

/** VmHWM: the process's peak resident set, in MB. */
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

function describeCall(c: FuzzCall, r: ReturnType<Map<number, ClientResult>['get']>, served: ReturnType<ScriptedUpstream['served']['get']>): string {
  const headers = c.request.headers.filter(([k]) => !/^(authorization|x-fuzz-call)$/i.test(k)).map(([k, v]) => `${k}: ${show(v, 80)}`);
  const body = c.request.body ? ` body ${c.request.body.length} bytes ${show(c.request.body.subarray(0, 60).toString('latin1'), 80)}` : '';
  const up = served
    ? `upstream served ${served.method} ${show(served.url, 100)} as ${served.route ?? 'no route'}: ${served.status} ${served.mode}, ${served.ids.length} priced id(s)${served.unpriceable ? ', unpriceable' : ''}, ${served.bytes} bytes`
    : 'the upstream never saw it';
  return `call ${c.n} (lane ${c.lane} ${lanes[c.lane]!.profile}${lanes[c.lane]!.scarce ? ' scarce' : ''}): ${c.request.method} ${show(c.request.path, 160)} [${c.traits.join(', ')}]${headers.length ? ` headers {${headers.join('; ')}}` : ''}${body} -> client got ${r?.status ?? `no answer (${r?.error})`} X-Request-Id ${r?.requestId === null || r === undefined ? 'none' : show(r.requestId, 60)}; ${up}`;
}

export function summary(r: SeedReport): string {
  const byInvariant = new Map<string, number>();
  for (const v of r.violations) byInvariant.set(v.invariant, (byInvariant.get(v.invariant) ?? 0) + 1);
  const lines = [
    `seed ${r.seed}: ${r.calls} calls in ${(r.ms / 1000).toFixed(1)} s (${(r.callsMs / 1000).toFixed(1)} s to set up and call); answers ${JSON.stringify(r.statuses)}; peak RSS ${JSON.stringify(r.peakRssMb)} MB; ${r.settled ? 'settled' : 'NOT settled'}; ${r.deadLetters.length} dead letter(s)`,
  ];
  if (r.violations.length === 0) lines.push('  every invariant holds');
  else {
    lines.push(`  ${r.violations.length} violation(s): ${[...byInvariant].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
    for (const v of r.violations.slice(0, 40)) lines.push(`  - ${v.invariant}${v.call !== undefined ? ` (call ${v.call})` : ''}${v.orgId ? ` [${v.orgId}]` : ''}: ${v.detail.slice(0, 600)}`);
    if (r.violations.length > 40) lines.push(`  … and ${r.violations.length - 40} more`);
    lines.push(`  by trait: ${[...r.traits].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ×${n}`).join(', ')}`);
    for (const [, d] of [...r.culprits].slice(0, 40)) lines.push(`  > ${d.slice(0, 900)}`);
    for (const d of r.deadLetters.slice(0, 10)) lines.push(`  dead letter: ${d}`);
    lines.push(`  reproduce: ${r.tame ? 'FUZZ_TAME=1 ' : ''}FUZZ_SEED=${r.seed} FUZZ_CALLS=${r.calls} npm run test:fuzz`);
  }
  return lines.join('\n');
}
