import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { OutgoingMessage, Publisher } from '@tollgate/messaging';
import { KeyAuthenticator, Principal } from '@tollgate/persistence';
import { loadProfile, renderErrorBody } from '@tollgate/profiles';
import { MemoryCounterStore } from '@tollgate/rate-limit';
import { CreditReservations } from '../clients/metering-client';
import { Upstream, UpstreamResponse } from '../clients/upstream';
import { Draw } from './call';
import { CreditPolicy, EventualCredits, HoldOutcome, Need, PaidCall } from './credit-policy';
import { GatewayPipeline } from './gateway-pipeline';

/** Metering as far as eventual credits ask it: a balance. */
class BalanceOnly implements CreditReservations {
  constructor(private readonly credits: number) {}
  balance = () => Promise.resolve(this.credits);
  reserve = () => Promise.reject(new Error('eventual credits never hold at metering'));
  release = () => Promise.resolve();
  endLease = () => Promise.resolve(0);
  close = () => undefined;
}

/** The real eventual policy, counting what the pipeline holds and gives back. */
class Counted implements CreditPolicy {
  held = 0;
  givenBack: number[] = [];
  constructor(private readonly inner: CreditPolicy) {}
  async hold(call: PaidCall, need: Need, reservationId: string): Promise<HoldOutcome> {
    const outcome = await this.inner.hold(call, need, reservationId);
    if (outcome.granted) this.held += outcome.held;
    return outcome;
  }
  giveBack(orgId: string, reservationId: string | null, credits: number): Promise<boolean> {
    this.givenBack.push(credits);
    return this.inner.giveBack(orgId, reservationId, credits);
  }
  balance(orgId: string): Promise<number> {
    return this.inner.balance(orgId);
  }
}

const principal: Principal = { orgId: '0190f0f0-0000-7000-8000-000000000001', keyId: '0190f0f0-0000-7000-8000-000000000002', userId: null, plan: 'pro', profile: 'trackyard', limitOverrides: {} };
const ok: UpstreamResponse = { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"data":[]}') };

interface Answer {
  status: number;
  headers: Record<string, unknown>;
  body: string;
}

/**
 * One trackyard `POST /search` (a fixed 1 credit) through the pipeline, in memory: what the client got, the events
 * published, what was held and given back.
 */
async function call(opts: { balance?: number; upstream: (res: ServerResponse) => Promise<UpstreamResponse>; publish?: () => Promise<void>; maxEventBytes?: number }) {
  const credits = new Counted(new EventualCredits(new BalanceOnly(opts.balance ?? 10), { now: () => Date.now() }));
  const events: Array<Record<string, unknown>> = [];
  const publisher: Publisher = {
    publish: async (_topic: string, messages: OutgoingMessage[]) => {
      await (opts.publish ?? (() => Promise.resolve()))();
      for (const m of messages) events.push(JSON.parse(String(m.value)) as Record<string, unknown>);
    },
    close: () => Promise.resolve(),
  };
  const req = new IncomingMessage(new Socket());
  req.method = 'POST';
  req.url = '/api/external/v1/search';
  req.headers = { authorization: 'Bearer tk_live_test' };
  const res = new ServerResponse(req);
  const pipeline = new GatewayPipeline({
    profile: loadProfile('trackyard'),
    auth: { authenticate: () => Promise.resolve({ ok: true, principal }) } as unknown as KeyAuthenticator,
    limits: new MemoryCounterStore(),
    credits,
    upstream: { send: () => opts.upstream(res) } as unknown as Upstream,
    query: {} as Upstream,
    events: publisher,
    trustedProxies: [],
    clock: { now: () => Date.now() },
    maxEventBytes: opts.maxEventBytes,
  });
  const answer = await new Promise<Answer | null>((resolve) => {
    // A client that went away is answered nothing: the call ends with its 499 event.
    const gone = setInterval(() => {
      if (events.some((e) => e.status_code === 499)) done(null);
    }, 5);
    const done = (a: Answer | null) => {
      clearInterval(gone);
      resolve(a);
    };
    res.end = ((c?: Buffer | string) => {
      done({ status: res.statusCode, headers: res.getHeaders(), body: c === undefined ? '' : String(c) });
      return res;
    }) as typeof res.end;
    pipeline.serve(req, res);
  });
  return { answer, events, credits };
}

