import { CounterCheck } from './decision';

/**
 * A limit as a profile declares it (snake_case, as in the YAML). Structurally the same as the profiles lib's
 * `LimitDefinition`, which is assignable to it: the rate-limit domain depends on no other lib.
 */
export interface LimitSpec {
  name: string;
  period_seconds: number;
  /** Requests per window unless the plan or an org override says otherwise. */
  limit: number;
  subject: 'key' | 'user' | 'application' | 'ip' | 'client';
  /** Only calls with one of these methods count (absent: all methods). */
  methods?: readonly string[];
  /** Only routes of these categories count (absent: every route that counts against limits). */
  categories?: readonly string[];
  /** `user`: only calls that carry a user token; `no_user`: only calls without one. */
  when?: 'user' | 'no_user';
}

/** What the gateway knows about one call when it picks the windows to check. */
export interface CallFacts {
  method: string;
  /** The route's category: `general`, `media`, `auth`, `open`, ... */
  category: string;
  /** False for `/me` and `/usage` (SPEC §7): they never count against the plan's limits. */
  countsAgainstLimits: boolean;
  keyId: string | null;
  userId: string | null;
  applicationId: string | null;
  clientIp: string;
  profile: string;
}

/**
 * The windows one call must fit in, in the order the profile declares its limits.
 *
 * Requests per window: the org's override, else the plan's number, else the profile's default, by limit name.
 * Each window is counted per subject under `${profile}:${name}:${subject}:${id}`, where id is
 * - `key`: the API key id; a call without a key (an unauthenticated route) is counted by its client IP as
 *   `ip:<address>` instead, so anonymous routes cannot escape a per-key limit;
 * - `user`: the user id; `application`: the application (key) id. Without that id the limit does not apply
 *   (Trakt's user limits only concern calls with a user token);
 * - `ip`: the client IP; `client`: the key id when the call has one, else `ip:<address>` (BeatPass).
 * Key ids never start with `ip:`, so a key and an address never share a counter.
 */
export function applicableChecks(
  defs: readonly LimitSpec[],
  facts: CallFacts,
  planLimits: Readonly<Record<string, number>>,
  overrides: Readonly<Record<string, number>>,
): CounterCheck[] {
  if (!facts.countsAgainstLimits) return [];
  const method = facts.method.toUpperCase();
  const hasUser = facts.userId !== null;
  const checks: CounterCheck[] = [];
  for (const def of defs) {
    if (def.methods && !def.methods.some((m) => m.toUpperCase() === method)) continue;
    if (def.categories && !def.categories.includes(facts.category)) continue;
    if (def.when === 'user' && !hasUser) continue;
    if (def.when === 'no_user' && hasUser) continue;
    const id = subjectId(def.subject, facts);
    if (id === null) continue;
    checks.push({
      subjectKey: `${facts.profile}:${def.name}:${def.subject}:${id}`,
      rule: { name: def.name, periodSeconds: def.period_seconds, limit: firstCount(overrides[def.name], planLimits[def.name]) ?? def.limit },
    });
  }
  return checks;
}

function subjectId(subject: LimitSpec['subject'], f: CallFacts): string | null {
  switch (subject) {
    case 'key':
    case 'client':
      return f.keyId ?? `ip:${f.clientIp}`;
    case 'user':
      return f.userId;
    case 'application':
      return f.applicationId;
    case 'ip':
      return f.clientIp;
  }
}

/** The first value that is a usable request count; anything else (a bad override) falls through to the next. */
function firstCount(...candidates: Array<number | undefined>): number | undefined {
  return candidates.find((n): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0);
}
