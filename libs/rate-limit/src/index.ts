/**
 * @tollgate/rate-limit: the rate-limit policy, pure. Fixed UTC windows, the admit-all-or-nothing decision,
 * which limits apply to a call, and who the client is. No framework or Redis here; stores plug in through
 * `CounterStore` (memory here, Redis in @tollgate/rate-limit-redis).
 */
export type { Clock } from './clock';
export { systemClock } from './clock';
export type { WindowRule, WindowStatus } from './window';
export { windowStart, windowStatus } from './window';
export type { CounterCheck, RateDecision } from './decision';
export { decide, mostRestrictive } from './decision';
export type { CounterStore } from './counter-store';
export { WINDOW_GRACE_MS, windowKey } from './counter-store';
export { MemoryCounterStore } from './memory-counter-store';
export type { CallFacts, LimitSpec } from './applicable-checks';
export { applicableChecks } from './applicable-checks';
export { clientIp } from './client-ip';
