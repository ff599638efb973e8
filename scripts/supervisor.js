// `npm run up`'s supervisor: keeps each thing it started running, the way an operator's process manager would, and
// says what it does. The rules (printed by `up` at the first restart, documented in the README):
// - an exit nobody asked for is restarted after a backoff: 0.5 s, doubling to at most 10 s;
// - the backoff starts again at 0.5 s once the unit had stayed up 30 s before its exit;
// - 5 exits within 60 s are a crash loop: the supervisor gives up (up stops everything, exit 1);
// - a unit that fails its very first start is not retried (that is a configuration error, and retrying hides it).
// The policy is pure (time comes in), so it is unit-tested without processes (test/deploy/supervisor.unit.spec.ts).

const defaultRules = Object.freeze({ firstDelayMs: 500, maxDelayMs: 10_000, stableAfterMs: 30_000, loopCrashes: 5, loopWindowMs: 60_000 });

/** What to do about one unit's exits: restart it after a delay, or give up (a crash loop). */
class RestartPolicy {
  constructor(rules = {}) {
    this.rules = { ...defaultRules, ...rules };
    this.exits = [];
    this.restarts = 0;
    this.delayMs = 0;
  }

  /**
   * The unit exited at `now` after running `upMs`. Returns `{ restart: true, delayMs, attempt }` (attempt counts
   * every restart of this unit since up started) or `{ restart: false, exits, windowMs }` for a crash loop.
   */
  exited(now, upMs) {
    const r = this.rules;
    this.exits = this.exits.filter((t) => now - t < r.loopWindowMs);
    this.exits.push(now);
    if (this.exits.length >= r.loopCrashes) return { restart: false, exits: this.exits.length, windowMs: r.loopWindowMs };
    this.delayMs = this.delayMs === 0 || upMs >= r.stableAfterMs ? r.firstDelayMs : Math.min(this.delayMs * 2, r.maxDelayMs);
    this.restarts += 1;
    return { restart: true, delayMs: this.delayMs, attempt: this.restarts };
  }
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const how = (exit) => exit.error ?? exit.signal ?? `exit ${exit.code}`;

/**
 * Units by name. `launch()` starts one and resolves to a handle `{ exited, ready, stop }`: `exited` a promise of
 * `{ code, signal }` (or `{ error }`), `ready()` resolves once it serves (rejects if it exits first), `stop()` ends
 * it. `onCrashLoop(name)` is called once a unit crash-loops; `say` prints one line per event.
 */
class Supervisor {
  constructor({ say, onCrashLoop, rules = {}, now = Date.now }) {
    this.say = say;
    this.onCrashLoop = onCrashLoop;
    this.rules = rules;
    this.now = now;
    this.units = new Map();
    this.stopping = false;
  }

  /** The first start: resolves once `name` is ready; a failure rejects and is not retried. */
  async start(name, launch) {
    const unit = { name, launch, policy: new RestartPolicy(this.rules), handle: null, startedAt: this.now(), timer: null, launching: null, up: false };
    this.units.set(name, unit);
    unit.launching = launch();
    unit.handle = await unit.launching;
    unit.launching = null;
    this.watch(unit, unit.handle);
    await unit.handle.ready();
    unit.up = true;
  }

  watch(unit, handle) {
    void handle.exited.then((exit) => {
      // During the first start the exit is start()'s failure; after stopAll() or a newer launch it is expected.
      if (this.stopping || !unit.up || unit.handle !== handle) return;
      this.exitedUnasked(unit, exit);
    });
  }

  exitedUnasked(unit, exit) {
    const upMs = this.now() - unit.startedAt;
    unit.handle = null;
    const next = unit.policy.exited(this.now(), upMs);
    if (!next.restart) {
      this.say(`${unit.name} exited (${how(exit)}) after ${seconds(upMs)}: ${next.exits} exits within ${seconds(next.windowMs)} is a crash loop; stopping everything`);
      this.onCrashLoop(unit.name);
      return;
    }
    this.say(`${unit.name} exited (${how(exit)}) after ${seconds(upMs)}; restart ${next.attempt} in ${seconds(next.delayMs)}`);
    unit.timer = setTimeout(() => void this.restart(unit, next.attempt), next.delayMs);
  }

  async restart(unit, attempt) {
    unit.timer = null;
    if (this.stopping) return;
    unit.startedAt = this.now();
    let handle;
    try {
      unit.launching = unit.launch();
      handle = await unit.launching;
    } catch (e) {
      unit.launching = null;
      if (!this.stopping) this.exitedUnasked(unit, { error: e.message.split('\n')[0] });
      return;
    }
    unit.launching = null;
    unit.handle = handle;
    if (this.stopping) return void (await handle.stop());
    this.watch(unit, handle);
    try {
      await handle.ready();
    } catch (e) {
      // Exited before serving: watch() has it. Still running but not serving: said, and left to the operator.
      if (!this.stopping && unit.handle === handle) this.say(`${unit.name} is running again (restart ${attempt}) but not ready: ${e.message.split('\n')[0]}`);
      return;
    }
    if (!this.stopping && unit.handle === handle) this.say(`${unit.name} ready again (restart ${attempt})`);
  }

  /** Stops every unit, in `order` (names), then any other; pending restarts are cancelled. */
  async stopAll(order) {
    this.stopping = true;
    const names = [...order.filter((n) => this.units.has(n)), ...[...this.units.keys()].filter((n) => !order.includes(n))];
    for (const name of names) {
      const unit = this.units.get(name);
      if (unit.timer) clearTimeout(unit.timer);
      if (unit.launching) await unit.launching.then((h) => (unit.handle = h), () => undefined);
      if (unit.handle) await unit.handle.stop();
    }
  }
}

module.exports = { RestartPolicy, Supervisor, defaultRules };
