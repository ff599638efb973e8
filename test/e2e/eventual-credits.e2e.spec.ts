import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, json, repoRoot, Stack, uniqueId } from '../support/stack';

/**
 * Eventual enforcement: no reservation; the gateway trusts its last known balance. Overdraw is possible but
 * bounded by the calls in flight, and every credit of it is in the ledger.
 */
describe('eventual credit enforcement (trackyard with credits.enforcement: eventual)', () => {
  let stack: Stack;
  const base = '/api/external/v1';

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-profiles-'));
    for (const name of ['trackyard', 'beatpass', 'trakt', 'trace']) {
      let text = readFileSync(join(repoRoot, 'config/profiles', `${name}.yaml`), 'utf8');
      if (name === 'trackyard') text = text.replace(/enforcement:\s*strict/, 'enforcement: eventual');
      writeFileSync(join(dir, `${name}.yaml`), text);
    }
    expect(readFileSync(join(dir, 'trackyard.yaml'), 'utf8')).toMatch(/enforcement: eventual/);
    stack = await Stack.start({ profile: 'trackyard', env: { TOLLGATE_PROFILES_DIR: dir } });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('admits on the last known balance, charges every admitted call exactly once, and records any overdraw in the ledger', async () => {
    const { orgId, key } = await stack.orgWithKey('free', uniqueId('eventual'));
    expect((await stack.admin('PUT', `/admin/orgs/${orgId}/limits`, { minute: 1000, day: 1000 })).status).toBe(200);
    await eventually(async () => (await json(await fetch(stack.gatewayUrl(`${base}/me`), { headers: { authorization: `Bearer ${key}` } }))).rate_limit.requests_per_minute === 1000, 10_000);

    const inFlight = 10;
    const statuses: number[] = [];
    for (let wave = 0; wave < 7; wave++) {
      const answers = await Promise.all(
        Array.from({ length: inFlight }, () =>
          fetch(stack.gatewayUrl(`${base}/search`), {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ query: 'eventual' }),
          }),
        ),
      );
      statuses.push(...answers.map((r) => r.status));
    }
    const admitted = statuses.filter((s) => s === 200).length;
    expect(statuses.every((s) => s === 200 || s === 402)).toBe(true);
    expect(admitted).toBeGreaterThanOrEqual(50);
    expect(statuses.filter((s) => s === 402).length).toBeGreaterThan(0);

    type Entry = { type: string; amount: number; balance_after: number };
    const entries = await eventually(async () => {
      const e = (await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${orgId}/ledger?limit=500`)).body.entries;
      return e.filter((x) => x.type === 'charge').reduce((s, x) => s - x.amount, 0) === admitted ? e : null;
    }, 15_000);
    expect(entries.some((e) => e.type === 'reservation')).toBe(false);
    const balance = (await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance;
    expect(balance).toBe(50 - admitted);
    expect(balance).toBe(entries.reduce((s, e) => s + e.amount, 0));
    if (admitted > 50) expect(entries[entries.length - 1]!.balance_after).toBeLessThan(0);
  });
});
