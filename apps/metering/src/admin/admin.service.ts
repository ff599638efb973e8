import { ConflictException, NotFoundException } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { changePlan, grantTopUp, openAccount } from '@tollgate/billing';
import { hashKey, KeyPrefixLength, newId, newSecret } from '@tollgate/persistence';
import { appendEntries, insertAccount, leasedUnspentSql, loadAccount, ProfileCatalog, saveAccounts } from '@tollgate/ledger';
import { ChangePlanDto, CreateKeyDto, CreateOrgDto, GrantCreditsDto } from './admin.dto';
import { fieldError } from '@tollgate/platform';
import { answer, commandCause, DefaultActor, idempotencyKeyReused, sameGrant } from './admin-commands';
import { recordCommand } from './admin-command-store';
import { LedgerEntryRow, ledgerEntryView } from './ledger-entry-view';

/** The seqs of the entries a command appended under its own cause (a plan change may also roll the month). */
function causedBy(decided: { entries: ReadonlyArray<{ seq: number; cause: string }> }, cause: string): number[] {
  return decided.entries.filter((e) => e.cause === cause).map((e) => e.seq);
}

/**
 * Operator commands. Each runs in one transaction with its row in admin_commands (who, when, what, the result and
 * the ledger entries it appended, which carry `cause = admin:<command id>`); a rejected command writes nothing.
 * `actor` is who issued it (the X-Tollgate-Actor header, parsed by the controller).
 */
export class AdminService {
  constructor(
    private readonly ds: DataSource,
    private readonly catalog: ProfileCatalog,
    private readonly clock: () => number = Date.now,
  ) {}

  async createOrg(dto: CreateOrgDto, actor = DefaultActor) {
    const profileName = dto.profile ?? this.catalog.active.name;
    const profile = this.catalog.get(profileName);
    if (!profile) throw fieldError('profile', `unknown profile "${profileName}"`);
    const plan = this.catalog.plan(profileName, dto.plan);
    if (!plan) throw fieldError('plan', `must be one of ${profile.plans.map((p) => p.name).join(', ')} (got "${dto.plan}")`);
    const id = dto.id ?? newId('org').toLowerCase();
    const commandId = newId('cmd');
    const now = this.clock();
    return this.ds.transaction(async (m) => {
      const inserted: unknown[] = await m.query(
        `INSERT INTO orgs (id, name, profile, plan) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING id`,
        [id, dto.name, profileName, plan.name],
      );
      if (inserted.length === 0) throw new ConflictException({ error: 'conflict', message: `org "${id}" already exists` });
      const cause = commandCause(commandId);
      const opened = openAccount(id, plan, now, cause);
      await insertAccount(m, opened.account);
      await appendEntries(m, opened.entries);
      const result = { id, name: dto.name, profile: profileName, plan: plan.name, balance: opened.account.balance, created_at: new Date(now).toISOString() };
      await recordCommand(m, {
        id: commandId, orgId: id, command: 'create-org', actor, at: now,
        input: { id, name: dto.name, plan: plan.name, profile: profileName },
        idempotencyKey: null, result, entrySeqs: causedBy(opened, cause),
      });
      return answer(result, commandId);
    });
  }

  async getOrg(orgId: string) {
    const rows: Array<{ id: string; name: string; profile: string; plan: string; limit_overrides: Record<string, number>; created_at: Date }> =
      await this.ds.query(`SELECT id, name, profile, plan, limit_overrides, created_at FROM orgs WHERE id = $1`, [orgId]);
    const org = rows[0];
    if (!org) throw this.orgNotFound(orgId);
    const account = await loadAccount(this.ds.manager, orgId, 'read');
    const leased = await leasedUnspent(this.ds.manager, orgId);
    return {
      id: org.id,
      name: org.name,
      profile: org.profile,
      plan: org.plan,
      // Spendable: the ledger's balance plus what gateways hold in leases and no call has spent (still the org's).
      balance: (account?.account.balance ?? 0) + leased,
      held_by_gateways: leased,
      limits: org.limit_overrides,
      created_at: org.created_at.toISOString(),
    };
  }

  async createKey(orgId: string, dto: CreateKeyDto, actor = DefaultActor) {
    const kind = dto.kind ?? 'key';
    const name = dto.name ?? 'default';
    const key = newSecret(kind);
    const id = newId('key');
    const commandId = newId('cmd');
    const prefix = key.slice(0, KeyPrefixLength);
    const now = this.clock();
    return this.ds.transaction(async (m) => {
      await this.lockOrg(m, orgId);
      await m.query(
        `INSERT INTO api_keys (id, org_id, name, kind, prefix, key_hash) VALUES ($1, $2, $3, $4, $5, $6)`,
        [id, orgId, name, kind, prefix, hashKey(key)],
      );
      // The record names the key by its id: neither the key nor its hash is written anywhere but api_keys.
      await recordCommand(m, {
        id: commandId, orgId, command: 'create-key', actor, at: now,
        input: { name, kind }, idempotencyKey: null, result: { key_id: id, name, kind }, entrySeqs: [],
      });
      // The only time the key exists outside the caller: it is stored as a hash.
      return answer({ id, key, prefix, kind, org_id: orgId, name }, commandId);
    });
  }

