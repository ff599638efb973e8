import { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { backOff } from 'exponential-backoff';

/**
 * Starts the built apps (dist/) as real processes on free ports, against the Kafka and PostgreSQL of the
 * environment (KAFKA_BROKERS, DATABASE_URL: `npm test` provides both). Used by the e2e tests and the benchmarks
 * (`npm run up` supervises with restarts; both launch apps with scripts/supervisor.js's launchApp, and this stack
 * never restarts one: its tests kill apps on purpose).
 */
export type AppName = 'gateway' | 'metering' | 'query' | 'example-upstream';

export interface StackPorts {
  gateway: number;
  metering: number;
  meteringGrpc: number;
  query: number;
  queryGrpc: number;
  upstream: number;
}

export const repoRoot = findRoot();

// The supervisor's app launcher, shared with `npm run up` (plain JavaScript: loaded from the checkout, also from dist/).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { launchApp } = require(join(repoRoot, 'scripts', 'supervisor.js')) as typeof import('../../scripts/supervisor');

function findRoot(): string {
  // Works from test/support (ts-jest) and from dist/test/support (compiled).
  const parts = __dirname.split('/');
  const i = parts.lastIndexOf('dist');
  return i >= 0 ? parts.slice(0, i).join('/') : join(__dirname, '..', '..');
}

/**
 * A port that is free now, picked at random below Linux's ephemeral range (32768+): ports handed out by the OS
 * for port 0 are also what outgoing connections (Kafka, PostgreSQL clients) use, so they collide more often.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canListen(port)) return port;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export interface StackOptions {
  profile: string;
  adminToken?: string;
  /** The token gateways present to metering's gRPC; default TOLLGATE_INTERNAL_TOKEN, else one made up per stack. */
  internalToken?: string;
  env?: Record<string, string>;
  /** Extra gateways sharing the same metering (and Redis when REDIS_URL is in env). */
  extraGateways?: number;
  /** Fixed ports (npm run up uses the documented defaults); missing ones are picked free. */
  ports?: Partial<StackPorts>;
  /** Print every app's output, prefixed with its name. */
  streamLogs?: boolean;
  /** Node options for every app (e.g. --cpu-prof for the benchmarks). */
  nodeArgs?: string[];
}

export class Stack {
  readonly processes = new Map<string, ChildProcess>();
  readonly logs = new Map<string, string[]>();
  private readonly launched = new Map<string, ReturnType<typeof launchApp>>();
  readonly adminToken: string;
  readonly internalToken: string;
  extraGatewayPorts: number[] = [];

  private constructor(readonly ports: StackPorts, private readonly opts: StackOptions) {
    this.adminToken = opts.adminToken ?? 'test-admin-token';
    this.internalToken = opts.internalToken || process.env.TOLLGATE_INTERNAL_TOKEN || randomBytes(24).toString('base64url');
  }

  static async start(opts: StackOptions): Promise<Stack> {
    const fixed = opts.ports ?? {};
    const ports: StackPorts = {
      gateway: fixed.gateway ?? (await freePort()),
      metering: fixed.metering ?? (await freePort()),
      meteringGrpc: fixed.meteringGrpc ?? (await freePort()),
      query: fixed.query ?? (await freePort()),
      queryGrpc: fixed.queryGrpc ?? (await freePort()),
      upstream: fixed.upstream ?? (await freePort()),
    };
    const stack = new Stack(ports, opts);
    try {
      await stack.startWithFreshPorts('example-upstream', ['upstream']);
      await stack.startWithFreshPorts('metering', ['metering', 'meteringGrpc']);
      await stack.startWithFreshPorts('query', ['query', 'queryGrpc']);
      await stack.startWithFreshPorts('gateway', ['gateway']);
      for (let i = 0; i < (opts.extraGateways ?? 0); i++) {
        const port = await freePort();
        stack.extraGatewayPorts.push(port);
        await stack.startApp('gateway', `gateway-${i + 2}`, { GATEWAY_PORT: String(port) });
      }
    } catch (e) {
      await stack.stop();
      throw e;
    }
    return stack;
  }

  /** A port picked free can be taken before the app binds it: then the app gets new ports and starts again. */
  private async startWithFreshPorts(app: AppName, ports: Array<keyof StackPorts>): Promise<void> {
    const fixed = ports.some((p) => this.opts.ports?.[p] !== undefined);
    await backOff(() => this.startApp(app), {
      numOfAttempts: 3,
      startingDelay: 0,
      retry: async (e: unknown) => {
        if (fixed || !/EADDRINUSE/.test((e as Error).message)) return false;
        for (const p of ports) (this.ports as unknown as Record<string, number>)[p] = await freePort();
        return true;
      },
    });
  }

