import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from '../support/stack';

/**
 * docker-compose.yml ships no working credential and keeps metering's gRPC off the host. (CI also renders it with
 * `docker compose config`, with placeholder tokens, and checks it refuses to render without them.)
 */
describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(join(repoRoot, 'docker-compose.yml'), 'utf8')) as {
    'x-app': { environment: Record<string, string> };
    services: Record<string, { ports?: string[]; environment?: Record<string, string> }>;
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
});