  /** Revokes a key (again: a no-op, recorded as such). A key that doesn't exist is a 404 and writes nothing. */
  async revokeKey(keyId: string, actor = DefaultActor) {
    const commandId = newId('cmd');
    const now = this.clock();
    return this.ds.transaction(async (m) => {
      const owner: Array<{ org_id: string }> = await m.query(`SELECT org_id FROM api_keys WHERE id = $1`, [keyId]);
      if (!owner[0]) throw new NotFoundException({ error: 'not_found', message: `key "${keyId}" does not exist` });
      const orgId = owner[0].org_id;
      await this.lockOrg(m, orgId);
      const before: Array<{ revoked_at: Date | null }> = await m.query(`SELECT revoked_at FROM api_keys WHERE id = $1 FOR UPDATE`, [keyId]);
      const already = before[0]?.revoked_at ?? null;
      // A plain SELECT-shaped statement: TypeORM returns [rows, count] for an UPDATE ... RETURNING.
      const revoked: Array<{ revoked_at: Date }> = already
        ? [{ revoked_at: already }]
        : await m.query(`WITH r AS (UPDATE api_keys SET revoked_at = now() WHERE id = $1 RETURNING revoked_at) SELECT revoked_at FROM r`, [keyId]);
      await recordCommand(m, {
        id: commandId, orgId, command: 'revoke-key', actor, at: now,
        input: { key_id: keyId }, idempotencyKey: null,
        result: { key_id: keyId, revoked_at: revoked[0]!.revoked_at.toISOString(), already_revoked: already !== null }, entrySeqs: [],
      });
      return answer({}, commandId);
    });
  }

  async grantCredits(orgId: string, dto: GrantCreditsDto, actor = DefaultActor) {
    const expiresAt = dto.expires_at ? Date.parse(dto.expires_at) : null;
    const now = this.clock();
    // IsISO8601 lets through strings Date.parse cannot place (a leap second, 24:00): those are bad input too.
    if (expiresAt !== null && !Number.isFinite(expiresAt)) throw fieldError('expires_at', 'must be an ISO 8601 instant');
    if (expiresAt !== null && expiresAt <= now) throw fieldError('expires_at', 'must be in the future');
    return this.ds.transaction(async (m) => {
      const locked = await loadAccount(m, orgId, 'lock');
      if (!locked) throw this.orgNotFound(orgId);
      // The account lock serialises grants of one org, so this read-then-insert cannot race.
      const prior: Array<{ id: string; command: string; input: Record<string, unknown>; result: Record<string, unknown> }> = await m.query(
        `SELECT id, command, input, result FROM admin_commands WHERE org_id = $1 AND idempotency_key = $2`,
        [orgId, dto.idempotency_key],
      );
      if (prior[0]) {
        // Same key, same request: the first result again. Same key, another request: refused, nothing written.
        const asked = { amount: dto.amount, reason: dto.reason, expires_at: dto.expires_at ?? null };
        if (prior[0].command !== 'grant-credits' || !sameGrant(prior[0].input, asked)) throw idempotencyKeyReused(dto.idempotency_key, prior[0]);
        return answer({ ...prior[0].result, replayed: true }, prior[0].id);
      }
      const commandId = newId('cmd');
      const cause = commandCause(commandId);
      const bucketId = `top_up:${dto.idempotency_key}`;
      const decided = grantTopUp(locked.account, dto.amount, expiresAt, bucketId, now, cause);
      await appendEntries(m, decided.entries);
      await saveAccounts(m, [decided.account]);
      const result = {
        org_id: orgId,
        amount: dto.amount,
        reason: dto.reason,
        idempotency_key: dto.idempotency_key,
        expires_at: dto.expires_at ?? null,
        balance: decided.account.balance + (await leasedUnspent(m, orgId)),
        seq: decided.entries[decided.entries.length - 1]?.seq ?? null,
      };
      await recordCommand(m, {
        id: commandId, orgId, command: 'grant-credits', actor, at: now,
        input: { amount: dto.amount, reason: dto.reason, idempotency_key: dto.idempotency_key, expires_at: dto.expires_at ?? null },
        idempotencyKey: dto.idempotency_key, result, entrySeqs: causedBy(decided, cause),
      });
      return answer({ ...result, replayed: false }, commandId);
    });
  }

