import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from '../support/stack';

/**
 * docker-compose.yml ships no working credential, keeps metering's gRPC off the host and publishes no way around the
 * gateway. (CI also renders it with
 * `docker compose config`, with placeholder tokens, and checks it refuses to render without them.)
 */
describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(join(repoRoot, 'docker-compose.yml'), 'utf8')) as {
    'x-app': { environment: Record<string, string> };
    services: Record<string, {
      ports?: string[]; environment?: Record<string, string>; command?: string[]; restart?: string; volumes?: string[];
      healthcheck?: { test: string[] }; depends_on?: Record<string, { condition: string }>;
    }>;
    volumes?: Record<string, unknown>;
  };
  const env = compose['x-app'].environment;

  it.each(['TOLLGATE_ADMIN_TOKEN', 'TOLLGATE_INTERNAL_TOKEN'])('requires %s from the environment, with no default', (name) => {
    expect(env[name]).toMatch(new RegExp(`^\\$\\{${name}:\\?[^}]+\\}$`));
  });

  it('runs the apps with NODE_ENV=production, so a missing token stops them', () => {
    expect(env.NODE_ENV).toBe('production');
  });

  it("publishes no gRPC port of metering, and its admin API on the host's loopback only", () => {
    const ports = compose.services.metering?.ports ?? [];
    expect(ports.some((p) => p.includes('50052'))).toBe(false);
    expect(ports).toEqual(['127.0.0.1:8081:8081']);
  });

  it('publishes only the gateway on every interface: the rest on the loopback or not at all', () => {
    const published = Object.entries(compose.services).flatMap(([name, svc]) => (svc.ports ?? []).map((p) => [name, String(p)] as const));
    const open = published.filter(([, p]) => !p.startsWith('127.0.0.1:'));
    expect(open).toEqual([['gateway', '8080:8080']]);
    expect(compose.services['example-upstream']?.ports).toBeUndefined();
    expect(compose.services.query?.ports).toEqual(['127.0.0.1:8082:8082', '127.0.0.1:50051:50051']);
  });

  it('creates the demo org and key once metering and the gateway are ready, in a one-shot init service', () => {
    const init = compose.services.init;
    expect(init?.command).toEqual(['node', 'scripts/demo.js']);
    expect(init?.restart).toBe('no');
    expect(init?.depends_on).toEqual({ metering: { condition: 'service_healthy' }, gateway: { condition: 'service_healthy' } });
    expect(init?.environment?.TOLLGATE_ADMIN_TOKEN).toMatch(/^\$\{TOLLGATE_ADMIN_TOKEN:\?[^}]+\}$/);
    for (const app of ['metering', 'gateway']) expect(compose.services[app]?.healthcheck?.test.join(' ')).toContain('/health/ready');
  });

  it("keeps Kafka's and PostgreSQL's data and the gateway's event spool in named volumes", () => {
    expect(Object.keys(compose.volumes ?? {}).sort()).toEqual(['gateway-spool', 'kafka-data', 'postgres-data']);
    expect(compose.services.gateway?.volumes).toEqual(['gateway-spool:/app/.tollgate/spool']);
    expect(compose.services.kafka?.volumes).toEqual(['kafka-data:/var/lib/kafka/data']);
    expect(compose.services.kafka?.environment).toMatchObject({ KAFKA_LOG_DIRS: '/var/lib/kafka/data' });
    expect(compose.services.postgres?.volumes).toEqual(['postgres-data:/var/lib/postgresql/data']);
  });

  it('docker-compose.local.yml only swaps the images for the tollgate/*:local ones `npm run images` builds', () => {
    const local = parse(readFileSync(join(repoRoot, 'docker-compose.local.yml'), 'utf8')) as { services: Record<string, Record<string, unknown>> };
    expect(Object.keys(local.services).sort()).toEqual(Object.keys(compose.services).sort());
    for (const [name, svc] of Object.entries(local.services)) {
      expect([name, Object.keys(svc)]).toEqual([name, ['image']]);
      expect(svc.image).toBe(['kafka', 'postgres', 'redis'].includes(name) ? `tollgate/${name}:local` : 'tollgate/app:local');
    }
  });

  it('fronts UPSTREAM_URL when set, the example upstream otherwise', () => {
    expect(env.UPSTREAM_URL).toBe('${UPSTREAM_URL:-http://example-upstream:8090}');
  });
});
