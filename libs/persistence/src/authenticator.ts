import { DataSource } from 'typeorm';
import { findKeyByHash, hashKey, KeyRecord } from './api-keys';

/** What a request presented: an API key (or trakt application key) and, optionally, a user token. */
export interface Credentials {
  key: string | null;
  userToken: string | null;
}

/** The authenticated caller. Everything a gateway or the query service may do is scoped to `orgId`. */
export interface Principal {
  orgId: string;
  keyId: string;
  userId: string | null;
  plan: string;
  profile: string;
  limitOverrides: Record<string, number>;
}

export type AuthResult = { ok: true; principal: Principal } | { ok: false; reason: 'missing' | 'invalid' };

/**
 * Looks keys up by hash, with a short-lived cache so the hot path rarely touches PostgreSQL. The cache TTL
 * bounds how long a revoked key (or a plan or limit change) can still be honoured: with the default 2 s
 * every gateway refuses a revoked key within 2 s plus one request.
 */
export class KeyAuthenticator {
  private readonly cache = new Map<string, { record: KeyRecord | null; expiresAt: number }>();

  constructor(
    private readonly ds: DataSource,
    private readonly ttlMs = 2000,
    private readonly clock: () => number = Date.now,
    private readonly maxEntries = 100_000,
  ) {}

  async authenticate(creds: Credentials): Promise<AuthResult> {
    if (!creds.key) return { ok: false, reason: 'missing' };
    const key = await this.lookup(creds.key);
    if (!key || key.revoked || key.kind !== 'key') return { ok: false, reason: 'invalid' };
    let userId: string | null = null;
    if (creds.userToken) {
      const user = await this.lookup(creds.userToken);
      // A user token is valid only for the org whose application key comes with it.
      if (!user || user.revoked || user.kind !== 'user' || user.orgId !== key.orgId) return { ok: false, reason: 'invalid' };
      userId = user.id;
    }
    return {
      ok: true,
      principal: { orgId: key.orgId, keyId: key.id, userId, plan: key.plan, profile: key.profile, limitOverrides: key.limitOverrides },
    };
  }

  private async lookup(secret: string): Promise<KeyRecord | null> {
    if (secret.length > 256) return null;
    const hash = hashKey(secret);
    const id = hash.toString('base64');
    const now = this.clock();
    const hit = this.cache.get(id);
    if (hit && hit.expiresAt > now) return hit.record;
    const record = await findKeyByHash(this.ds, hash);
    if (this.cache.size >= this.maxEntries) this.cache.clear();
    this.cache.set(id, { record, expiresAt: now + this.ttlMs });
    return record;
  }
}

/** Reads the credentials the way the profile's identity says. */
export function extractCredentials(identity: 'bearer' | 'trakt', headers: Record<string, string | string[] | undefined>): Credentials {
  const bearer = bearerToken(headers.authorization);
  if (identity === 'trakt') {
    const app = headers['trakt-api-key'];
    return { key: typeof app === 'string' && app.length > 0 ? app : null, userToken: bearer };
  }
  return { key: bearer, userToken: null };
}

function bearerToken(header: string | string[] | undefined): string | null {
  if (typeof header !== 'string') return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}
