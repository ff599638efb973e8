import { checkLane, ClientResult, LaneFacts, UsageRow } from './check';
import { generateCalls } from './hostile-calls';
import { Prng } from './prng';
import { normalisePath, ServedCall } from './scripted-upstream';

const served = (n: number, s: Partial<ServedCall>): [number, ServedCall] => [
  n,
  { call: n, method: 'GET', url: '/v1/companies', route: 'trace:list', status: 200, mode: 'normal', ids: [], unpriceable: false, bytes: 10, times: 1, ...s },
];
const row = (request_id: string, credits: number, status = 200): UsageRow => ({ request_id, status_code: status, credits_consumed: credits, endpoint: '/companies', decision: 'forwarded', cost_reason: 'charged', path: '/v1/companies' });
const call = (n: number, status: number | null, requestId: string | null = `r${n}`): ClientResult => ({ n, status, requestId });
const ledgerFor = (granted: number, spent: number) => [{ seq: 1, type: 'top_up', amount: granted }, ...(spent ? [{ seq: 2, type: 'reservation', amount: -spent }] : [])];

function lane(over: Partial<LaneFacts>): LaneFacts {
  return { lane: 0, profile: 'trace', orgId: 'o', results: [], served: new Map(), usage: [], ledger: ledgerFor(100, 0), balance: 100, openHolds: 0, ...over };
}

describe('the money fuzzer checker', () => {
  it('given every 2xx metered once at the distinct new ids of its answer, then nothing is reported', () => {
    const f = lane({
      results: [call(0, 200), call(1, 200), call(2, 404)],
      served: new Map([served(0, { ids: ['a', 'b'] }), served(1, { ids: ['b', 'c'] })]),
      usage: [row('r0', 2), row('r1', 1), row('r2', 0, 404)],
      ledger: ledgerFor(100, 3),
      balance: 97,
    });
    expect(checkLane(f)).toEqual([]);
  });

  it('given a 2xx that is not in /usage, then it is reported not metered with what it owed', () => {
    const f = lane({ results: [call(0, 200)], served: new Map([served(0, { ids: ['a'] })]) });
    expect(checkLane(f)).toEqual([expect.objectContaining({ invariant: 'not-metered', call: 0, detail: expect.stringContaining('owed 1') })]);
  });

  it('given a 2xx priced as another route (the upstream served a page, the row charged 0), then it is a wrong charge', () => {
    const f = lane({ results: [call(0, 200)], served: new Map([served(0, { ids: ['a', 'b', 'c'] })]), usage: [row('r0', 0)] });
    expect(checkLane(f).map((v) => v.invariant)).toEqual(['wrong-charge']);
  });

  it('given a 2xx of an answer that cannot be priced, then handing it out is reported', () => {
    const f = lane({ results: [call(0, 200)], served: new Map([served(0, { unpriceable: true, mode: 'wrong-shape' })]), usage: [row('r0', 0)] });
    expect(checkLane(f).map((v) => v.invariant)).toEqual(['unpriceable-handed-out']);
  });

  it('given a non-2xx charged, a row metered twice and a charge no answer carries, then each is reported', () => {
    const f = lane({
      results: [call(0, 502), call(1, 200)],
      served: new Map([served(0, { status: 200, ids: ['a'] }), served(1, { ids: ['b'] })]),
      usage: [row('r0', 1, 502), row('r1', 1), row('r1', 1), row('ghost', 4)],
      ledger: ledgerFor(100, 7),
      balance: 93,
    });
    expect(checkLane(f).map((v) => v.invariant).sort()).toEqual(['charged-non-2xx', 'metered-twice', 'phantom-charge']);
  });

  it('given an id already charged to the org earlier in the run, then its re-access is owed nothing', () => {
    const f = lane({
      results: [call(0, 200), call(1, 200)],
      served: new Map([served(0, { ids: ['a'] }), served(1, { ids: ['a'] })]),
      usage: [row('r0', 1), row('r1', 1)],
      ledger: ledgerFor(100, 2),
      balance: 98,
    });
    expect(checkLane(f)).toEqual([expect.objectContaining({ invariant: 'wrong-charge', call: 1 })]);
  });

  it('given an id handed out in a 2xx that was not metered, then its later charge is reported as the knock-on it is', () => {
    const f = lane({
      results: [call(0, 200), call(1, 200)],
      served: new Map([served(0, { ids: ['a'] }), served(1, { ids: ['a'] })]),
      usage: [row('r1', 1)],
      ledger: ledgerFor(100, 1),
      balance: 99,
    });
    expect(checkLane(f)).toEqual([
      expect.objectContaining({ invariant: 'not-metered', call: 0 }),
      expect.objectContaining({ invariant: 'wrong-charge', call: 1, detail: expect.stringContaining('knock-on') }),
    ]);
  });

  it('given an open hold, a balance off the ledger and a ledger that spent more than /usage, then each is reported', () => {
    const f = lane({ openHolds: 1, ledger: ledgerFor(100, 1), balance: 100 });
    expect(checkLane(f).map((v) => v.invariant)).toEqual(['hold-left', 'balance-not-ledger', 'ledger-not-usage']);
  });

  it('given trackyard, then each 2xx of a served route owes exactly 1 and a 2xx Tollgate answered itself owes nothing', () => {
    const f = lane({
      profile: 'trackyard',
      results: [call(0, 200), call(1, 200)],
      served: new Map([served(0, { route: 'trackyard:search', method: 'POST' })]),
      usage: [row('r0', 1)],
      ledger: ledgerFor(100, 1),
      balance: 99,
    });
    expect(checkLane(f)).toEqual([]);
  });
});

describe('the money fuzzer upstream reads paths as common servers do', () => {
  it.each([
    ['/v1/companies/%2e?limit=100', 'segments', ['v1', 'companies']],
    ['/v1/companies/.', 'segments', ['v1', 'companies']],
    ['/v1/companies/x/%2E%2e/y', 'segments', ['v1', 'companies', 'y']],
    ['/v1//companies/acme%20%20%20', 'segments', ['v1', 'companies', 'acme']],
    ['/v1/companies/a%2fpartnerships', 'segments', ['v1', 'companies', 'a/partnerships']],
    ['/v1/companies/a%2fpartnerships', 'decode-first', ['v1', 'companies', 'a', 'partnerships']],
    ['/v1/companies/x%2f..%2fy', 'decode-first', ['v1', 'companies', 'y']],
  ] as const)('%s (%s) -> %j', (url, how, segments) => {
    expect(normalisePath(url, how)).toEqual(segments);
  });

  it('refuses a path that is not valid percent-encoded UTF-8', () => {
    expect(normalisePath('/v1/companies/%ff', 'segments')).toBeNull();
  });
});

describe('the money fuzzer is reproducible from its seed', () => {
  it('gives the same draws for the same seed and other draws for another', () => {
    const a = Array.from({ length: 5 }, ((r) => () => r.u32())(new Prng(7)));
    const b = Array.from({ length: 5 }, ((r) => () => r.u32())(new Prng(7)));
    const c = Array.from({ length: 5 }, ((r) => () => r.u32())(new Prng(8)));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('generates the same calls and answer plans for the same seed', () => {
    const strip = (seed: number) => generateCalls(seed, 50, 'run', (l) => `key${l}`).map((c) => ({ ...c, request: { ...c.request, body: c.request.body?.toString('base64') ?? null } }));
    expect(strip(3)).toEqual(strip(3));
    expect(strip(3)).not.toEqual(strip(4));
  });
});
