import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer, IncomingMessage, Server } from 'node:http';
import { createServer as createNetServer, Server as NetServer } from 'node:net';
import { join } from 'node:path';
import { eventually, freePort, repoRoot } from '../support/stack';

/**
 * `npm run up` (scripts/up.js) for a person trying Tollgate in front of their own API: UPSTREAM_URL is honoured and
 * the example upstream is not started, one line per app when ready, the console link and a demo key at the end,
 * JSON logs off a terminal, an app that dies restarted while the rest keep running, Ctrl-C stops everything. Kafka and PostgreSQL come from the test environment.
 */
describe('npm run up in front of UPSTREAM_URL', () => {
  let theirApi: Server;
  let upstreamUrl: string;
  const seen: Array<{ method?: string; url?: string }> = [];
  let up: ChildProcess;
  let stdout = '';
  let stderr = '';
  const ports: Record<string, number> = {};

  beforeAll(async () => {
    theirApi = createServer((req: IncomingMessage, res) => {
      seen.push({ method: req.method, url: req.url });
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ results: [{ id: 'theirs' }] }));
    });
    const port = await freePort();
    await new Promise<void>((resolve) => theirApi.listen(port, '127.0.0.1', resolve));
    upstreamUrl = `http://127.0.0.1:${port}`;
    for (const name of ['GATEWAY_PORT', 'METERING_PORT', 'METERING_GRPC_PORT', 'QUERY_PORT', 'QUERY_GRPC_PORT', 'EXAMPLE_UPSTREAM_PORT']) ports[name] = await freePort();
    up = spawn(process.execPath, [join(repoRoot, 'scripts', 'up.js')], {
      env: {
        ...process.env,
        ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
        UPSTREAM_URL: upstreamUrl,
        TOLLGATE_ADMIN_TOKEN: 'up-test-admin-token',
        NODE_ENV: '',
        LOG_FORMAT: '',
        LOG_LEVEL: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    up.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    up.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    await eventually(async () => stdout.includes('Ctrl-C stops everything') || up.exitCode !== null, 120_000, 200);
    if (up.exitCode !== null) throw new Error(`up exited ${up.exitCode}:\n${stderr}\n${stdout}`);
  }, 150_000);

  afterAll(async () => {
    await stopUp(up);
    await new Promise((r) => theirApi?.close(r));
  });

  it('says which upstream it fronts, starts no example upstream, and reports each app ready once', () => {
    expect(stderr).toContain(`upstream          ${upstreamUrl} (UPSTREAM_URL, answers 200); the example upstream is not started`);
    for (const app of ['metering', 'query', 'gateway']) expect(stderr.match(new RegExp(`ready  ${app} `, 'g'))).toHaveLength(1);
    expect(stderr).not.toContain('ready  example-upstream');
    // The test database was only ever used with this broker: no warning about offsets past its log.
    expect(stderr).not.toContain('used with another broker log');
    expect(stdout).toContain(`in front of ${upstreamUrl}.`);
    expect(stdout).toContain(`Console   http://127.0.0.1:${ports.METERING_PORT}/console#/orgs/demo`);
    expect(stdout).toContain('sign in with your TOLLGATE_ADMIN_TOKEN');
    expect(stdout).not.toContain('up-test-admin-token');
  });

  it('logs JSON, one object per line, off a terminal', () => {
    const logLines = stdout.split('\n').filter((l) => l.startsWith('{'));
    expect(logLines.length).toBeGreaterThan(0);
    for (const l of logLines) expect(() => JSON.parse(l)).not.toThrow();
    expect(logLines.some((l) => /metering ready/.test(l))).toBe(true);
  });

  it('forwards the demo key\'s calls to their API', async () => {
    const key = /Demo key {2}(tg_live_\w+)/.exec(stdout)?.[1];
    expect(key).toBeDefined();
    const res = await fetch(`http://127.0.0.1:${ports.GATEWAY_PORT}/api/external/v1/search`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'mine' }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ results: [{ id: 'theirs' }] });
    expect(seen.some((r) => r.method === 'POST' && r.url?.endsWith('/search'))).toBe(true);
  });

  it('creates the demo org and a new key the way docker compose\'s init service does (scripts/demo.js)', async () => {
    const ran = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'demo.js')], {
      env: {
        ...process.env,
        METERING_URL: `http://127.0.0.1:${ports.METERING_PORT}`,
        TOLLGATE_ADMIN_TOKEN: 'up-test-admin-token',
        PUBLIC_GATEWAY_URL: 'http://gateway.example',
        UPSTREAM_URL: upstreamUrl,
      },
      encoding: 'utf8',
    });
    expect(ran.status).toBe(0);
    expect(ran.stdout).toContain(`in front of ${upstreamUrl}.`);
    expect(ran.stdout).toMatch(/Demo key {2}tg_live_\w+ \(org "demo", plan starter\)/);
    expect(ran.stdout).toContain('curl -i -X POST http://gateway.example/api/external/v1/search');
  });

  it('restarts metering after a SIGKILL, says so, keeps the others running, and paid calls work again', async () => {
    const others = { gateway: appPid(up, 'gateway'), query: appPid(up, 'query') };
    const before = appPid(up, 'metering');
    process.kill(before, 'SIGKILL');
    await eventually(async () => /up: metering exited \(SIGKILL\) after \d+\.\d s; restart 1 in 0\.5 s\n/.test(stderr), 10_000, 100);
    await eventually(async () => stderr.includes('up: metering ready again (restart 1)\n'), 60_000, 200);
    expect(appPid(up, 'metering')).not.toBe(before);
    expect({ gateway: appPid(up, 'gateway'), query: appPid(up, 'query') }).toEqual(others);
    expect(stderr).not.toContain('stopping');
    const key = /Demo key {2}(tg_live_\w+)/.exec(stdout)![1]!;
    const res = await fetch(`http://127.0.0.1:${ports.GATEWAY_PORT}/api/external/v1/search`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'after the restart' }),
    });
    expect(res.status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${ports.METERING_PORT}/admin/orgs/demo`, { headers: { authorization: 'Bearer up-test-admin-token' } })).status).toBe(200);
  }, 90_000);

  it('stops every app on Ctrl-C', async () => {
    const exited = new Promise<number | null>((resolve) => up.once('exit', (code) => resolve(code)));
    up.kill('SIGINT');
    expect(await exited).toBe(0);
    for (const port of [ports.GATEWAY_PORT, ports.METERING_PORT, ports.QUERY_PORT]) {
      await expect(fetch(`http://127.0.0.1:${port}/health/live`)).rejects.toThrow();
    }
  }, 60_000);
});


