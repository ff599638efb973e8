/** @tollgate/rate-limit-redis: the `CounterStore` of @tollgate/rate-limit, shared through Redis. */
export { RedisCounterStore } from './redis-counter-store';
export type { RedisCounterStoreOptions } from './redis-counter-store';
