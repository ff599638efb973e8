import { defaultRules, Exit, Handle, RestartPolicy, Supervisor } from '../../scripts/supervisor';

/** `npm run up`'s supervisor (scripts/supervisor.js): the restart policy, and the supervisor over fake units. */
describe('RestartPolicy (up restarts an app that dies)', () => {
  const s = 1000;

  it('restarts after 0.5 s, doubling to at most 10 s, counting every restart', () => {
    const policy = new RestartPolicy({ loopCrashes: 100 });
    const delays = [];
    for (let i = 0; i < 8; i++) {
      const next = policy.exited(i * 20 * s, 5 * s);
      expect(next).toMatchObject({ restart: true, attempt: i + 1 });
      delays.push(next.restart ? next.delayMs : -1);
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
  });

  it('starts the backoff again at 0.5 s once the app had stayed up 30 s', () => {
    const policy = new RestartPolicy();
    policy.exited(0, 1 * s);
    policy.exited(2 * s, 1 * s);
    expect(policy.exited(4 * s, 1 * s)).toEqual({ restart: true, delayMs: 2000, attempt: 3 });
    expect(policy.exited(40 * s, 30 * s)).toEqual({ restart: true, delayMs: 500, attempt: 4 });
  });

  it('calls 5 exits within 60 s a crash loop and gives up', () => {
    const policy = new RestartPolicy();
    for (const t of [0, 1, 3, 6]) expect(policy.exited(t * s, 0.2 * s).restart).toBe(true);
    expect(policy.exited(11 * s, 0.2 * s)).toEqual({ restart: false, exits: 5, windowMs: 60_000 });
  });

  it('never gives up on exits spread wider than the window', () => {
    const policy = new RestartPolicy();
    for (let i = 0; i < 20; i++) expect(policy.exited(i * 16 * s, 15 * s).restart).toBe(true);
  });

  it('documents its defaults as printed by up', () => {
    expect(defaultRules).toEqual({ firstDelayMs: 500, maxDelayMs: 10_000, stableAfterMs: 30_000, loopCrashes: 5, loopWindowMs: 60_000 });
  });
});

/** A unit whose process we end by hand; `failStart` makes every later launch exit at once. */
class FakeUnit {
  launches = 0;
  stops: string[] = [];
  exitCurrent: (e: Exit) => void = () => undefined;
  failStart = false;
  constructor(readonly name: string, private readonly log: string[]) {}

  launch = async (): Promise<Handle> => {
    this.launches += 1;
    let exit!: (e: Exit) => void;
    const exited = new Promise<Exit>((r) => (exit = r));
    this.exitCurrent = exit;
    if (this.failStart) setTimeout(() => exit({ code: 1, signal: null }), 1);
    return {
      exited,
      // Like up's: a unit that exits before serving rejects once it has exited.
      ready: async () => {
        if (!this.failStart) return;
        await exited;
        throw new Error(`${this.name} exited during start-up`);
      },
      stop: async () => {
        this.log.push(`stop ${this.name}`);
        exit({ code: 0, signal: 'SIGTERM' });
      },
    };
  };
}

const until = async (cond: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 2));
  }
};

describe('Supervisor', () => {
  const rules = { firstDelayMs: 5, maxDelayMs: 40, stableAfterMs: 10_000, loopCrashes: 3, loopWindowMs: 10_000 };

  it('restarts a unit that died, says so and when it is ready again, and leaves the others alone', async () => {
    const lines: string[] = [];
    const sup = new Supervisor({ say: (l) => lines.push(l), onCrashLoop: () => lines.push('LOOP'), rules });
    const a = new FakeUnit('metering', lines);
    const b = new FakeUnit('gateway', lines);
    await sup.start('metering', a.launch);
    await sup.start('gateway', b.launch);
    a.exitCurrent({ code: null, signal: 'SIGKILL' });
    await until(() => lines.some((l) => l.includes('ready again')));
    expect(lines[0]).toMatch(/^metering exited \(SIGKILL\) after \d+\.\d s; restart 1 in 0\.0 s$/);
    expect(lines[1]).toBe('metering ready again (restart 1)');
    expect([a.launches, b.launches]).toEqual([2, 1]);
  });

  it('gives up on a crash loop, once, and stops everything in the order asked', async () => {
    const lines: string[] = [];
    let loops = 0;
    const sup = new Supervisor({ say: (l) => lines.push(l), onCrashLoop: () => (loops += 1), rules });
    const a = new FakeUnit('metering', lines);
    const b = new FakeUnit('gateway', lines);
    await sup.start('metering', a.launch);
    await sup.start('gateway', b.launch);
    a.failStart = true;
    a.exitCurrent({ code: 1, signal: null });
    await until(() => loops > 0);
    expect(lines.filter((l) => l.startsWith('metering exited (exit 1)'))).toHaveLength(3);
    expect(lines.at(-1)).toMatch(/^metering exited \(exit 1\) after \d+\.\d s: 3 exits within 10\.0 s is a crash loop; stopping everything$/);
    await sup.stopAll(['gateway', 'metering']);
    expect(lines.filter((l) => l.startsWith('stop '))).toEqual(['stop gateway']); // metering is not running
    expect(loops).toBe(1);
  });

  it('retries a first start that exits before serving, and resolves once the unit serves', async () => {
    const lines: string[] = [];
    const sup = new Supervisor({ say: (l) => lines.push(l), onCrashLoop: () => lines.push('LOOP'), rules });
    const a = new FakeUnit('metering', lines);
    a.failStart = true;
    setTimeout(() => (a.failStart = false), 8);
    await sup.start('metering', a.launch);
    expect(lines.at(-1)).toMatch(/^metering ready \(restart \d\)$/);
    expect(lines).not.toContain('LOOP');
    expect(a.launches).toBeGreaterThan(1);
  });

  it('rejects a first start that crash-loops, after saying so', async () => {
    const lines: string[] = [];
    let loops = 0;
    const sup = new Supervisor({ say: (l) => lines.push(l), onCrashLoop: () => (loops += 1), rules });
    const a = new FakeUnit('metering', lines);
    a.failStart = true;
    await expect(sup.start('metering', a.launch)).rejects.toThrow('metering is crash-looping');
    expect(a.launches).toBe(3);
    expect(lines.at(-1)).toContain('3 exits within 10.0 s is a crash loop; stopping everything');
    expect(loops).toBe(1);
  });

  it('cancels a pending restart on stopAll', async () => {
    const lines: string[] = [];
    const sup = new Supervisor({ say: (l) => lines.push(l), onCrashLoop: () => undefined, rules: { ...rules, firstDelayMs: 50 } });
    const a = new FakeUnit('metering', lines);
    await sup.start('metering', a.launch);
    a.exitCurrent({ code: 1, signal: null });
    await until(() => lines.length > 0);
    await sup.stopAll(['metering']);
    await new Promise((r) => setTimeout(r, 80));
    expect(a.launches).toBe(1);
  });
});
