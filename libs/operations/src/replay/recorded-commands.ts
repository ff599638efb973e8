import { DataSource, EntityManager } from 'typeorm';
import { changePlan, grantTopUp, openAccount } from '@tollgate/billing';
import { appendEntries, insertAccount, loadAccount, ProfileCatalog, saveAccounts } from '@tollgate/ledger';

/**
 * The operator's commands a Kafka replay re-applies around the events: an org opened with its plan, plan changes,
 * credit grants. The events are on the topic; these are not, so they are read back from the live database.
 *
 * The source is the command record, `admin_commands` (every operator command with its id, input and time; its
 * ledger entries are caused `admin:<command id>`): create-org (`input.plan`), change-plan (`input.plan`) and
 * grant-credits (`input.amount`, `input.expires_at`, bucket `top_up:<idempotency key>`), at `issued_at`, the
 * clock the command's entries are dated by. The other commands (keys, limits) change no credits.
 *
 * History from before the record had ids: its entries keep the causes they were written with, so those commands
 * are derived from the ledger, grouped by (cause, occurred_at): `admin:create-org:<org>` (plan from the grants'
 * detail), `admin:plan:<plan>`. Grants of that time got rows in the record (the migration), so
 * `admin:grant:<key>` entries are only used when the record has no grant with that key. An org with no create-org
 * at all (created before the record on a plan that grants nothing) is opened at `orgs.created_at` on the plan it
 * had before its first plan change (`from_plan`), else on its current plan. A plan change of that time that wrote
 * no entry left no trace: the replayed org then ends on another plan than the live one, which the diff reports.
 */
export type RecordedCommand =
  | { kind: 'create-org'; orgId: string; at: number; plan: string; cause: string }
  | { kind: 'change-plan'; orgId: string; at: number; plan: string; cause: string }
  | { kind: 'grant'; orgId: string; at: number; amount: number; expiresAt: number | null; bucketId: string; cause: string };

export interface RecordedOrg {
  id: string;
  name: string;
  profile: string;
  /** The plan the live org is on now. */
  plan: string;
}

interface LegacyRow {
  org_id: string;
  cause: string;
  at: Date;
  entries: Array<{ type: string; amount: number; bucket_id: string | null; detail: Record<string, unknown> }>;
}

interface RecordRow {
  org_id: string;
  id: string;
  command: 'create-org' | 'change-plan' | 'grant-credits';
  issued_at: Date;
  input: Record<string, unknown>;
  idempotency_key: string | null;
}

/**
 * The orgs and, per org, its commands, oldest first. Reads the live database only; run it in the snapshot the
 * replay compares against, so the commands are exactly those its balances include.
 */
export async function recordedCommands(
  live: EntityManager,
  orgIds: string[],
): Promise<{ orgs: RecordedOrg[]; commands: Map<string, RecordedCommand[]>; unknown: string[] }> {
  const orgRows: Array<RecordedOrg & { created_at: Date }> = await live.query(
    `SELECT id, name, profile, plan, created_at FROM orgs WHERE id = ANY($1::text[]) ORDER BY id`,
    [orgIds],
  );
  const recorded: RecordRow[] = await live.query(
    `SELECT org_id, id, command, issued_at, input, idempotency_key FROM admin_commands
      WHERE org_id = ANY($1::text[]) AND command IN ('create-org', 'change-plan', 'grant-credits')
      ORDER BY org_id, seq`,
    [orgIds],
  );
  const legacy: LegacyRow[] = await live.query(
    `SELECT org_id, cause, occurred_at AS at,
            json_agg(json_build_object('type', type, 'amount', amount, 'bucket_id', bucket_id, 'detail', detail) ORDER BY seq) AS entries
       FROM ledger_entries
      WHERE org_id = ANY($1::text[]) AND (cause LIKE 'admin:create-org:%' OR cause LIKE 'admin:plan:%' OR cause LIKE 'admin:grant:%')
      GROUP BY org_id, cause, occurred_at
      ORDER BY org_id, MIN(seq)`,
    [orgIds],
  );
  const commands = new Map<string, RecordedCommand[]>();
  const unknown: string[] = [];
  const add = (c: RecordedCommand) => commands.set(c.orgId, [...(commands.get(c.orgId) ?? []), c]);
  const recordedGrants = new Set<string>();
  for (const r of recorded) {
    const at = r.issued_at.getTime();
    const cause = `admin:${r.id}`;
    const plan = typeof r.input.plan === 'string' ? r.input.plan : null;
    if (r.command === 'grant-credits') {
      recordedGrants.add(`${r.org_id}/${r.idempotency_key}`);
      const amount = Number(r.input.amount);
      const expires = r.input.expires_at;
      if (Number.isSafeInteger(amount) && amount > 0) {
        add({ kind: 'grant', orgId: r.org_id, at, amount, expiresAt: typeof expires === 'string' ? Date.parse(expires) : null, bucketId: `top_up:${r.idempotency_key}`, cause });
      }
    } else if (plan) add({ kind: r.command, orgId: r.org_id, at, plan, cause });
    else unknown.push(`${r.org_id}: command ${r.id} (${r.command}) names no plan`);
  }
  for (const r of legacy) {
    const at = r.at.getTime();
    const [, verb, ...rest] = r.cause.split(':');
    const id = rest.join(':');
    if (verb === 'create-org') {
      const plan = r.entries.map((e) => e.detail.plan).find((p): p is string => typeof p === 'string');
      if (plan) add({ kind: 'create-org', orgId: r.org_id, at, plan, cause: r.cause });
      else unknown.push(`${r.org_id}: ${r.cause} at ${r.at.toISOString()}`);
    } else if (verb === 'plan') add({ kind: 'change-plan', orgId: r.org_id, at, plan: id, cause: r.cause });
    else if (verb === 'grant' && !recordedGrants.has(`${r.org_id}/${id}`)) {
      const topUp = r.entries.find((e) => e.type === 'top_up');
      const expires = topUp?.detail.expires_at;
      if (topUp) {
        add({ kind: 'grant', orgId: r.org_id, at, amount: Number(topUp.amount), expiresAt: typeof expires === 'string' ? Date.parse(expires) : null, bucketId: topUp.bucket_id ?? `top_up:${id}`, cause: r.cause });
      } else unknown.push(`${r.org_id}: ${r.cause} at ${r.at.toISOString()}`);
    }
  }
  for (const org of orgRows) {
    const list = commands.get(org.id) ?? [];
    if (!list.some((c) => c.kind === 'create-org')) {
      // A plan without credits opened the account with no entries, before the record: the org row dates it.
      const firstChange = legacy.find((r) => r.org_id === org.id && r.cause.startsWith('admin:plan:'));
      const fromPlan = firstChange?.entries.map((e) => e.detail.from_plan).find((p): p is string => typeof p === 'string');
      list.unshift({ kind: 'create-org', orgId: org.id, at: org.created_at.getTime(), plan: fromPlan ?? org.plan, cause: `admin:create-org:${org.id}` });
    }
    list.sort((a, b) => a.at - b.at || (a.kind === 'create-org' ? -1 : b.kind === 'create-org' ? 1 : 0));
    commands.set(org.id, list);
  }
  return { orgs: orgRows.map(({ id, name, profile, plan }) => ({ id, name, profile, plan })), commands, unknown };
}

