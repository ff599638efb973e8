import { createHash, randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';

/**
 * API keys: `tg_<kind>_<40 base62 chars>`, shown once. Only the SHA-256 of the key is stored: the keys are
 * 238-bit random strings, so a fast hash is enough (a slow KDF guards low-entropy passwords, not random
 * tokens) and the lookup stays a single index probe on the hot path.
 */
export const KeyPrefixLength = 12;

export function hashKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
function base62(n: number): string {
  const bytes = randomBytes(n * 2);
  let out = '';
  for (let i = 0; out.length < n && i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b < 248) out += alphabet[b % 62]; // 248 = 4*62: no modulo bias
  }
  return out.length === n ? out : out + base62(n - out.length);
}

export function newSecret(kind: 'key' | 'user'): string {
  return `tg_${kind === 'key' ? 'live' : 'user'}_${base62(40)}`;
}

export function newId(prefix: string): string {
  return `${prefix}_${base62(16)}`;
}

export interface KeyRecord {
  id: string;
  orgId: string;
  kind: 'key' | 'user';
  revoked: boolean;
  plan: string;
  profile: string;
  limitOverrides: Record<string, number>;
}

/** One probe: the key (by hash) with its org's plan and limit overrides. */
export async function findKeyByHash(ds: DataSource, hash: Buffer): Promise<KeyRecord | null> {
  const rows: Array<{ id: string; org_id: string; kind: 'key' | 'user'; revoked: boolean; plan: string; profile: string; limit_overrides: Record<string, number> }> =
    await ds.query(
      `SELECT k.id, k.org_id, k.kind, k.revoked_at IS NOT NULL AS revoked, o.plan, o.profile, o.limit_overrides
         FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE k.key_hash = $1`,
      [hash],
    );
  const r = rows[0];
  if (!r) return null;
  return { id: r.id, orgId: r.org_id, kind: r.kind, revoked: r.revoked, plan: r.plan, profile: r.profile, limitOverrides: r.limit_overrides };
}
