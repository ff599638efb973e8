#!/usr/bin/env node
// `npm run images`: builds Tollgate's container images here, offline (no container registry is needed), tagged
// tollgate/*:local for docker-compose.local.yml and the Testcontainers path of scripts/with-infra.js:
//   tollgate/base      a Debian bookworm rootfs from debootstrap (--variant=minbase), imported with `docker import`
//   tollgate/postgres  PostgreSQL 15, Debian's package             (docker/postgres)
//   tollgate/kafka     Kafka 3.9.2: Debian's Java 17 + the jars scripts/infra.js resolves from Maven Central (docker/kafka)
//   tollgate/redis     Redis 7, Debian's package                  (docker/redis)
//   tollgate/app       the four apps: this machine's node binary, dist/ and the production node_modules (docker/app)
// Debian packages come from the mirror this machine's apt uses (its sources are copied into the base), so the builds
// run with `--network host`. Each image carries a label with the hash of its inputs and is skipped when the label
// matches; the rootfs tarball and the production node_modules are cached in TOLLGATE_CACHE (default
// ~/.cache/tollgate). Run `npm run build` first (the app image takes dist/ as it is). Needs root (debootstrap) and a
// Docker engine (DOCKER_HOST or the default socket). `node scripts/images.js postgres kafka` builds only those (and
// the base); `--force` rebuilds.
const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { kafkaJars } = require('./infra');

const root = path.join(__dirname, '..');
const cache = process.env.TOLLGATE_CACHE || path.join(os.homedir(), '.cache', 'tollgate');
const suite = 'bookworm';
const label = 'tollgate.inputs';
const log = (m) => process.stderr.write(`images: ${m}\n`);

