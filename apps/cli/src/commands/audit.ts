import { DataSource } from 'typeorm';
import { createKafkaMessaging, Messaging } from '@tollgate/messaging';
import { connectDatabase, databaseUrl, redactUrl } from '@tollgate/persistence';
import { intFromEnv } from '@tollgate/platform';
import { OffsetsScope } from './audit/offsets';
import { AuditResult, runAudit } from './audit/run-audit';
import { CheckDescriptions, CheckName, CheckNames, isCheckName, Violation } from './audit/violation';
import { progress, Progress, runCommand } from './ops/cli';

/**
 * `npm run audit -- [--org ID ...] [--check NAME ...] [--group ID] [--read-topic] [--hold-grace SECONDS]`
 *
 * Checks the database against the ledger's invariants and prints a report: a header (`#` lines: what was checked
 * and what the schema does not let it check), one tab-separated line per violation (check, org, what, expected,
 * found), and a summary. Exit 0 when clean, 1 on any violation, 2 on bad arguments (or an org no table knows).
 * It only reads, in one snapshot; the append-only probe writes inside a transaction it always rolls back, so
 * Ctrl-C at any point leaves the database as it was.
 */
export interface Options {
  orgs: string[] | 'all';
  checks: Set<CheckName>;
  group: string | null;
  readTopic: boolean;
  holdGraceSeconds: number;
}

export const usage = `usage: npm run audit -- [--org ID ...] [--check NAME ...] [--group ID] [--read-topic] [--hold-grace SECONDS]
  checks: ${CheckNames.join(', ')}`;

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): Options | string {
  const orgs: string[] = [];
  const checks = new Set<CheckName>();
  let group: string | null = null;
  let readTopic = false;
  let holdGraceSeconds: number | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = argv[i + 1];
    if (a === '--org') {
      if (!value || value.startsWith('--')) return '--org needs an org id';
      orgs.push(value);
      i++;
    } else if (a === '--check') {
      if (!value || !isCheckName(value)) return `--check needs one of ${CheckNames.join(', ')}${value ? ` (got "${value}")` : ''}`;
      checks.add(value);
      i++;
    } else if (a === '--group') {
      if (!value || value.startsWith('--')) return '--group needs a consumer group id';
      group = value;
      i++;
    } else if (a === '--read-topic') {
      readTopic = true;
    } else if (a === '--hold-grace') {
      if (!value || !/^\d{1,9}$/.test(value)) return '--hold-grace needs a whole number of seconds';
      holdGraceSeconds = Number(value);
      i++;
    } else return `unknown argument "${a}"`;
  }
  if (readTopic && !env.KAFKA_BROKERS) return '--read-topic reads the consumed topics back from Kafka: set KAFKA_BROKERS';
  let grace = holdGraceSeconds;
  if (grace === null) {
    try {
      // The sweeper's publish window: a hold may legitimately stay held that long past its timeout.
      grace = intFromEnv('RESERVATION_PUBLISH_WINDOW_SECONDS', 120, env);
    } catch (e) {
      return (e as Error).message;
    }
  }
  return { orgs: orgs.length > 0 ? orgs : 'all', checks: checks.size > 0 ? checks : new Set(CheckNames), group, readTopic, holdGraceSeconds: grace };
}

/** Lines printed per check and org before the rest are counted, so a broken org can't drown the report. */
const shownPerCheckAndOrg = 20;

