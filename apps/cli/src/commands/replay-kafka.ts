import { Logger } from '@nestjs/common';
import { createKafkaMessaging } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { strFromEnv } from '@tollgate/platform';
import { ProfileError } from '@tollgate/profiles';
import { progress, Progress } from '../ops/cli';
import { ProfileCatalog } from '../profile-catalog';
import { kafkaReplay, KafkaReplayReport } from './kafka-replay';
import { whatIfCatalog } from './what-if-profile';

/**
 * The `--source kafka` branch of `npm run replay`: wires the database, the broker, the progress bar and Ctrl-C
 * to kafkaReplay, prints its report and returns the exit code:
 * 0 no unexplained difference (a what-if run always), 1 an unexplained difference, 2 bad input (a profile file),
 * 130 interrupted (the scratch schema and consumer group dropped, live tables untouched).
 */
export async function kafkaReplayCommand(opts: { orgs: string[] | 'all'; profile: string | null }): Promise<number> {
  const active = strFromEnv('TOLLGATE_PROFILE', 'trackyard');
  let catalog: ProfileCatalog;
  let replaces: string | null = null;
  try {
    if (opts.profile) ({ catalog, replaces } = whatIfCatalog(opts.profile, active));
    else catalog = ProfileCatalog.load(active);
  } catch (e) {
    if (!(e instanceof ProfileError)) throw e;
    process.stderr.write(`replay: invalid profile: ${e.message}\n`);
    return 2;
  }
  const say = (line: string) => process.stderr.write(`replay: ${line}\n`);
  // stdout is the report: the consumer's per-message warnings (events the scratch refused) are differences there.
  Logger.overrideLogger(['error']);
  const live = await connectDatabase({ migrate: false, poolSize: 2 });
  const messaging = createKafkaMessaging({ clientId: 'tollgate-replay', log: (level, message) => level === 'error' && say(message) });
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
        return 2;
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
      return 130;
    }
    for (const n of report.notes) say(n);
    return opts.profile ? printWhatIf(report, opts.profile, replaces ?? active) : printDifferences(report);
  } finally {
    process.removeListener('SIGINT', onSigint);
    await messaging.close();
    await live.destroy();
  }
}

function printDifferences(report: KafkaReplayReport): number {
  const unexplained = report.differences.filter((d) => !d.explained);
  for (const d of report.differences) {
    process.stdout.write(`${d.orgId}\t${d.what}\tlive=${d.live}\treplayed=${d.replayed}\t${d.explained ? 'explained' : 'UNEXPLAINED'}: ${d.reason}\n`);
  }
  const explained = report.differences.length - unexplained.length;
  const summary = `${report.repriced} event(s) of ${report.orgs} org(s) re-priced (${report.events} read from kafka)`;
  if (report.differences.length === 0) process.stdout.write(`replay: ${summary}; no difference\n`);
  else process.stdout.write(`replay: ${summary}; ${unexplained.length} unexplained difference(s), ${explained} explained by timing\n`);
  return unexplained.length === 0 ? 0 : 1;
}

function printWhatIf(report: KafkaReplayReport, file: string, profile: string): number {
  process.stdout.write(`what-if: events of profile "${profile}" priced under ${file} (nothing was changed)\n`);
  process.stdout.write(`org\tevents\tcost\twhat-if\tchange\n`);
  for (const w of report.whatIf) {
    const change = w.replayed - w.live;
    process.stdout.write(`${w.orgId}\t${w.events}\t${w.live}\t${w.replayed}\t${change >= 0 ? '+' : ''}${change}\n`);
  }
  const live = report.whatIf.reduce((s, w) => s + w.live, 0);
  const replayed = report.whatIf.reduce((s, w) => s + w.replayed, 0);
  const events = report.whatIf.reduce((s, w) => s + w.events, 0);
  process.stdout.write(`what-if: ${events} event(s), ${report.whatIf.length} org(s): cost ${live} credits, would have cost ${replayed}\n`);
  return 0;
}
