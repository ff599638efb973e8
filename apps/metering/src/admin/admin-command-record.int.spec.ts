import { DataSource } from 'typeorm';
import { createDataSource, databaseUrl } from '@tollgate/persistence';
import { AdminViews } from './admin-views';
import { readHistory } from './admin-command-store';
import { toHistoryItem } from './admin-commands';

/**
 * The AdminCommandRecord migration on a database that already has grants recorded the old way (keyed only by
 * (org_id, idempotency_key), their entries caused by `admin:grant:<key>`): each becomes a recorded command with
 * an id, a seq, its input and its entry, and the ledger views still name the command behind the old entries.
 * Runs on a scratch database of its own, migrated up to the migration before it.
 */
describe('AdminCommandRecord migration keeps the grants recorded before it (real PostgreSQL)', () => {
  // Every migration, oldest first, as the apps run them.
  const migrations = createDataSource().options.migrations as Array<new () => unknown>;
  const index = migrations.findIndex((m) => m.name.startsWith('AdminCommandRecord'));
  const scratchUrl = (() => {
    const u = new URL(databaseUrl());
    u.pathname = `${u.pathname.slice(1) || 'tollgate'}_cmd_migration`;
    return u.toString();
  })();
  const scratchName = new URL(scratchUrl).pathname.slice(1);
  let admin: DataSource;
  let ds: DataSource;

  const dataSource = (upTo: number) =>
    new DataSource({ type: 'postgres', url: scratchUrl, migrations: migrations.slice(0, upTo), migrationsTableName: 'typeorm_migrations', logging: ['error'] });

  beforeAll(async () => {
    const u = new URL(databaseUrl());
    u.pathname = '/postgres';
    admin = await new DataSource({ type: 'postgres', url: u.toString() }).initialize();
    await admin.query(`DROP DATABASE IF EXISTS "${scratchName}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${scratchName}"`);
    // The schema as it was before the migration, with two orgs' grants recorded the old way.
    const before = await dataSource(index).initialize();
    await before.runMigrations();
    await before.query(`INSERT INTO orgs (id, name, profile, plan) VALUES ('acme', 'Acme', 'trackyard', 'free'), ('zeta', 'Zeta', 'trackyard', 'free')`);
    await before.query(
      `INSERT INTO ledger_entries (org_id, seq, type, amount, balance_after, cause, occurred_at, bucket_id) VALUES
         ('acme', 1, 'grant', 50, 50, 'admin:create-org:acme', '2026-11-01T00:00:00Z', 'one_time:free'),
         ('acme', 2, 'top_up', 10, 60, 'admin:grant:k-late', '2026-11-03T00:00:00Z', 'top_up:k-late'),
         ('acme', 3, 'top_up', 5, 65, 'admin:grant:k-early', '2026-11-02T00:00:00Z', 'top_up:k-early'),
         ('zeta', 1, 'top_up', 7, 7, 'admin:grant:k-early', '2026-11-04T00:00:00Z', 'top_up:k-early')`,
    );
    const grant = (org: string, key: string, amount: number, seq: number, at: string, expires: string | null) =>
      before.query(`INSERT INTO admin_commands (org_id, idempotency_key, command, result, created_at) VALUES ($1, $2, 'grant-credits', $3, $4)`, [
        org, key, JSON.stringify({ org_id: org, amount, reason: `r-${key}`, idempotency_key: key, expires_at: expires, balance: 0, seq }), at,
      ]);
    await grant('acme', 'k-late', 10, 2, '2026-11-03T00:00:00Z', null);
    await grant('acme', 'k-early', 5, 3, '2026-11-02T00:00:00Z', '2027-01-01T00:00:00.000Z');
    await grant('zeta', 'k-early', 7, 1, '2026-11-04T00:00:00Z', null);
    await before.destroy();
    ds = await dataSource(index + 1).initialize();
    await ds.runMigrations();
  }, 60_000);

  afterAll(async () => {
    await ds?.destroy();
    await admin?.query(`DROP DATABASE IF EXISTS "${scratchName}" WITH (FORCE)`);
    await admin?.destroy();
  });

  it('gives each old grant an id, its place in the org\'s history by time, its input and its entry', async () => {
    const acme = (await readHistory(ds.manager, 'acme', 0, 100)).map(toHistoryItem);
    expect(acme.map((c) => [c.seq, c.command, c.actor, c.idempotency_key, c.entries])).toEqual([
      [1, 'grant-credits', 'admin-token', 'k-early', [3]],
      [2, 'grant-credits', 'admin-token', 'k-late', [2]],
    ]);
    expect(acme[0]).toMatchObject({
      id: expect.stringMatching(/^cmd_[0-9a-f]{16}$/),
      at: '2026-11-02T00:00:00.000Z',
      input: { amount: 5, reason: 'r-k-early', idempotency_key: 'k-early', expires_at: '2027-01-01T00:00:00.000Z' },
    });
    const zeta = (await readHistory(ds.manager, 'zeta', 0, 100)).map(toHistoryItem);
    expect(zeta.map((c) => [c.seq, c.idempotency_key])).toEqual([[1, 'k-early']]);
    expect(zeta[0]!.id).not.toBe(acme[0]!.id);
  });

  it('keeps an idempotency key unique per org, and every key leading with org_id', async () => {
    await expect(
      ds.query(`INSERT INTO admin_commands (org_id, id, seq, command, actor, issued_at, input, idempotency_key, result) VALUES ('acme', 'cmd_x', 3, 'grant-credits', 'a', now(), '{}', 'k-late', '{}')`),
    ).rejects.toThrow(/admin_commands_org_idempotency_key/);
    await expect(
      ds.query(`INSERT INTO admin_commands (org_id, id, seq, command, actor, issued_at, input, idempotency_key, result) VALUES ('acme', 'cmd_y', 3, 'grant-credits', 'a', now(), '{}', NULL, '{}')`),
    ).rejects.toThrow(/admin_commands_grant_key/);
    const keys: Array<{ def: string }> = await ds.query(
      `SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c WHERE c.conrelid = 'admin_commands'::regclass AND c.contype IN ('p', 'u') ORDER BY c.conname`,
    );
    expect(keys.map((k) => k.def)).toEqual(['UNIQUE (org_id, idempotency_key)', 'UNIQUE (org_id, seq)', 'PRIMARY KEY (org_id, id)']);
  });

  it('still names the grant behind an entry caused the old way', async () => {
    const { entries } = await new AdminViews(ds).entries('acme');
    expect(entries.map((e) => [e.seq, e.command?.command ?? null, e.command?.reason ?? null])).toEqual([
      [3, 'grant-credits', 'r-k-early'],
      [2, 'grant-credits', 'r-k-late'],
      [1, null, null],
    ]);
  });

  it('goes down to grants keyed by (org_id, idempotency_key) and up again', async () => {
    await ds.undoLastMigration({ transaction: 'each' });
    const old: Array<{ org_id: string; idempotency_key: string }> = await ds.query(`SELECT org_id, idempotency_key FROM admin_commands ORDER BY 1, 2`);
    expect(old).toEqual([
      { org_id: 'acme', idempotency_key: 'k-early' },
      { org_id: 'acme', idempotency_key: 'k-late' },
      { org_id: 'zeta', idempotency_key: 'k-early' },
    ]);
    await ds.runMigrations();
    expect((await readHistory(ds.manager, 'acme', 0, 100)).map((r) => r.idempotency_key)).toEqual(['k-early', 'k-late']);
  });
});
