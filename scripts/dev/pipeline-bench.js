#!/usr/bin/env node
/*
 * The gateway pipeline alone, for its CPU per call: trackyard `POST /search` (1 credit, strict with leases) through
 * `GatewayPipeline.serve` with in-memory dependencies (key lookup, Kafka, metering and the upstream answer at once;
 * limits in memory) and in-memory requests and responses (no socket). Prints the process CPU per call, which counts
 * the pipeline, Node's request/response objects and the answer's bytes, and nothing else.
 * `npm run build && node scripts/dev/pipeline-bench.js [DIST] [CALLS]`; DIST (default ./dist) may be another build, so
 * two commits compare in turns on a shared machine (run each a few times: the median is the figure).
 */
const { IncomingMessage, ServerResponse } = require('node:http');
const { resolve } = require('node:path');

const dist = resolve(process.argv[2] || 'dist');
const calls = Number(process.argv[3] || 100_000);
const concurrency = 32;
const { GatewayPipeline } = require(`${dist}/apps/gateway/src/pipeline/gateway-pipeline.js`);
const { LeasedCredits } = require(`${dist}/apps/gateway/src/pipeline/credit-leases.js`);
const { loadProfile } = require(`${dist}/libs/profiles/src/index.js`);
const { MemoryCounterStore, systemClock } = require(`${dist}/libs/rate-limit/src/index.js`);

const principal = { orgId: '0190f0f0-0000-7000-8000-000000000001', keyId: '0190f0f0-0000-7000-8000-000000000002', userId: null, plan: 'pro', profile: 'trackyard', limitOverrides: { minute: 1e12, day: 1e12 } };
// Metering grants an hour-long lease of a billion credits: every call draws from it.
const metering = {
  reserve: async (r) => ({ granted: true, requested: 0, shortfall: 0, balance: 1e9, leaseCredits: r.leaseCredits ? 1e9 : 0, leaseMs: 3_600_000 }),
  release: async () => undefined,
  endLease: async () => 0,
  balance: async () => 1e9,
  close() {},
};
const answer = Buffer.from(JSON.stringify({ data: [{ id: 'trk_1', title: 'Night Drive' }], total: 1 }));
const pipeline = new GatewayPipeline({
  profile: loadProfile('trackyard', resolve(dist, '../config/profiles')),
  auth: { authenticate: async () => ({ ok: true, principal }) },
  limits: new MemoryCounterStore(),
  credits: new LeasedCredits(metering, systemClock, { gateway: 'bench' }),
  upstream: { send: async () => ({ status: 200, headers: { 'content-type': 'application/json; charset=utf-8', 'content-length': String(answer.length) }, body: answer }) },
  query: null,
  events: { publish: async () => undefined, close: async () => undefined },
  trustedProxies: [],
  clock: systemClock,
  maxEventBytes: 1_000_000,
});

const body = Buffer.from(JSON.stringify({ query: 'night drive' }));
const socket = { remoteAddress: '127.0.0.1', readableHighWaterMark: 16_384, destroyed: false, on() {}, once() {}, removeListener() {} };
let failed = 0;

function one() {
  return new Promise((done) => {
    const req = new IncomingMessage(socket);
    req.method = 'POST';
    req.url = '/api/external/v1/search';
    req.headers = { host: 'gateway', 'content-type': 'application/json', authorization: 'Bearer tk_live_bench', 'content-length': String(body.length) };
    const res = new ServerResponse(req);
    const end = res.end;
    res.end = function (...args) {
      if (res.statusCode !== 200) failed++;
      end.apply(this, args);
      done();
      return this;
    };
    pipeline.serve(req, res);
    req.push(body);
    req.complete = true; // read whole: no 'aborted' when the request is destroyed after its end
    req.push(null);
  });
}

async function run(n) {
  let i = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (i++ < n) await one();
  }));
}

(async () => {
  await run(20_000); // warm-up: JIT, the lease
  const cpu0 = process.cpuUsage();
  await run(calls);
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ dist, calls, failed, cpuMicrosecondsPerCall: Number(((cpu.user + cpu.system) / calls).toFixed(1)) }));
  process.exit(failed > 0 ? 1 : 0);
})();
