import { DataSource, EntityManager } from 'typeorm';
import { changePlan, grantTopUp, openAccount } from '@tollgate/billing';
import { ProfileCatalog } from '../profile-catalog';
import { appendEntries, insertAccount, lockAccounts, saveAccounts } from '../ledger/ledger-store';

/**
 * The operator's commands a Kafka replay re-applies around the events: an org opened with its plan, plan changes,
 * credit grants. The events are on the topic; these are not, so they are read back from what the live database
 * recorded of them.
 *
 * Derived, not recorded: every admin command leaves ledger entries caused `admin:<command>:<id>` dated by the
 * command's own clock (`occurred_at`), so the entries of one command are grouped by (cause, occurred_at):
 * - `admin:create-org:<org>`: the plan it was opened on is the `plan` of its grants; an org whose plan grants
 *   nothing has no entries, and is opened at `orgs.created_at` on the plan it had before its first plan change
 *   (`from_plan`), else on its current plan;
 * - `admin:plan:<plan>`: a plan change to `<plan>`;
 * - `admin:grant:<idempotency key>`: a top-up of the entry's amount, with its `expires_at`.
 * What this cannot see: a plan change that wrote no entry (nothing to adjust, no one-time credits) leaves no
 * trace; the replayed account then ends on another plan than the live org, which the diff reports.
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

interface CommandRow {
  org_id: string;
  cause: string;
  at: Date;
  entries: Array<{ type: string; amount: number; bucket_id: string | null; detail: Record<string, unknown> }>;
}

/**
 * The orgs and, per org, its commands recorded up to `asOf` (recorded_at), oldest first. Reads the live database
 * only. Orgs in `orgIds` that don't exist are left out (the caller says so).
 */
export async function recordedCommands(
  live: EntityManager,
  orgIds: string[],
  asOf: Date,
): Promise<{ orgs: RecordedOrg[]; commands: Map<string, RecordedCommand[]>; unknown: string[] }> {
  const orgRows: Array<RecordedOrg & { created_at: Date }> = await live.query(
    `SELECT id, name, profile, plan, created_at FROM orgs WHERE id = ANY($1::text[]) ORDER BY id`,
    [orgIds],
  );
  const rows: CommandRow[] = await live.query(
    `SELECT org_id, cause, occurred_at AS at,
            json_agg(json_build_object('type', type, 'amount', amount, 'bucket_id', bucket_id, 'detail', detail) ORDER BY seq) AS entries
       FROM ledger_entries
      WHERE org_id = ANY($1::text[]) AND cause LIKE 'admin:%' AND recorded_at <= $2
      GROUP BY org_id, cause, occurred_at
      ORDER BY org_id, MIN(seq)`,
    [orgIds, asOf],
  );
  const commands = new Map<string, RecordedCommand[]>();
  const unknown: string[] = [];
  for (const r of rows) {
    const at = r.at.getTime();
    const [, verb, ...rest] = r.cause.split(':');
    const id = rest.join(':');
    let command: RecordedCommand | null = null;
    if (verb === 'create-org') {
      const plan = r.entries.map((e) => e.detail.plan).find((p): p is string => typeof p === 'string');
      if (plan) command = { kind: 'create-org', orgId: r.org_id, at, plan, cause: r.cause };
    } else if (verb === 'plan') {
      command = { kind: 'change-plan', orgId: r.org_id, at, plan: id, cause: r.cause };
    } else if (verb === 'grant') {
      const topUp = r.entries.find((e) => e.type === 'top_up');
      const expires = topUp?.detail.expires_at;
      if (topUp) {
        command = {
          kind: 'grant',
          orgId: r.org_id,
          at,
          amount: Number(topUp.amount),
          expiresAt: typeof expires === 'string' ? Date.parse(expires) : null,
          bucketId: topUp.bucket_id ?? `top_up:${id}`,
          cause: r.cause,
        };
      }
    }
    if (!command) {
      unknown.push(`${r.org_id}: ${r.cause} at ${r.at.toISOString()}`);
      continue;
    }
    const list = commands.get(r.org_id) ?? [];
    list.push(command);
    commands.set(r.org_id, list);
  }
  for (const org of orgRows) {
    const list = commands.get(org.id) ?? [];
    if (!list.some((c) => c.kind === 'create-org')) {
      // A plan without credits opens an account with no entries: the org row dates it.
      const firstChange = rows.find((r) => r.org_id === org.id && r.cause.startsWith('admin:plan:'));
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
      const locked = (await lockAccounts(m, [c.orgId])).get(c.orgId);
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