export function report(opts: Options, result: AuditResult, seconds: number, database: string): string {
  const lines: string[] = [];
  lines.push(`# tollgate audit of ${database}, snapshot at ${result.at.toISOString()}`);
  lines.push(`# orgs: ${opts.orgs === 'all' ? `all (${result.orgs})` : opts.orgs.join(', ')}; entries: ${result.entries}`);
  for (const c of CheckNames) lines.push(`# ${opts.checks.has(c) ? 'check' : 'skipped'} ${c}: ${CheckDescriptions[c]}${c === 'stale-holds' ? ` (grace ${opts.holdGraceSeconds}s)` : ''}`);
  if (opts.checks.has('offsets')) for (const l of OffsetsScope) lines.push(`# ${l}`);
  if (opts.checks.has('usage')) lines.push('# usage: calls metered before charged_entities was recorded (NULL) can only explain a window by count: the credits per-entity calls charged at its instant');
  if (opts.checks.has('charges')) lines.push('# charges: a hold settled at exactly its price is paired with its call by the event its row names (closed_by event:<id>); holds settled before that was recorded, by org, route, instant and credits');
  if (opts.orgs !== 'all') lines.push('# offsets and append-only are database-wide: they ran for the whole database');
  if (opts.group !== null) lines.push(`# offsets: consumer group ${opts.group} only`);
  if (opts.readTopic && opts.checks.has('offsets')) lines.push('# offsets: consumed partitions read back from Kafka (--read-topic)');
  for (const n of result.notes) lines.push(`# note: ${n}`);
  lines.push('check\torg\tsubject\texpected\tfound');

  const counts = new Map<CheckName, number>();
  const shown = new Map<string, number>();
  const hidden = new Map<string, { check: CheckName; org: string; n: number }>();
  const order = (v: Violation) => CheckNames.indexOf(v.check);
  const sorted = [...result.violations].sort((x, y) => order(x) - order(y) || (x.org ?? '').localeCompare(y.org ?? ''));
  for (const v of sorted) {
    counts.set(v.check, (counts.get(v.check) ?? 0) + 1);
    const key = `${v.check}\t${v.org ?? '-'}`;
    const n = (shown.get(key) ?? 0) + 1;
    shown.set(key, n);
    if (n <= shownPerCheckAndOrg) lines.push(line(v));
    else hidden.set(key, { check: v.check, org: v.org ?? '-', n: n - shownPerCheckAndOrg });
  }
  for (const h of hidden.values()) lines.push(`${h.check}\t${h.org}\t... and ${h.n} more\t\t`);
  for (const c of CheckNames) if (opts.checks.has(c)) lines.push(`# ${c}: ${counts.get(c) ? `${counts.get(c)} violation(s)` : 'ok'}`);
  const rate = seconds > 0 ? Math.round(result.entries / seconds) : result.entries;
  const figures = `${opts.checks.size} check(s), ${result.orgs} org(s), ${result.entries} entries in ${seconds.toFixed(1)} s (${rate} entries/s)`;
  lines.push(
    result.violations.length === 0
      ? `audit: clean: ${figures}`
      : `audit: ${result.violations.length} violation(s) in ${[...counts.keys()].join(', ')}: ${figures}`,
  );
  return `${lines.join('\n')}\n`;
}

function line(v: Violation): string {
  const clean = (s: string) => s.replace(/[\t\n\r]/g, ' ');
  return [v.check, v.org ?? '-', v.subject, `expected=${v.expected}`, `found=${v.found}`].map(clean).join('\t');
}

/** The whole command, for tests too: arguments and environment in, report out, exit code back. */
export async function audit(argv: string[], env: NodeJS.ProcessEnv, out: (s: string) => void, err: (s: string) => void, stream?: NodeJS.WriteStream): Promise<number> {
  const opts = parseArgs(argv, env);
  if (typeof opts === 'string') {
    err(`audit: ${opts}\n${usage}\n`);
    return 2;
  }
  const url = databaseUrl(env);
  // Two readers sharing one snapshot, then the append-only probe.
  const ds: DataSource = await connectDatabase({ url, migrate: false, poolSize: 3 });
  let messaging: Messaging | null = null;
  try {
    if (env.KAFKA_BROKERS && opts.checks.has('offsets')) {
      messaging = createKafkaMessaging({ clientId: 'tollgate-audit', brokers: env.KAFKA_BROKERS.split(',').map((b) => b.trim()).filter(Boolean) });
    }
    const started = Date.now();
    let bar: Progress | undefined;
    const result = await runAudit(ds, opts, {
      broker: messaging,
      onProgress: (done, total) => (bar ??= progress('audit', 'entries', total, stream)).update(done, total),
    });
    bar?.finish();
    if (result.unknownOrgs.length > 0) {
      err(`audit: unknown org ${result.unknownOrgs.join(', ')} (no orgs row, accounts row or ledger entry); nothing audited\n`);
      return 2;
    }
    out(report(opts, result, (Date.now() - started) / 1000, redactUrl(url)));
    return result.violations.length === 0 ? 0 : 1;
  } finally {
    await messaging?.close();
    await ds.destroy();
  }
}

async function main(): Promise<number> {
  // Nothing to undo on Ctrl-C: the snapshot only reads, and the probe's transaction dies with the connection.
  process.once('SIGINT', () => {
    process.stderr.write('\naudit: interrupted; nothing was changed\n');
    process.exit(130);
  });
  return audit(process.argv.slice(2), process.env, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
}

runCommand('audit', module, main);
