import { Profile, RouteDefinition } from '@tollgate/profiles';

/**
 * The OpenAPI document of a gateway's public routes, generated from the profile the gateway runs (its routes,
 * identity, costs and error bodies), so it can never drift from what the gateway actually does.
 * Served at `GET /docs/openapi.json`.
 */
export function gatewayOpenApi(profile: Profile): Record<string, unknown> {
  const base = profile.base_path.replace(/\/+$/, '');
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of profile.routes) {
    const path = `${base}${route.path}`.replace(/:([A-Za-z0-9_]+)/g, '{$1}') || '/';
    paths[path] = { ...(paths[path] ?? {}), [route.method.toLowerCase()]: operation(profile, route) };
  }
  const security =
    profile.identity === 'trakt'
      ? {
          application: { type: 'apiKey', in: 'header', name: 'trakt-api-key', description: 'Application key' },
          user: { type: 'http', scheme: 'bearer', description: 'Optional user token' },
        }
      : { bearer: { type: 'http', scheme: 'bearer', description: 'API key' } };
  return {
    openapi: '3.0.3',
    info: { title: `Tollgate gateway (${profile.name})`, version: '1', description: `Routes of the ${profile.name} profile, metered and rate limited by Tollgate.` },
    paths,
    components: { securitySchemes: security },
  };
}

function operation(profile: Profile, route: RouteDefinition): Record<string, unknown> {
  const params = [...route.path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
  const example = (kind: keyof Profile['errors']) => ({ description: kind.replace(/_/g, ' '), content: { 'application/json': { example: profile.errors[kind] } } });
  const responses: Record<string, unknown> = {
    '200': { description: route.handler === 'proxy' ? 'The upstream answer, decorated with the profile headers' : `The org's ${route.handler === 'me' ? 'account' : 'usage'}` },
    '429': example('rate_limited'),
  };
  if (route.auth !== 'none') responses['401'] = example('unauthorized');
  if (route.cost.kind !== 'free') responses['402'] = example('insufficient_credits');
  // A path the gateway will not read as the upstream might (dot segments, encoded separators, empty segments).
  responses['400'] = example('bad_request');
  if (route.handler === 'proxy') responses['502'] = example('upstream_unavailable');
  if (route.cost.kind === 'per_entity') responses['502'] = { description: 'upstream unavailable, or its answer unpriceable (withheld, free)', content: { 'application/json': { examples: { upstream_unavailable: { value: profile.errors.upstream_unavailable }, unpriceable: { value: profile.errors.unpriceable } } } } };
  const identity =
    profile.identity !== 'trakt' ? [{ bearer: [] }] : route.auth === 'user' ? [{ application: [], user: [] }] : [{ application: [] }, { application: [], user: [] }];
  return {
    operationId: `${route.method.toLowerCase()}${route.path.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
    tags: [route.category],
    summary: `${route.method} ${route.path}`,
    description: `Cost: ${costText(route)}. ${route.counts_against_limits ? `Counts against the ${route.category} limits.` : 'Does not count against rate limits.'}`,
    parameters: params,
    security: route.auth !== 'none' ? identity : [],
    responses,
  };
}

function costText(route: RouteDefinition): string {
  const c = route.cost;
  if (c.kind === 'fixed') return `${c.credits} credit(s) per 2xx answer`;
  if (c.kind === 'per_entity') return `1 credit per net-new entity (${c.entities}), free on re-access within ${c.reaccess_days} days`;
  return 'free';
}
