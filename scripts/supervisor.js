// The one process supervisor, in two parts:
// - launchApp: one built app (dist/apps/<app>) as a child process: its output line by line, a wait until it serves
//   (GET /health/ready), and a stop (SIGTERM, SIGKILL after 10 s). `npm run up` (scripts/up.js) and the test stack
//   (test/support/stack.ts) both start apps with it.
// - Supervisor: `npm run up`'s restarts: keeps each thing it started running, the way an operator's process manager
//   would, and says what it does. The test stack does not restart: its tests kill apps on purpose.
// The restart rules The rules (printed by `up` at the first restart, documented in the README):
// - an exit nobody asked for is restarted after a backoff: 0.5 s, doubling to at most 10 s;
// - the backoff starts again at 0.5 s once the unit had stayed up 30 s before its exit;
// - 5 exits within 60 s are a crash loop: the supervisor gives up (up stops everything, exit 1);
// - the same holds during the first start (a broker still electing leaders can fail it; a configuration error
//   crash-loops within seconds and stops everything, the app's own message printed above).
// The policy is pure (time comes in), so it is unit-tested without processes (test/deploy/supervisor.unit.spec.ts).

const { spawn } = require('node:child_process');
const { join } = require('node:path');

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
 * `{ code, signal }`, `ready()` resolves once it serves (rejects if it exits first or never serves), `stop()` ends
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

  /**
   * Starts `name` and keeps it running. Resolves once it first serves: an exit on the way is restarted like any
   * other (a broker still electing leaders fails a first start too), so it rejects only on a crash loop or when the
   * unit runs but does not serve in time.
   */
  start(name, launch) {
    const unit = { name, launch, policy: new RestartPolicy(this.rules), handle: null, startedAt: 0, timer: null, launching: null, first: null };
    this.units.set(name, unit);
    return new Promise((resolve, reject) => {
      unit.first = { resolve, reject };
      void this.run(unit, 0);
    });
  }

  async run(unit, attempt) {
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
    void handle.exited.then((exit) => {
      // After stopAll() the exit was asked for.
      if (!this.stopping && unit.handle === handle) this.exitedUnasked(unit, exit);
    });
    try {
      await handle.ready();
    } catch (e) {
      // Exited before serving: the exit is handled above. Running but not serving: the first start fails with
      // the reason; after a restart it is said and left running for the operator to look at.
      if (this.stopping || unit.handle !== handle) return;
      if (unit.first) return void this.settle(unit, e);
      this.say(`${unit.name} is running again (restart ${attempt}) but not ready: ${e.message.split('\n')[0]}`);
      return;
    }
    if (this.stopping || unit.handle !== handle) return;
    if (attempt > 0) this.say(`${unit.name} ready${unit.first ? '' : ' again'} (restart ${attempt})`);
    this.settle(unit);
  }

  settle(unit, error) {
    const first = unit.first;
    unit.first = null;
    if (first && error) first.reject(error);
    else if (first) first.resolve();
  }

  exitedUnasked(unit, exit) {
    const upMs = this.now() - unit.startedAt;
    unit.handle = null;
    const next = unit.policy.exited(this.now(), upMs);
    if (!next.restart) {
      this.say(`${unit.name} exited (${how(exit)}) after ${seconds(upMs)}: ${next.exits} exits within ${seconds(next.windowMs)} is a crash loop; stopping everything`);
      this.settle(unit, new Error(`${unit.name} is crash-looping (its last output is above)`));
      this.onCrashLoop(unit.name);
      return;
    }
    this.say(`${unit.name} exited (${how(exit)}) after ${seconds(upMs)}; restart ${next.attempt} in ${seconds(next.delayMs)}`);
    unit.timer = setTimeout(() => void this.run(unit, next.attempt), next.delayMs);
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

/**
 * Starts `node [nodeArgs] <root>/dist/apps/<app>/src/main.js` with `env`. Each line it prints goes to `onLine`; the
 * last `tailLines` are kept for the errors below. Returns `{ child, exited, gone, tail, ready, stop }`:
 * `exited` resolves to `{ code, signal }`; `ready(timeoutMs)` resolves once `readyUrl` answers 200, and rejects
 * with the app's last lines if it exits first or does not serve in time; `stop(signal)` ends it (SIGKILL after 10 s).
 */
function launchApp({ root, app, name = app, env, nodeArgs = [], readyUrl, onLine = () => undefined, tailLines = 50 }) {
  const child = spawn(process.execPath, [...nodeArgs, join(root, 'dist', 'apps', app, 'src', 'main.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const tail = [];
  const reader = () => {
    let partial = '';
    return (b) => {
      const lines = (partial + b.toString('utf8')).split('\n');
      partial = lines.pop();
      for (const line of lines) {
        if (!line) continue;
        tail.push(line);
        if (tail.length > tailLines) tail.shift();
        onLine(line);
      }
    };
  };
  child.stdout.on('data', reader());
  child.stderr.on('data', reader());
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const ready = async (timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (gone()) throw new Error(`${name} exited during start-up (${how({ code: child.exitCode, signal: child.signalCode })}):\n${tail.join('\n')}`);
      try {
        const res = await fetch(readyUrl, { signal: AbortSignal.timeout(2000) });
        if (res.status === 200) return;
      } catch {
        /* not listening yet */
      }
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`${name} not ready at ${readyUrl} after ${timeoutMs / 1000} s:\n${tail.join('\n')}`);
  };
  const stop = async (signal = 'SIGTERM') => {
    if (gone()) return;
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.kill(signal);
    await exited;
    clearTimeout(t);
  };
  return { child, exited, gone, tail, ready, stop };
}

module.exports = { RestartPolicy, Supervisor, defaultRules, launchApp };
