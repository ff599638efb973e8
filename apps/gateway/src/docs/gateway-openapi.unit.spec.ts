import { loadAllProfiles } from '@tollgate/profiles';
import { gatewayOpenApi } from './gateway-openapi';

describe('gateway OpenAPI document', () => {
  const profiles = loadAllProfiles();

  it.each([...profiles.keys()])('lists every route of the %s profile under its base path, with its cost and auth', (name) => {
    const profile = profiles.get(name)!;
    const doc = gatewayOpenApi(profile) as { paths: Record<string, Record<string, { security: unknown[]; responses: Record<string, unknown> }>> };
    const base = profile.base_path.replace(/\/+$/, '');
    for (const route of profile.routes) {
      const op = doc.paths[`${base}${route.path}`.replace(/:([A-Za-z0-9_]+)/g, '{$1}')]?.[route.method.toLowerCase()];
      expect(op).toBeDefined();
      expect(op!.security.length > 0).toBe(route.auth !== 'none');
      expect('402' in op!.responses).toBe(route.cost.kind !== 'free');
    }
  });

  it('shows the seed error bodies as examples (trace 402)', () => {
    const doc = JSON.stringify(gatewayOpenApi(profiles.get('trace')!));
    expect(doc).toContain('credit_exhausted');
  });
});
