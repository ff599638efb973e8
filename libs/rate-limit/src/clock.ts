/** Where "now" comes from. The rules take time as an input (epoch ms); only the edge of the system reads a clock. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
}

/** The wall clock, for wiring in `main.ts`. Tests inject their own `Clock` instead. */
export const systemClock: Clock = { now: () => Date.now() };
