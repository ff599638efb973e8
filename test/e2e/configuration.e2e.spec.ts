import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../support/stack';

/**
 * A bad setting stops an app at start, before it connects to anything, with one line naming the variable (each
 * app's config.ts; the unit specs cover every variable). Needs only the build: no broker, no database.
 */
describe('a bad configuration stops an app at start, naming the variable', () => {
  const start = (app: string, env: Record<string, string>, execArgv: string[] = []) =>
    spawnSync(process.execPath, [...execArgv, join(repoRoot, 'dist/apps', app, 'src/main.js')], {
      // Unreachable infrastructure: a start that got past its configuration would fail on it instead.
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', KAFKA_BROKERS: '127.0.0.1:1', ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });

  it.each([
    ['gateway', 'GATEWAY_PORT', 'eighty'],
    ['gateway', 'GATEWAY_SERVER_TIMING', 'yes please'],
    ['metering', 'WEBHOOK_TIMEOUT_MS', '5s'],
    ['metering', 'KAFKA_MIN_INSYNC_REPLICAS', '0'],
    ['query', 'QUERY_DB_POOL', '0'],
    ['example-upstream', 'EXAMPLE_UPSTREAM_PORT', '70000'],
  ])('%s with %s=%s', (app, name, value) => {
    const r = start(app, { [name]: value });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^${app}: cannot start: invalid configuration: ${name}: .*\\(got "${value}"\\)$`, 'm'));
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).not.toMatch(/PostgreSQL|Kafka is not reachable/);
  });

  it('names the .env file node read with --env-file', () => {
    const r = start('query', {}, [`--env-file=${join(repoRoot, 'test/e2e/fixtures/bad.env')}`]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/invalid configuration: QUERY_PORT: must be a whole number from 0 to 65535 \(got "http"\) \(environment, with .*bad\.env read by node --env-file\)/);
  });

  it('the CLI refuses one too (exit 2)', () => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'bin/tollgate.js'), 'orgs', 'list'], {
      env: { PATH: process.env.PATH ?? '', TOLLGATE_ADMIN_URL: 'metering:8081' },
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^tollgate: invalid configuration: TOLLGATE_ADMIN_URL: must be a http or https URL/);
  });
});