describe('the pipeline: one release of what a call drew, on every way out', () => {
  // The refusals below log as they should; the test reads their answers instead.
  beforeAll(() => {
    jest.spyOn(console, 'error').mockImplementation(() => undefined);
    jest.spyOn(console, 'warn').mockImplementation(() => undefined);
  });
  afterAll(() => jest.restoreAllMocks());

  it('a 2xx whose event is recorded keeps its credit: nothing is given back, the header shows it spent', async () => {
    const { answer, events, credits } = await call({ upstream: () => Promise.resolve(ok) });
    expect(answer?.status).toBe(200);
    expect(answer?.headers['x-credits-remaining']).toBe('9');
    expect(events.map((e) => [e.status_code, e.decision])).toEqual([[200, 'forwarded']]);
    expect(credits.held).toBe(1);
    expect(credits.givenBack).toEqual([]);
  });

  it('the upstream unreachable: 502, the credit given back once before the answer (its header shows it)', async () => {
    const { answer, events, credits } = await call({ upstream: () => Promise.reject(new Error('connect ECONNREFUSED')) });
    expect(answer?.status).toBe(502);
    expect(answer?.headers['x-credits-remaining']).toBe('10');
    expect(events.map((e) => [e.status_code, e.decision])).toEqual([[502, 'upstream_unavailable']]);
    expect(credits.givenBack).toEqual([1]);
  });

  it('an upstream error answer is handed out free: given back once, its event says 500', async () => {
    const { answer, events, credits } = await call({ upstream: () => Promise.resolve({ ...ok, status: 500 }) });
    expect(answer?.status).toBe(500);
    expect(answer?.headers['x-credits-remaining']).toBe('10');
    expect(events.map((e) => [e.status_code, e.decision])).toEqual([[500, 'forwarded']]);
    expect(credits.givenBack).toEqual([1]);
  });

  it('an event Kafka does not acknowledge: 503, no data out, the credit given back once', async () => {
    const { answer, events, credits } = await call({ upstream: () => Promise.resolve(ok), publish: () => Promise.reject(new Error('broker down')) });
    expect(answer?.status).toBe(503);
    expect(answer?.body).not.toContain('"data"');
    expect(events).toEqual([]);
    expect(credits.givenBack).toEqual([1]);
  });

  it('an event metering would refuse: 502 unpriceable, no data out, the credit given back once', async () => {
    const { answer, credits } = await call({ upstream: () => Promise.resolve(ok), maxEventBytes: 100 });
    expect(answer?.status).toBe(502);
    expect(JSON.parse(answer!.body)).toEqual(renderErrorBody(loadProfile('trackyard').errors.unpriceable, {}));
    expect(credits.givenBack).toEqual([1]);
  });

  it('a client gone before the answer: nothing written, recorded 499, the credit given back once', async () => {
    const { answer, events, credits } = await call({
      upstream: (res) => {
        res.destroy();
        return Promise.resolve(ok);
      },
    });
    expect(answer).toBeNull();
    expect(events.map((e) => [e.status_code, e.decision])).toEqual([[499, 'client_closed']]);
    expect(credits.givenBack).toEqual([1]);
  });

  it('credits that do not cover the call: 402, never forwarded, nothing held or given back', async () => {
    let forwarded = false;
    const { answer, events, credits } = await call({
      balance: 0,
      upstream: () => {
        forwarded = true;
        return Promise.resolve(ok);
      },
    });
    expect(answer?.status).toBe(402);
    expect(forwarded).toBe(false);
    expect(events.map((e) => [e.status_code, e.decision])).toEqual([[402, 'insufficient_credits']]);
    expect(credits.held).toBe(0);
    expect(credits.givenBack).toEqual([]);
  });
});

describe('Draw', () => {
  const paid = ['acme', 'trackyard', 'POST', '/search', 0] as const;
  const granted = { granted: true as const, reservationId: 'r1', held: 3, balance: 7 };

  it('gives back once, however often it is released; never after keep; never when nothing was held', async () => {
    const policy = new Counted(new EventualCredits(new BalanceOnly(10), { now: () => 0 }));
    const released = new Draw(policy, ...paid);
    released.took(granted);
    expect(await Promise.all([released.release(), released.release()])).toEqual([3, 0]);
    expect(await released.release()).toBe(0);
    const kept = new Draw(policy, ...paid);
    kept.took(granted);
    kept.keep();
    expect(await kept.release()).toBe(0);
    expect(await new Draw(policy, ...paid).release()).toBe(0);
    expect(policy.givenBack).toEqual([3]);
  });

  it('holds once: a second hold on one call is a bug, refused', () => {
    const draw = new Draw(new Counted(new EventualCredits(new BalanceOnly(10), { now: () => 0 })), ...paid);
    draw.took(granted);
    expect(() => draw.took(granted)).toThrow('a call holds its credits once');
  });
});
