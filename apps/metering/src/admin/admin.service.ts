import { BadRequestException, ConflictException, NotFoundException } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { changePlan, grantTopUp, openAccount } from '@tollgate/billing';
import { hashKey, KeyPrefixLength, newId, newSecret } from '@tollgate/persistence';
import { ProfileCatalog } from '../profile-catalog';
import { appendEntries, insertAccount, lockAccounts, readAccount, saveAccounts } from '../ledger/ledger-store';
import { ChangePlanDto, CreateKeyDto, CreateOrgDto, GrantCreditsDto } from './admin.dto';

function fieldError(field: string, problem: string): BadRequestException {
  return new BadRequestException({ error: 'invalid_request', message: `${field}: ${problem}`, fields: [{ field, problem }] });
}

/** Operator commands. Each runs in one transaction; a rejected command writes nothing. */
export class AdminService {
  constructor(
    private readonly ds: DataSource,
    private readonly catalog: ProfileCatalog,
    private readonly clock: () => number = Date.now,
  ) {}

  async createOrg(dto: CreateOrgDto) {
    const profileName = dto.profile ?? this.catalog.active.name;
    const profile = this.catalog.get(profileName);
    if (!profile) throw fieldError('profile', `unknown profile "${profileName}"`);
    const plan = this.catalog.plan(profileName, dto.plan);
    if (!plan) throw fieldError('plan', `must be one of ${profile.plans.map((p) => p.name).join(', ')} (got "${dto.plan}")`);
    const id = dto.id ?? newId('org').toLowerCase();
    const now = this.clock();
    return this.ds.transaction(async (m) => {
      const inserted: unknown[] = await m.query(
        `INSERT INTO orgs (id, name, profile, plan) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING id`,
        [id, dto.name, profileName, plan.name],
      );
      if (inserted.length === 0) throw new ConflictException({ error: 'conflict', message: `org "${id}" already exists` });
      const opened = openAccount(id, plan, now, `admin:create-org:${id}`);
      await insertAccount(m, opened.account);
      await appendEntries(m, opened.entries);
      return { id, name: dto.name, profile: profileName, plan: plan.name, balance: opened.account.balance, created_at: new Date(now).toISOString() };
    });
  }

  async getOrg(orgId: string) {
    const rows: Array<{ id: string; name: string; profile: string; plan: string; limit_overrides: Record<string, number>; created_at: Date }> =
      await this.ds.query(`SELECT id, name, profile, plan, limit_overrides, created_at FROM orgs WHERE id = $1`, [orgId]);
    const org = rows[0];
    if (!org) throw this.orgNotFound(orgId);
    const account = await readAccount(this.ds.manager, orgId);
    return {
      id: org.id,
      name: org.name,
      profile: org.profile,
      plan: org.plan,
      balance: account?.account.balance ?? 0,
      limits: org.limit_overrides,
      created_at: org.created_at.toISOString(),
    };
  }

  async createKey(orgId: string, dto: CreateKeyDto) {
    await this.requireOrg(orgId);
    const kind = dto.kind ?? 'key';
    const key = newSecret(kind);
    const id = newId('key');
    const prefix = key.slice(0, KeyPrefixLength);
    await this.ds.query(
      `INSERT INTO api_keys (id, org_id, name, kind, prefix, key_hash) VALUES ($1, $2, $3, $4, $5, $6)`,
      [id, orgId, dto.name ?? 'default', kind, prefix, hashKey(key)],
    );
    // The only time the key exists outside the caller: it is stored as a hash.
    return { id, key, prefix, kind, org_id: orgId, name: dto.name ?? 'default' };
  }

  async revokeKey(keyId: string): Promise<void> {
    // A plain SELECT-shaped statement: TypeORM returns [rows, count] for an UPDATE ... RETURNING.
    const rows: unknown[] = await this.ds.query(
      `WITH revoked AS (UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING id) SELECT id FROM revoked`,
      [keyId],
    );
    if (rows.length === 0) throw new NotFoundException({ error: 'not_found', message: `key "${keyId}" does not exist` });
  }