  env(): Record<string, string> {
    const p = this.ports;
    return {
      ...(process.env as Record<string, string>),
      NODE_ENV: 'test',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      TOLLGATE_PROFILE: this.opts.profile,
      TOLLGATE_ADMIN_TOKEN: this.adminToken,
      TOLLGATE_INTERNAL_TOKEN: this.internalToken,
      GATEWAY_PORT: String(p.gateway),
      METERING_PORT: String(p.metering),
      METERING_GRPC_PORT: String(p.meteringGrpc),
      METERING_GRPC_URL: `127.0.0.1:${p.meteringGrpc}`,
      QUERY_PORT: String(p.query),
      QUERY_GRPC_PORT: String(p.queryGrpc),
      QUERY_URL: `http://127.0.0.1:${p.query}`,
      EXAMPLE_UPSTREAM_PORT: String(p.upstream),
      UPSTREAM_URL: `http://127.0.0.1:${p.upstream}`,
      ...(this.opts.env ?? {}),
    };
  }

  healthUrl(app: AppName, port?: number): string {
    const p = this.ports;
    const ports: Record<AppName, number> = { gateway: p.gateway, metering: p.metering, query: p.query, 'example-upstream': p.upstream };
    return `http://127.0.0.1:${port ?? ports[app]}/health/ready`;
  }

  /** Starts `app` under `name` and waits until it serves; its output is kept in `logs` (one entry a line). */
  async startApp(app: AppName, name: string = app, extraEnv: Record<string, string> = {}): Promise<void> {
    const log: string[] = [];
    this.logs.set(name, log);
    const port = extraEnv.GATEWAY_PORT ? Number(extraEnv.GATEWAY_PORT) : undefined;
    const launched = launchApp({
      root: repoRoot,
      app,
      name,
      env: { ...this.env(), ...extraEnv },
      nodeArgs: this.opts.nodeArgs,
      readyUrl: this.healthUrl(app, port),
      tailLines: 400,
      onLine: (line) => {
        log.push(`${line}\n`);
        if (log.length > 2000) log.shift();
        if (this.opts.streamLogs || process.env.STACK_LOGS) process.stderr.write(`[${name}] ${line}\n`);
      },
    });
    this.processes.set(name, launched.child);
    this.launched.set(name, launched);
    await launched.ready();
  }

  /** SIGKILL: no shutdown hooks, no flush. For crash tests. */
  kill(name: string): Promise<void> {
    return this.stopProcess(name, 'SIGKILL');
  }

  async stopProcess(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.launched.get(name)?.stop(signal);
  }

  async stop(): Promise<void> {
    const order = ['gateway', ...this.extraGatewayPorts.map((_, i) => `gateway-${i + 2}`), 'query', 'metering', 'example-upstream'];
    // Apps a test started under its own name (a second metering, a gateway on another profile) stop first.
    const others = [...this.processes.keys()].filter((n) => !order.includes(n));
    for (const name of [...others, ...order]) await this.stopProcess(name);
  }

  // ---- clients ------------------------------------------------------------------------------------------

  gatewayUrl(path: string, port = this.ports.gateway): string {
    return `http://127.0.0.1:${port}${path}`;
  }

  async admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const send = () =>
      fetch(`http://127.0.0.1:${this.ports.metering}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.adminToken}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    // A test that blocks its event loop (spawnSync of a CLI) can hand fetch a kept-alive socket the server closed
    // meanwhile: the request never reached the server ("other side closed"), so it is sent once more.
    const res = await send().catch((e: Error & { cause?: { code?: string } }) => {
      if (e.cause?.code !== 'UND_ERR_SOCKET') throw e;
      return send();
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
  }

  /** Creates an org on `plan` and one key; returns both. */
  async orgWithKey(plan: string, id?: string): Promise<{ orgId: string; key: string; keyId: string }> {
    const org = await this.admin<{ id: string }>('POST', '/admin/orgs', { id, name: `test ${id ?? ''}`, plan });
    if (org.status !== 201) throw new Error(`create org failed: ${org.status} ${JSON.stringify(org.body)}`);
    const key = await this.admin<{ id: string; key: string }>('POST', `/admin/orgs/${org.body.id}/keys`, { name: 'test' });
    if (key.status !== 201) throw new Error(`create key failed: ${key.status} ${JSON.stringify(key.body)}`);
    return { orgId: org.body.id, key: key.body.key, keyId: key.body.id };
  }
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Polls until `fn` returns a truthy value (or throws after `timeoutMs`). */
export async function eventually<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs = 10_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`);
}

/** Parses a JSON response body for assertions. */
 
export async function json(res: Response): Promise<any> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`not JSON (status ${res.status}): ${text.slice(0, 200)}`);
  }
}
