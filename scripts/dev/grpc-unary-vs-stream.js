#!/usr/bin/env node
/*
 * A unary gRPC call against a message on an open bidirectional stream (why the gateway's holds go on ReserveStream):
 * grpc-js, client and server in two processes, one small request at a time; prints the mean round trip and the CPU
 * per request of each side. `node scripts/dev/grpc-unary-vs-stream.js` (needs nothing else running).
 */
const { join } = require('node:path');
const { tmpdir } = require('node:os');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { fork } = require('node:child_process');
const fs = require('node:fs');
const protoFile = join(tmpdir(), 'tollgate-grpc-probe.proto');
fs.writeFileSync(protoFile, `syntax = "proto3"; package b;
message Req { uint64 id = 1; repeated string holds = 2; }
message Rep { uint64 id = 1; repeated string results = 2; }
service S { rpc Unary(Req) returns (Rep); rpc Stream(stream Req) returns (stream Rep); }`);
const def = grpc.loadPackageDefinition(protoLoader.loadSync(protoFile, { keepCase: true, longs: String }));
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
if (process.argv[2] === 'server') {
  const server = new grpc.Server();
  server.addService(def.b.S.service, {
    Unary: (call, cb) => setImmediate(() => cb(null, { id: call.request.id, results: call.request.holds })),
    Stream: (call) => call.on('data', (r) => setImmediate(() => call.write({ id: r.id, results: r.holds }))),
  });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (_e, port) => process.send({ port }));
  process.on('message', (m) => { if (m === 'cpu') process.send({ cpu: cpu() }); });
} else {
  const srv = fork(__filename, ['server']);
  srv.once('message', async ({ port }) => {
    const client = new def.b.S(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata(); md.set('authorization', 'Bearer x'.repeat(4));
    const scpu = () => new Promise((r) => { srv.once('message', (m) => r(m.cpu)); srv.send('cpu'); });
    const holds = ['org-1|res-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b|POST|/search'];
    const N = 5000;
    async function run(name, one) {
      for (let i = 0; i < 500; i++) await one(i);
      const c0 = cpu(), s0 = await scpu(), t0 = performance.now();
      for (let i = 0; i < N; i++) await one(i);
      const wall = performance.now() - t0, c1 = cpu(), s1 = await scpu();
      console.log(name, 'p-mean ms', (wall / N).toFixed(3), 'client CPU µs/msg', Math.round((c1 - c0) * 1000 / N), 'server CPU µs/msg', Math.round((s1 - s0) * 1000 / N));
    }
    const unary = (i) => new Promise((res, rej) => client.Unary({ id: i, holds }, md, { deadline: Date.now() + 3000 }, (e, r) => e ? rej(e) : res(r)));
    const stream = client.Stream(md);
    const waiting = new Map();
    stream.on('data', (r) => { const w = waiting.get(String(r.id)); waiting.delete(String(r.id)); w(r); });
    const bidi = (i) => new Promise((res) => { waiting.set(String(i), res); stream.write({ id: i, holds }); });
    for (let k = 0; k < 2; k++) { await run('unary', unary); await run('bidi ', bidi); }
    stream.end(); client.close(); srv.kill(); process.exit(0);
  });
}
