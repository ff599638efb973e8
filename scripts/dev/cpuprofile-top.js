#!/usr/bin/env node
// `node scripts/dev/cpuprofile-top.js FILE.cpuprofile [N]`: the N functions with the most self time in a V8 CPU
// profile (node --cpu-prof), with their share of the samples, and the same summed per package. For profiling the
// hot path (docs/BENCHMARKS.md keeps the before/after).
const fs = require('node:fs');
const [file, n = '25'] = process.argv.slice(2);
const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((node) => [node.id, node]));
const self = new Map();
const dt = prof.timeDeltas;
for (let i = 0; i < prof.samples.length; i++) {
  const node = byId.get(prof.samples[i]);
  self.set(node.id, (self.get(node.id) ?? 0) + (dt[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const fn = new Map();
const pkg = new Map();
for (const [id, us] of self) {
  const { callFrame: f } = byId.get(id);
  const where = f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/');
  const key = `${f.functionName || '(anonymous)'} ${where}:${f.lineNumber + 1}`;
  fn.set(key, (fn.get(key) ?? 0) + us);
  const p = f.url.includes('node_modules/') ? f.url.split('node_modules/').pop().split('/').slice(0, f.url.includes('node_modules/@') ? 2 : 1).join('/')
    : f.url.includes('/dist/') ? 'tollgate' : f.url.startsWith('node:') ? 'node' : f.functionName.startsWith('(') ? f.functionName : 'native';
  pkg.set(p, (pkg.get(p) ?? 0) + us);
}
const pct = (us) => ((100 * us) / total).toFixed(1).padStart(5) + '%';
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
console.log('\nby package:');
for (const [k, us] of [...pkg].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${pct(us)}  ${k}`);
console.log('\nby function (self time):');
for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) console.log(`${pct(us)}  ${k}`);
