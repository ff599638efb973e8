import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Client } from 'pg';
import { eventually, repoRoot, Stack, uniqueId } from '../support/stack';

/** `npm run replay`: projections rebuilt from the ledger must match live ones; a drift is found and repaired. */
describe('replay (ledger source)', () => {
  let stack: Stack;
  let db: Client;

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
    db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
  }, 120_000);

  afterAll(async () => {
    await db?.end();
    await stack?.stop();
  });

  const replay = (...args: string[]) =>
    spawnSync(process.execPath, [join(repoRoot, 'dist/apps/metering/src/replay.js'), ...args], { env: process.env, encoding: 'utf8' });

  it('finds no difference after real traffic, reports a drifted balance with exit 1, and --apply repairs it', async () => {
    const { orgId, key } = await stack.orgWithKey('starter', uniqueId('replay'));
    for (let i = 0; i < 3; i++) {
      const res = await fetch(stack.gatewayUrl('/api/external/v1/search'), {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ query: `replay ${i}` }),
      });
      expect(res.status).toBe(200);
    }
    await eventually(async () => (await db.query(`SELECT balance FROM accounts WHERE org_id = $1`, [orgId])).rows[0]?.balance === '497');

    const clean = replay('--all');
    expect(clean.stderr).toBe('');
    expect(clean.stdout).toContain('projections match the ledger');
    expect(clean.status).toBe(0);

    await db.query(`UPDATE accounts SET balance = balance + 7 WHERE org_id = $1`, [orgId]);
    const drifted = replay('--org', orgId);
    expect(drifted.status).toBe(1);
    expect(drifted.stdout).toContain(`${orgId}\tbalance\tlive=504\treplayed=497`);

    expect(replay('--org', orgId, '--apply').status).toBe(1);
    expect((await db.query(`SELECT balance FROM accounts WHERE org_id = $1`, [orgId])).rows[0].balance).toBe('497');
    expect(replay('--org', orgId).status).toBe(0);
  });

  it('refuses unclear arguments with exit 2 and a usage line', () => {
    const res = replay();
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('usage: npm run replay');
  });
});