  async changePlan(orgId: string, dto: ChangePlanDto, actor = DefaultActor) {
    const commandId = newId('cmd');
    const now = this.clock();
    return this.ds.transaction(async (m) => {
      const locked = await loadAccount(m, orgId, 'lock');
      if (!locked) throw this.orgNotFound(orgId);
      const plan = this.catalog.plan(locked.profile, dto.plan);
      if (!plan) {
        const names = this.catalog.get(locked.profile)?.plans.map((p) => p.name).join(', ');
        throw fieldError('plan', `must be one of ${names} (got "${dto.plan}")`);
      }
      const cause = commandCause(commandId);
      const fromPlan = locked.account.plan.name;
      const decided = changePlan(locked.account, plan, now, cause);
      await appendEntries(m, decided.entries);
      await saveAccounts(m, [decided.account]);
      await m.query(`UPDATE orgs SET plan = $2, updated_at = now() WHERE id = $1`, [orgId, plan.name]);
      const result = { id: orgId, plan: plan.name, balance: decided.account.balance + (await leasedUnspent(m, orgId)) };
      await recordCommand(m, {
        id: commandId, orgId, command: 'change-plan', actor, at: now,
        input: { plan: plan.name }, idempotencyKey: null, result: { ...result, from_plan: fromPlan }, entrySeqs: causedBy(decided, cause),
      });
      return answer(result, commandId);
    });
  }

  async setLimits(orgId: string, body: unknown, actor = DefaultActor) {
    const org = await this.requireOrg(orgId);
    const profile = this.catalog.get(org.profile)!;
    const names = profile.limits.map((l) => l.name);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw fieldError('body', `must be an object of limit names (${names.join(', ')}) to requests per window`);
    }
    const limits: Record<string, number> = {};
    for (const [name, value] of Object.entries(body)) {
      if (!names.includes(name)) throw fieldError(name, `is not a limit of profile "${profile.name}" (known: ${names.join(', ')})`);
      if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 1_000_000_000) {
        throw fieldError(name, 'must be a whole number of requests per window, 0 or more');
      }
      limits[name] = value as number;
    }
    const commandId = newId('cmd');
    const now = this.clock();
    return this.ds.transaction(async (m) => {
      const before = await this.lockOrg(m, orgId);
      await m.query(`UPDATE orgs SET limit_overrides = $2, updated_at = now() WHERE id = $1`, [orgId, JSON.stringify(limits)]);
      await recordCommand(m, {
        id: commandId, orgId, command: 'set-limits', actor, at: now,
        input: { limits }, idempotencyKey: null, result: { limits, previous: before.limit_overrides }, entrySeqs: [],
      });
      return answer({ org_id: orgId, limits }, commandId);
    });
  }

  async getLimits(orgId: string) {
    const org = await this.requireOrg(orgId);
    return { org_id: orgId, limits: org.limit_overrides };
  }

  async ledger(orgId: string, after = 0, limit = 100) {
    await this.requireOrg(orgId);
    const rows: LedgerEntryRow[] =
      await this.ds.query(
        `SELECT seq, type, amount, balance_after, cause, occurred_at, recorded_at, bucket_id, detail
           FROM ledger_entries WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
        [orgId, after, limit],
      );
    return {
      entries: rows.map(ledgerEntryView),
    };
  }

  private async requireOrg(orgId: string) {
    const rows: Array<{ id: string; profile: string; limit_overrides: Record<string, number> }> = await this.ds.query(
      `SELECT id, profile, limit_overrides FROM orgs WHERE id = $1`,
      [orgId],
    );
    if (!rows[0]) throw this.orgNotFound(orgId);
    return rows[0];
  }

  /** The org's row, locked until the transaction ends (see recordCommand); 404 when there is none. */
  private async lockOrg(m: EntityManager, orgId: string) {
    const rows: Array<{ id: string; profile: string; limit_overrides: Record<string, number> }> = await m.query(
      `SELECT id, profile, limit_overrides FROM orgs WHERE id = $1 FOR NO KEY UPDATE`,
      [orgId],
    );
    if (!rows[0]) throw this.orgNotFound(orgId);
    return rows[0];
  }

  private orgNotFound(orgId: string): NotFoundException {
    return new NotFoundException({ error: 'not_found', message: `org "${orgId}" does not exist` });
  }
}

/**
 * What the org's leases hold and no call has spent: still the org's (SPEC §4), so every balance the admin API shows
 * adds it to the ledger's. Read under the account's lock by the commands, so it is the figure as of their entries.
 */
async function leasedUnspent(m: EntityManager, orgId: string): Promise<number> {
  const rows: Array<{ n: string }> = await m.query(`SELECT ${leasedUnspentSql('$1')} AS n`, [orgId]);
  return Number(rows[0]?.n ?? 0);
}
