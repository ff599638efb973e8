import { Logger } from '@nestjs/common';
import { createKafkaMessaging } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { ProfileError } from '@tollgate/profiles';
import { ProfileCatalog } from '@tollgate/ledger';
import { kafkaReplay, KafkaReplayReport, whatIfCatalog } from '@tollgate/operations';
import { ExitCode } from '../args';
import { progress, Progress } from '../progress';
import { CliConfig } from '../config';
import { asJson, CommandIo } from './command';

/**
 * The `--source kafka` branch of `tollgate replay`: wires the database, the broker, the progress bar and Ctrl-C
 * to kafkaReplay, prints its report and returns the exit code:
 * 0 no unexplained difference (a what-if run always), 1 an unexplained difference, 2 bad input (a profile file),
 * 130 interrupted (the scratch schema and consumer group dropped, live tables untouched).
 */
export async function kafkaReplayCommand(
  opts: { orgs: string[] | 'all'; profile: string | null; json?: boolean },
  io: CommandIo,
  config: CliConfig,
): Promise<number> {
  const active = config.profile.name;
  let catalog: ProfileCatalog;
  let replaces: string | null = null;
  try {
    if (opts.profile) ({ catalog, replaces } = whatIfCatalog(opts.profile, active));
    else catalog = ProfileCatalog.load(active, config.profile.dir);
  } catch (e) {
    if (!(e instanceof ProfileError)) throw e;
    io.err(`replay: invalid profile: ${e.message}\n`);
    return ExitCode.usage;
  }
  const say = (line: string) => io.err(`replay: ${line}\n`);
  // stdout is the report: the consumer's per-message warnings (events the scratch refused) are differences there.
  Logger.overrideLogger(['error']);
  const live = await connectDatabase({ url: config.databaseUrl, migrate: false, poolSize: 2 });
  const messaging = createKafkaMessaging({ clientId: 'tollgate-replay', ...config.kafka, log: (level, message) => level === 'error' && say(message) });
  const stop = new AbortController();
  const onSigint = () => {
    say('interrupted: stopping, dropping the scratch schema and consumer group');
    stop.abort();
  };
  process.once('SIGINT', onSigint);
  let bar: Progress | undefined;
  try {
    if (opts.orgs !== 'all') {
      const known: Array<{ id: string }> = await live.query(`SELECT id FROM orgs WHERE id = ANY($1::text[])`, [opts.orgs]);
      const missing = opts.orgs.filter((id) => !known.some((k) => k.id === id));
      if (missing.length > 0) {
        say(`unknown org(s): ${missing.join(', ')}`);
        return ExitCode.usage;
      }
    }
    const report = await kafkaReplay(
      {
        live,
        messaging,
        note: say,
        signal: stop.signal,
        progress: (done, total) => (bar ??= progress('replay', 'events', total)).update(done, total),
      },
      { orgs: opts.orgs, catalog, whatIf: opts.profile !== null },
    );
    bar?.finish();
    if (report.interrupted) {
      say('interrupted: nothing was changed');
      return ExitCode.interrupted;
    }
    for (const n of report.notes) say(n);
    const text = opts.json ? { ...io, out: () => undefined } : io;
    const code = opts.profile ? printWhatIf(report, opts.profile, replaces ?? active, text) : printDifferences(report, text);
    if (opts.json) io.out(asJson({ source: 'kafka', what_if: opts.profile, ...report }));
    return code;
  } finally {
    process.removeListener('SIGINT', onSigint);
    await messaging.close();
    await live.destroy();
  }
}

function printDifferences(report: KafkaReplayReport, io: CommandIo): number {
  const unexplained = report.differences.filter((d) => !d.explained);
  for (const d of report.differences) {
    io.out(`${d.orgId}\t${d.what}\tlive=${d.live}\treplayed=${d.replayed}\t${d.explained ? 'explained' : 'UNEXPLAINED'}: ${d.reason}\n`);
  }
  const explained = report.differences.length - unexplained.length;
  const summary = `${report.repriced} event(s) of ${report.orgs} org(s) re-priced (${report.events} read from kafka)`;
  if (report.differences.length === 0) io.out(`replay: ${summary}; no difference\n`);
  else io.out(`replay: ${summary}; ${unexplained.length} unexplained difference(s), ${explained} explained by timing\n`);
  return unexplained.length === 0 ? ExitCode.ok : ExitCode.found;
}

function printWhatIf(report: KafkaReplayReport, file: string, profile: string, io: CommandIo): number {
  io.out(`what-if: events of profile "${profile}" priced under ${file} (nothing was changed)\n`);
  io.out(`org\tevents\tcost\twhat-if\tchange\n`);
  for (const w of report.whatIf) {
    const change = w.replayed - w.live;
    io.out(`${w.orgId}\t${w.events}\t${w.live}\t${w.replayed}\t${change >= 0 ? '+' : ''}${change}\n`);
  }
  const live = report.whatIf.reduce((s, w) => s + w.live, 0);
  const replayed = report.whatIf.reduce((s, w) => s + w.replayed, 0);
  const events = report.whatIf.reduce((s, w) => s + w.events, 0);
  io.out(`what-if: ${events} event(s), ${report.whatIf.length} org(s): cost ${live} credits, would have cost ${replayed}\n`);
  return 0;
}