/**
 * A crash loop: metering is killed and its port taken by another process, so every restart exits at once; after 5
 * exits within 60 s up stops everything it started and exits 1, saying why.
 */
describe('npm run up when an app crash-loops', () => {
  let up: ChildProcess;
  let stdout = '';
  let stderr = '';
  const ports: Record<string, number> = {};
  let squatter: NetServer | undefined;

  beforeAll(async () => {
    for (const name of ['GATEWAY_PORT', 'METERING_PORT', 'METERING_GRPC_PORT', 'QUERY_PORT', 'QUERY_GRPC_PORT', 'EXAMPLE_UPSTREAM_PORT']) ports[name] = await freePort();
    up = spawn(process.execPath, [join(repoRoot, 'scripts', 'up.js')], {
      env: { ...process.env, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])), UPSTREAM_URL: '', NODE_ENV: '', LOG_FORMAT: '', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    up.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    up.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    await eventually(async () => stdout.includes('Ctrl-C stops everything') || up.exitCode !== null, 120_000, 200);
    if (up.exitCode !== null) throw new Error(`up exited ${up.exitCode}:\n${stderr}\n${stdout}`);
  }, 150_000);

  afterAll(async () => {
    await stopUp(up);
    await new Promise((r) => (squatter ? squatter.close(r) : r(undefined)));
  });

  it('says how it restarts, then gives up on 5 exits within 60 s, stops everything and exits 1', async () => {
    expect(stdout).toContain('An app that dies is restarted (0.5 s backoff, doubling to 10 s; 5 exits within 60 s stop everything).');
    const exited = new Promise<number | null>((resolve) => up.once('exit', (code) => resolve(code)));
    process.kill(appPid(up, 'metering'), 'SIGKILL');
    // Taken as soon as the killed process lets go of it (the restart binds it seconds later, after migrating).
    squatter = await eventually(() => new Promise<NetServer | null>((resolve) => {
      const server = createNetServer((socket) => socket.destroy());
      server.once('error', () => resolve(null));
      server.listen(ports.METERING_PORT, '127.0.0.1', () => resolve(server));
    }), 5000, 20);
    expect(await exited).toBe(1);
    const lines = stderr.split('\n').filter((l) => l.startsWith('up: metering exited'));
    expect(lines.map((l) => /restart (\d) in ([\d.]+ s)$/.exec(l)?.slice(1))).toEqual([
      ['1', '0.5 s'], ['2', '1.0 s'], ['3', '2.0 s'], ['4', '4.0 s'], undefined,
    ]);
    expect(lines[4]).toMatch(/^up: metering exited \(exit 1\) after \d+\.\d s: 5 exits within 60\.0 s is a crash loop; stopping everything$/);
    expect(stderr).not.toContain('ready again');
    for (const port of [ports.GATEWAY_PORT, ports.QUERY_PORT, ports.EXAMPLE_UPSTREAM_PORT]) {
      await expect(fetch(`http://127.0.0.1:${port}/health/live`)).rejects.toThrow();
    }
  }, 90_000);
});

/** The pid of `app` among up's children (`ps`, by the script each runs). */
function appPid(up: ChildProcess, app: string): number {
  const ps = spawnSync('ps', ['-o', 'pid=,args=', '--ppid', String(up.pid)], { encoding: 'utf8' });
  const line = ps.stdout.split('\n').find((l) => l.includes(`/apps/${app}/src/main.js`));
  if (!line) throw new Error(`no ${app} process under up (pid ${up.pid}):\n${ps.stdout}`);
  return Number(line.trim().split(/\s+/)[0]);
}

/** After a failed test too: SIGTERM, so up stops its apps (a SIGKILLed up would leave them running), SIGKILL at last. */
async function stopUp(up: ChildProcess | undefined): Promise<void> {
  if (!up || up.exitCode !== null || up.signalCode !== null) return;
  const exited = new Promise((r) => up.once('exit', r));
  up.kill('SIGTERM');
  const timer = setTimeout(() => up.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}
