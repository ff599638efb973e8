import { readEntityIds, RouteDefinition } from '@tollgate/profiles';
import { decodedBody, UpstreamResponse } from '../clients/upstream';
import { Need } from './credit-policy';

/** A priced 2xx: the ids it bills (distinct, exclusions removed) and the answer to hand out; or why it can't be. */
export type Priced = { entities: string[]; response: UpstreamResponse } | { problem: string };

/**
 * How a route is paid for, picked once per route when the gateway starts (`pricingOf`): the pipeline asks it
 * instead of testing the route's cost kind on every call.
 */
export interface Pricing {
  /** Held before the upstream is asked (a fixed price), or null: nothing is held up front. */
  readonly upfront: Need | null;
  /** The gateway reads the upstream's answer to price it: it asks for it uncompressed. */
  readonly readsAnswer: boolean;
  /** Prices a 2xx answer (only when `readsAnswer`). */
  price(upstream: UpstreamResponse): Promise<Priced>;
}

const unpriced = (): Promise<Priced> => Promise.reject(new Error('this route is not priced from its answer'));

/** A route that costs nothing: nothing is held, nothing is read. */
const free: Pricing = { upfront: null, readsAnswer: false, price: unpriced };

/** A fixed price: held before the upstream is asked (one `Need` per route, shared by its calls). */
function fixed(credits: number): Pricing {
  return { upfront: { kind: 'fixed', credits }, readsAnswer: false, price: unpriced };
}

/** Per entity: the ids of a 2xx answer are read (the `entities` expression, less `exclude`) and held after it. */
function perEntity(expression: string, exclude: string | undefined): Pricing {
  return { upfront: null, readsAnswer: true, price: (upstream) => entitiesOf(upstream, expression, exclude) };
}

export function pricingOf(route: RouteDefinition): Pricing {
  const cost = route.cost;
  if (cost.kind === 'per_entity') return perEntity(cost.entities, cost.exclude);
  return cost.kind === 'fixed' && cost.credits > 0 ? fixed(cost.credits) : free;
}

/**
 * The billable ids of a 2xx answer (distinct, exclusions removed), or the problem that makes it unpriceable: a
 * body that can't be decoded (within `maxDecodedBytes`), isn't JSON, or hasn't the shape the route reads.
 */
async function entitiesOf(upstream: UpstreamResponse, expression: string, exclude?: string): Promise<Priced> {
  let body: Buffer;
  let decoded: boolean;
  let json: unknown;
  try {
    ({ body, decoded } = await decodedBody(upstream));
  } catch (e) {
    return { problem: `the body can't be decoded: ${(e as Error).message}` };
  }
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return { problem: 'the body is not JSON' };
  }
  const read = readEntityIds(json, expression);
  if (!read.ok) return { problem: read.problem };
  let ids = read.ids;
  if (exclude) {
    const excluded = readEntityIds(json, exclude);
    if (!excluded.ok) return { problem: excluded.problem };
    const skip = new Set(excluded.ids);
    ids = ids.filter((id) => !skip.has(id));
  }
  const entities = [...new Set(ids)];
  if (!decoded) return { entities, response: upstream };
  const headers = { ...upstream.headers };
  delete headers['content-encoding'];
  return { entities, response: { status: upstream.status, headers, body } };
}