function run(cmd, args, { input, quiet = false, env } = {}) {
  const r = spawnSync(cmd, args, {
    cwd: root,
    input,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, DOCKER_BUILDKIT: '0', ...env },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (r.error) throw new Error(`could not run ${cmd} (${r.error.message})`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 3).join(' ')} failed (exit ${r.status}):\n${((r.stdout || '') + (r.stderr || '')).slice(-6000)}`);
  if (!quiet && r.stdout.trim()) process.stderr.write(r.stdout.replace(/^/gm, '  '));
  return r.stdout;
}

const sha = () => crypto.createHash('sha256');

/** Hash of files and directories (paths relative to `base`, contents, executable bits), in a stable order. */
function hashTree(h, base, rel) {
  const abs = path.join(base, rel);
  const st = fs.statSync(abs);
  if (st.isDirectory()) {
    for (const name of fs.readdirSync(abs).sort()) hashTree(h, base, path.join(rel, name));
    return h;
  }
  h.update(`${rel}\0${st.mode & 0o111 ? 'x' : '-'}\0${st.size}\0`);
  h.update(fs.readFileSync(abs));
  return h;
}

function imageLabel(tag) {
  const r = spawnSync('docker', ['image', 'inspect', '--format', `{{index .Config.Labels "${label}"}}`, tag], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function imageId(tag) {
  return run('docker', ['image', 'inspect', '--format', '{{.Id}}', tag], { quiet: true }).trim();
}

/** The apt sources of this machine (so the images install from the mirror the machine reaches). */
function aptSources() {
  const files = [];
  if (fs.existsSync('/etc/apt/sources.list')) files.push(['etc/apt/sources.list', fs.readFileSync('/etc/apt/sources.list', 'utf8')]);
  const dir = '/etc/apt/sources.list.d';
  if (fs.existsSync(dir)) {
    for (const f of fs.readdirSync(dir).sort()) {
      if (/\.(list|sources)$/.test(f)) files.push([`etc/apt/sources.list.d/${f}`, fs.readFileSync(path.join(dir, f), 'utf8')]);
    }
  }
  // A dated snapshot mirror needs its Valid-Until check off, as on this machine.
  const validUntil = spawnSync('apt-config', ['shell', 'V', 'Acquire::Check-Valid-Until'], { encoding: 'utf8' }).stdout || '';
  if (/V='false'/.test(validUntil)) files.push(['etc/apt/apt.conf.d/99tollgate-mirror', 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n']);
  return files;
}

function debianMirror(sources) {
  for (const [, text] of sources) {
    const m = text.match(/^URIs:\s*(\S+\/debian)\s*$/m) || text.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\s+\S+/m);
    if (m) return m[1];
  }
  return 'http://deb.debian.org/debian';
}

/** The base image: debootstrap once into a cached tarball, `docker import` when the tarball or sources changed. */
function buildBase(force) {
  const sources = aptSources();
  const mirror = process.env.TOLLGATE_DEBIAN_MIRROR || debianMirror(sources);
  const recipe = `debootstrap --variant=minbase ${suite} ${mirror}\n`;
  const tarball = path.join(cache, `rootfs-${suite}-minbase.tar`);
  const stamp = `${tarball}.recipe`;
  fs.mkdirSync(cache, { recursive: true });
  if (force || !fs.existsSync(tarball) || !fs.existsSync(stamp) || fs.readFileSync(stamp, 'utf8') !== recipe) {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new Error('debootstrap needs root (the rootfs tarball is not cached yet)');
    const which = spawnSync('sh', ['-c', 'command -v debootstrap'], { encoding: 'utf8' });
    if (which.status !== 0) throw new Error('debootstrap is missing: apt-get install debootstrap');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-rootfs-'));
    try {
      const t = Date.now();
      log(`debootstrap --variant=minbase ${suite} from ${mirror} (first run only) ...`);
      run('debootstrap', ['--variant=minbase', suite, dir, mirror], { quiet: true });
      for (const p of ['var/lib/apt/lists', 'var/cache/apt', 'usr/share/doc', 'usr/share/man', 'usr/share/info']) {
        fs.rmSync(path.join(dir, p), { recursive: true, force: true });
      }
      fs.mkdirSync(path.join(dir, 'var/lib/apt/lists/partial'), { recursive: true });
      fs.mkdirSync(path.join(dir, 'var/cache/apt/archives/partial'), { recursive: true });
      // No daemons start during package installs in an image; no recommends; apt cleans up after itself.
      fs.writeFileSync(path.join(dir, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
      fs.writeFileSync(path.join(dir, 'etc/apt/apt.conf.d/90tollgate'), 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n');
      run('tar', ['-C', dir, '--numeric-owner', '-cf', `${tarball}.tmp`, '.'], { quiet: true });
      fs.renameSync(`${tarball}.tmp`, tarball);
      fs.writeFileSync(stamp, recipe);
      log(`rootfs cached in ${tarball} (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  // The machine's apt sources go in as a layer of their own, so a change of mirror does not need a new rootfs.
  const st = fs.statSync(tarball);
  const hash = sha().update(recipe).update(`${st.size}:${st.mtimeMs}`).update(JSON.stringify(sources)).digest('hex').slice(0, 32);
  const tag = 'tollgate/base:local';
  if (!force && imageLabel(tag) === hash) return log(`${tag} is up to date`);
  const t = Date.now();
  run('docker', ['import', '--change', 'CMD ["bash"]', '--change', 'ENV LANG=C.UTF-8', tarball, 'tollgate/rootfs:local'], { quiet: true });
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-base-'));
  try {
    for (const [rel, text] of sources) {
      fs.mkdirSync(path.join(ctx, 'root', path.dirname(rel)), { recursive: true });
      fs.writeFileSync(path.join(ctx, 'root', rel), text);
    }
    fs.mkdirSync(path.join(ctx, 'root', 'etc/apt'), { recursive: true });
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM tollgate/rootfs:local\nRUN rm -f /etc/apt/sources.list && rm -rf /etc/apt/sources.list.d/*\nCOPY root/ /\n');
    run('docker', ['build', '-q', '--network', 'host', '--label', `${label}=${hash}`, '-t', tag, ctx], { quiet: true });
  } finally {
    fs.rmSync(ctx, { recursive: true, force: true });
  }
  log(`${tag} imported (${((Date.now() - t) / 1000).toFixed(0)} s)`);
}

/** `docker build` of docker/<name> with extra files put in the context; skipped when the inputs' hash matches. */
function buildImage(name, { force, extra = [] }) {
  const tag = `tollgate/${name}:local`;
  const dir = path.join(root, 'docker', name);
  const h = hashTree(sha(), dir, '.').update(imageId('tollgate/base:local'));
  // An entry's third field, when given, stands for its contents (the production node_modules: the lock file's hash).
  for (const [rel, src, key] of extra) {
    if (key) h.update(`extra:${rel}\0${key}\0`);
    else hashTree(h.update(`extra:${rel}\0`), src, '.');
  }
  const hash = h.digest('hex').slice(0, 32);
  if (!force && imageLabel(tag) === hash) return log(`${tag} is up to date`);
  const t = Date.now();
  log(`building ${tag} ...`);
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), `tollgate-${name}-`));
  try {
    fs.cpSync(dir, ctx, { recursive: true });
    for (const [rel, src] of extra) link(src, path.join(ctx, rel));
    run('docker', ['build', '-q', '--network', 'host', '--label', `${label}=${hash}`, '-t', tag, ctx], { quiet: true });
  } finally {
    fs.rmSync(ctx, { recursive: true, force: true });
  }
  log(`${tag} built (${((Date.now() - t) / 1000).toFixed(0)} s)`);
}