  async grantCredits(orgId: string, dto: GrantCreditsDto) {
    const expiresAt = dto.expires_at ? Date.parse(dto.expires_at) : null;
    const now = this.clock();
    if (expiresAt !== null && expiresAt <= now) throw fieldError('expires_at', 'must be in the future');
    return this.ds.transaction(async (m) => {
      const locked = (await lockAccounts(m, [orgId])).get(orgId);
      if (!locked) throw this.orgNotFound(orgId);
      // The account lock serialises grants of one org, so this read-then-insert cannot race.
      const prior: Array<{ result: Record<string, unknown>; command: string }> = await m.query(
        `SELECT command, result FROM admin_commands WHERE org_id = $1 AND idempotency_key = $2`,
        [orgId, dto.idempotency_key],
      );
      if (prior[0]) {
        if (prior[0].command !== 'grant-credits') throw fieldError('idempotency_key', 'was used by another command');
        return { ...prior[0].result, replayed: true };
      }
      const bucketId = `top_up:${dto.idempotency_key}`;
      const decided = grantTopUp(locked.account, dto.amount, expiresAt, bucketId, now, `admin:grant:${dto.idempotency_key}`);
      await appendEntries(m, decided.entries);
      await saveAccounts(m, [decided.account]);
      const result = {
        org_id: orgId,
        amount: dto.amount,
        reason: dto.reason,
        idempotency_key: dto.idempotency_key,
        expires_at: dto.expires_at ?? null,
        balance: decided.account.balance,
        seq: decided.entries[decided.entries.length - 1]?.seq ?? null,
      };
      await m.query(
        `INSERT INTO admin_commands (org_id, idempotency_key, command, result) VALUES ($1, $2, 'grant-credits', $3)`,
        [orgId, dto.idempotency_key, JSON.stringify(result)],
      );
      return { ...result, replayed: false };
    });
  }

  async changePlan(orgId: string, dto: ChangePlanDto) {
    return this.ds.transaction(async (m) => {
      const locked = (await lockAccounts(m, [orgId])).get(orgId);
      if (!locked) throw this.orgNotFound(orgId);
      const plan = this.catalog.plan(locked.profile, dto.plan);
      if (!plan) {
        const names = this.catalog.get(locked.profile)?.plans.map((p) => p.name).join(', ');
        throw fieldError('plan', `must be one of ${names} (got "${dto.plan}")`);
      }
      const decided = changePlan(locked.account, plan, this.clock(), `admin:plan:${plan.name}`);
      await appendEntries(m, decided.entries);
      await saveAccounts(m, [decided.account]);
      await m.query(`UPDATE orgs SET plan = $2, updated_at = now() WHERE id = $1`, [orgId, plan.name]);
      return { id: orgId, plan: plan.name, balance: decided.account.balance };
    });
  }

  async setLimits(orgId: string, body: unknown) {
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
    await this.ds.query(`UPDATE orgs SET limit_overrides = $2, updated_at = now() WHERE id = $1`, [orgId, JSON.stringify(limits)]);
    return { org_id: orgId, limits };
  }

  async getLimits(orgId: string) {
    const org = await this.requireOrg(orgId);
    return { org_id: orgId, limits: org.limit_overrides };
  }

  async ledger(orgId: string, after = 0, limit = 100) {
    await this.requireOrg(orgId);
    const rows: Array<Record<string, unknown> & { seq: string; amount: string; balance_after: string; occurred_at: Date; recorded_at: Date }> =
      await this.ds.query(
        `SELECT seq, type, amount, balance_after, cause, occurred_at, recorded_at, bucket_id, detail
           FROM ledger_entries WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
        [orgId, after, limit],
      );
    return {
      entries: rows.map((r) => ({
        seq: Number(r.seq),
        type: r.type,
        amount: Number(r.amount),
        balance_after: Number(r.balance_after),
        cause: r.cause,
        occurred_at: r.occurred_at.toISOString(),
        recorded_at: r.recorded_at.toISOString(),
        bucket_id: r.bucket_id,
        detail: r.detail,
      })),
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

  private orgNotFound(orgId: string): NotFoundException {
    return new NotFoundException({ error: 'not_found', message: `org "${orgId}" does not exist` });
  }
}