/**
 * Applies commands to the scratch schema with the same deciders and ledger writes the admin API uses (see
 * AdminService), dated by their recorded time. One transaction for the lot.
 */
export async function applyCommands(scratch: DataSource, catalog: ProfileCatalog, orgs: Map<string, RecordedOrg>, commands: RecordedCommand[]): Promise<void> {
  if (commands.length === 0) return;
  await scratch.transaction(async (m) => {
    for (const c of commands) {
      const org = orgs.get(c.orgId);
      if (!org) continue;
      if (c.kind === 'create-org') {
        const opened = openAccount(c.orgId, planTerms(catalog, org.profile, c.plan), c.at, c.cause);
        await insertAccount(m, opened.account);
        await appendEntries(m, opened.entries);
        continue;
      }
      const locked = await loadAccount(m, c.orgId, 'lock');
      if (!locked) continue;
      const decided =
        c.kind === 'change-plan'
          ? changePlan(locked.account, planTerms(catalog, org.profile, c.plan), c.at, c.cause)
          : grantTopUp(locked.account, c.amount, c.expiresAt, c.bucketId, c.at, c.cause);
      await appendEntries(m, decided.entries);
      await saveAccounts(m, [decided.account]);
      if (c.kind === 'change-plan') await m.query(`UPDATE orgs SET plan = $2 WHERE id = $1`, [c.orgId, c.plan]);
    }
  });
}

function planTerms(catalog: ProfileCatalog, profile: string, plan: string) {
  const terms = catalog.plan(profile, plan);
  if (!terms) throw new Error(`profile "${profile}" has no plan "${plan}" (an org was on it)`);
  return terms;
}

/**
 * Hands out the commands due before an event: each org's queue in time order, a command due once an event of its
 * org occurred at or after it. An org is opened before its first event whatever that event's time: live metering
 * meters an event dated before the org was created (a client clock behind, another producer) once the org exists,
 * as the replay does. `rest()` is what no event came after (applied once the topic is read).
 */
export class CommandQueue {
  private readonly next = new Map<string, number>();

  constructor(private readonly byOrg: Map<string, RecordedCommand[]>) {}

  due(orgId: string, at: number): RecordedCommand[] {
    const list = this.byOrg.get(orgId);
    if (!list) return [];
    const from = this.next.get(orgId) ?? 0;
    let to = from;
    if (from === 0 && list[0]?.kind === 'create-org') to = 1;
    while (to < list.length && list[to]!.at <= at) to++;
    if (to === from) return [];
    this.next.set(orgId, to);
    return list.slice(from, to);
  }

  rest(): RecordedCommand[] {
    const out: RecordedCommand[] = [];
    for (const [orgId, list] of this.byOrg) out.push(...list.slice(this.next.get(orgId) ?? 0));
    return out.sort((a, b) => a.at - b.at);
  }
}
