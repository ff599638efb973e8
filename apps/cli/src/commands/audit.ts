import { DataSource } from 'typeorm';
import { createKafkaMessaging, Messaging } from '@tollgate/messaging';
import { connectDatabase, redactUrl } from '@tollgate/persistence';
import { ConfigError } from '@tollgate/platform';
import { AuditResult, CheckDescriptions, CheckName, CheckNames, isCheckName, OffsetsScope, runAudit, Violation } from '@tollgate/operations';
import { ExitCode, FlagValues } from '../args';
import { CliConfig, cliConfig } from '../config';
import { progress, Progress } from '../progress';
import { operatorCommand, usageError } from './command';

/**
 * `tollgate audit [--org ID ...] [--check NAME ...] [--group ID] [--read-topic] [--hold-grace SECONDS] [--json]`
 * (also `npm run audit -- ...`)
 *
 * Checks the database against the ledger's invariants and prints a report: a header (`#` lines: what was checked
 * and what the schema does not let it check), one tab-separated line per violation (check, org, what, expected,
 * found), and a summary; with --json the same as one JSON object. Exit 0 when clean, 1 on any violation, 2 on bad arguments (or an org no table knows).
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

export const usage = `usage: tollgate audit [--org ID ...] [--check NAME ...] [--group ID] [--read-topic] [--hold-grace SECONDS] [--json]
       (npm run audit -- ... is the same)
  --org ID              audit these orgs (repeats; default all)
  --check NAME          run these checks (repeats; default all): ${CheckNames.join(', ')}
  --group ID            offsets: this consumer group only
  --read-topic          offsets: read the consumed partitions back from Kafka (needs KAFKA_BROKERS)
  --hold-grace SECONDS  stale-holds: how long past its timeout a hold may stay held (default RESERVATION_PUBLISH_WINDOW_SECONDS, 120)
  --json                the report as one JSON object
Exit codes: 0 clean, 1 a violation, 2 bad arguments or an unknown org, 130 interrupted.
`;

export const flags = {
  org: { type: 'string', multiple: true, needs: 'an org id' },
  check: { type: 'string', multiple: true, needs: `one of ${CheckNames.join(', ')}` },
  group: { type: 'string', needs: 'a consumer group id' },
  'read-topic': { type: 'boolean' },
  'hold-grace': { type: 'string', needs: 'a whole number of seconds' },
} as const;

/** The options, or a usage error (CliError) saying what is unclear. */
export function parseAuditArgs(values: FlagValues<typeof flags>, positionals: string[], env: NodeJS.ProcessEnv = process.env): Options {
  if (positionals.length > 0) throw usageError(`unknown argument "${positionals[0]}"`);
  const checks = new Set<CheckName>();
  for (const c of values.check ?? []) {
    if (!isCheckName(c)) throw usageError(`--check needs one of ${CheckNames.join(', ')} (got "${c}")`);
    checks.add(c);
  }
  const holdGrace = values['hold-grace'];
  if (holdGrace !== undefined && !/^\d{1,9}$/.test(holdGrace)) throw usageError('--hold-grace needs a whole number of seconds');
  let config: CliConfig;
  try {
    config = cliConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) throw usageError(e.message);
    throw e;
  }
  const readTopic = values['read-topic'] ?? false;
  if (readTopic && !config.kafkaBrokersSet) throw usageError('--read-topic reads the consumed topics back from Kafka: set KAFKA_BROKERS');
  // Default: the sweeper's publish window (a hold may legitimately stay held that long past its timeout).
  const grace = holdGrace === undefined ? config.publishWindowSeconds : Number(holdGrace);
  const orgs = values.org ?? [];
  return { orgs: orgs.length > 0 ? orgs : 'all', checks: checks.size > 0 ? checks : new Set(CheckNames), group: values.group ?? null, readTopic, holdGraceSeconds: grace };
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

/** The report for machines (--json): what was checked, every violation, the figures. */
export function reportJson(opts: Options, result: AuditResult, seconds: number, database: string): string {
  return `${JSON.stringify(
    {
      database,
      at: result.at.toISOString(),
      orgs: opts.orgs,
      checks: CheckNames.filter((c) => opts.checks.has(c)),
      hold_grace_seconds: opts.holdGraceSeconds,
      group: opts.group,
      read_topic: opts.readTopic,
      notes: result.notes,
      violations: result.violations,
      clean: result.violations.length === 0,
      audited_orgs: result.orgs,
      entries: result.entries,
      seconds,
    },
    null,
    2,
  )}\n`;
}

/** The whole command: arguments and environment in, report out, exit code back. */
export const audit = operatorCommand('audit', usage, flags, async (values, positionals, io) => {
  const opts = parseAuditArgs(values, positionals, io.env);
  // Nothing to undo on Ctrl-C: the snapshot only reads, and the probe's transaction dies with the connection.
  const onSigint = () => {
    io.err('\naudit: interrupted; nothing was changed\n');
    process.exit(ExitCode.interrupted);
  };
  process.once('SIGINT', onSigint);
  try {
    return await runAuditCommand(opts, io.env, io.out, io.err, values.json ?? false, io.progress);
  } finally {
    process.off('SIGINT', onSigint);
  }
});

/** Runs the audit `opts` describe; for tests too. */
export async function runAuditCommand(
  opts: Options,
  env: NodeJS.ProcessEnv,
  out: (s: string) => void,
  err: (s: string) => void,
  json = false,
  stream?: NodeJS.WriteStream,
): Promise<number> {
  const config = cliConfig(env);
  const url = config.databaseUrl;
  // Two readers sharing one snapshot, then the append-only probe.
  const ds: DataSource = await connectDatabase({ url, migrate: false, poolSize: 3 });
  let messaging: Messaging | null = null;
  try {
    if (config.kafkaBrokersSet && opts.checks.has('offsets')) {
      messaging = createKafkaMessaging({ clientId: 'tollgate-audit', ...config.kafka });
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
      return ExitCode.usage;
    }
    out((json ? reportJson : report)(opts, result, (Date.now() - started) / 1000, redactUrl(url)));
    return result.violations.length === 0 ? ExitCode.ok : ExitCode.found;
  } finally {
    await messaging?.close();
    await ds.destroy();
  }
}