/** Hard links (no copy of node_modules) where the file system allows, a copy otherwise. */
function link(src, dest) {
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const r = spawnSync('cp', ['-al', src, dest]);
  if (r.status !== 0) fs.cpSync(src, dest, { recursive: true });
}

function appFiles() {
  if (!fs.existsSync(path.join(root, 'dist', 'apps', 'gateway', 'src', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  const modules = productionModules();
  return [
    ['node', process.execPath],
    ['app/dist', path.join(root, 'dist')],
    ['app/config', path.join(root, 'config')],
    ['app/bin', path.join(root, 'bin')],
    ['app/scripts/demo.js', path.join(root, 'scripts', 'demo.js')],
    ['app/package.json', path.join(root, 'package.json')],
    ['app/node_modules', modules.dir, modules.key],
  ];
}

/** node_modules without dev dependencies, installed from the npm cache once per package-lock.json. */
function productionModules() {
  // The lock file alone decides what `npm ci` installs (a change of scripts in package.json does not).
  const lock = fs.readFileSync(path.join(root, 'package-lock.json'));
  const key = sha().update(lock).digest('hex').slice(0, 16);
  const dir = path.join(cache, 'app-modules', key);
  const result = { dir: path.join(dir, 'node_modules'), key };
  if (fs.existsSync(path.join(dir, '.done'))) return result;
  log('installing the production node_modules (once per package-lock.json) ...');
  fs.rmSync(path.join(cache, 'app-modules'), { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  fs.writeFileSync(path.join(dir, 'package-lock.json'), lock);
  const r = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm ci --omit=dev failed:\n${(r.stdout || '') + (r.stderr || '')}`);
  fs.writeFileSync(path.join(dir, '.done'), '');
  return result;
}

function engineAnswers() {
  return spawnSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8' }).status === 0;
}

function main() {
  const args = process.argv.slice(2);
  const force = args.includes('--force');
  const all = ['postgres', 'kafka', 'redis', 'app'];
  const wanted = args.filter((a) => !a.startsWith('--'));
  for (const w of wanted) if (!all.includes(w)) throw new Error(`unknown image "${w}"; one of ${all.join(', ')}`);
  const names = wanted.length ? wanted : all;
  if (!engineAnswers()) throw new Error(`no Docker engine answers${process.env.DOCKER_HOST ? ` at DOCKER_HOST=${process.env.DOCKER_HOST}` : ''} (scripts/ci-docker.sh starts one)`);
  const started = Date.now();
  buildBase(force);
  for (const name of names) {
    if (name === 'kafka') buildImage(name, { force, extra: [['libs', kafkaJars(log)]] });
    else if (name === 'app') buildImage(name, { force, extra: appFiles() });
    else buildImage(name, { force });
  }
  run('docker', ['image', 'prune', '-f', '--filter', 'dangling=true'], { quiet: true });
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${names.map((n) => `tollgate/${n}:local`).join(', ')}`);
}

try {
  main();
} catch (e) {
  log(e.message);
  process.exit(1);
}
