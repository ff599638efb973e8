import { ProfileError } from '@tollgate/profiles';
import { connectDatabase } from '@tollgate/persistence';
import { progress, Progress, runCommand } from './ops/cli';
import { ProfileCatalog } from './profile-catalog';
import { formatDifference } from './replay/diff';
import { kafkaReplayCommand } from './replay/kafka-replay-command';
import { ReplayArgumentError, replayLedger } from './replay/ledger-replay';
import { loadProfileFile, whatIf } from './replay/what-if';

/**
 * `npm run replay -- (--all | --org ID) [--source ledger|kafka] [--apply] [--profile FILE]`
 *
 * The CLI only: arguments, output, exit codes (0 nothing differs, 1 a difference, 2 bad arguments). What a ledger
 * replay rebuilds, diffs and applies is in replay/ledger-replay.ts; the what-if pricing in replay/what-if.ts.
 *
 * `--source kafka [--profile FILE]` re-prices the event topic into a scratch schema: replay/kafka-replay.ts.
 */
interface Options {
  orgs: string[] | 'all';
  source: 'ledger' | 'kafka';
  apply: boolean;
  profile: string | null;
}

const usage = 'usage: npm run replay -- (--all | --org ID) [--source ledger|kafka] [--apply] [--profile FILE]';

export function parseArgs(argv: string[]): Options | string {
  let orgs: string[] | 'all' | null = null;
  let source: Options['source'] = 'ledger';
  let apply = false;
  let profile: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--all') orgs = 'all';
    else if (a === '--org') {
      const id = argv[++i];
      if (!id) return '--org needs an org id';
      orgs = orgs === 'all' ? 'all' : [...(orgs ?? []), id];
    } else if (a === '--source') {
      const s = argv[++i];
      if (s !== 'ledger' && s !== 'kafka') return '--source must be ledger or kafka';
      source = s;
    } else if (a === '--apply') apply = true;
    else if (a === '--profile') {
      const file = argv[++i];
      if (!file) return '--profile needs a profile file';
      profile = file;
    } else return `unknown argument "${a}"`;
  }
  if (!orgs) return 'say which ledgers: --all or --org ID';
  if (apply && profile !== null) return '--profile prices history under another profile and changes nothing: it does not go with --apply';
  if (apply && source === 'kafka') return '--apply swaps in projections rebuilt from the ledger: use it with --source ledger';
  return { orgs, source, apply, profile };
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (typeof opts === 'string') {
    process.stderr.write(`replay: ${opts}\n${usage}\n`);
    return 2;
  }
  if (opts.source === 'kafka') return kafkaReplayCommand(opts);
  try {
    return opts.profile !== null ? await runWhatIf(opts, opts.profile) : await runLedger(opts);
  } catch (e) {
    if (e instanceof ReplayArgumentError || e instanceof ProfileError) {
      process.stderr.write(`replay: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

async function runLedger(opts: Options): Promise<number> {
  const ds = await connectDatabase({ migrate: false, poolSize: 2 });
  // Ctrl-C stops between batches (the diff) or between orgs (--apply): each org's live rows are untouched or
  // repaired, never half-written. A second Ctrl-C exits at once (an open transaction rolls back).
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('\nreplay: stopping after the current org (Ctrl-C again to exit at once)\n');
  };
  process.on('SIGINT', onSigint);
  let catalog: ProfileCatalog | undefined;
  try {
    let bar: Progress | undefined;
    let repairBar: Progress | undefined;
    const report = await replayLedger(
      ds,
      { orgs: opts.orgs, apply: opts.apply },
      {
        progress: (done, total) => (bar ??= progress('replay', 'entries', total)).update(done, total),
        repairProgress: (done, total) => {
          bar?.finish();
          bar = undefined;
          (repairBar ??= progress('replay --apply', 'orgs', total)).update(done, total);
        },
        stopRequested: () => stop,
        planTerms: (profile, plan) => (catalog ??= ProfileCatalog.load(process.env.TOLLGATE_PROFILE ?? 'trackyard')).plan(profile, plan),
      },
    );
    bar?.finish();
    repairBar?.finish();
    for (const d of report.differences) process.stdout.write(`${formatDifference(d)}\n`);
    if (report.unverifiedRows > 0) {
      process.stdout.write(
        `replay: ${report.unverifiedRows} usage row(s) of ${report.unverifiedOrgs} org(s) were metered before usage_records.charged_entities ` +
          `existed: re-access windows up to the last of them are not verified\n`,
      );
    }
    if (report.unfoldable.length > 0) {
      process.stdout.write(
        `replay: ${report.unfoldable.length} org(s) can't be replayed (their "ledger" or "account" line says why); ` +
          `${opts.apply ? '--apply left them as they are' : '--apply would leave them as they are'}\n`,
      );
    }
    const rate = report.seconds > 0 ? Math.round(report.entries / report.seconds) : report.entries;
    process.stdout.write(`replay: ${report.entries} ledger entries of ${report.orgs} org(s) in ${report.seconds.toFixed(1)} s (${rate} entries/s)\n`);
    const orgsDiffering = new Set(report.differences.map((d) => d.orgId)).size;
    if (report.differences.length === 0) process.stdout.write('replay: projections match the ledger\n');
    else {
      const repairable = orgsDiffering - new Set(report.unfoldable).size;
      const applied = opts.apply ? `; repaired ${report.repaired.length} of ${repairable} org(s) under their account lock` : '';
      process.stdout.write(`replay: ${report.differences.length} difference(s) in ${orgsDiffering} org(s)${applied}\n`);
    }
    if (report.interrupted) {
      process.stderr.write(`replay: interrupted${opts.apply ? ` after repairing ${report.repaired.length} org(s); every other org is untouched` : ''}\n`);
      return 130;
    }
    return report.differences.length === 0 ? 0 : 1;
  } finally {
    process.off('SIGINT', onSigint);
    await ds.destroy();
  }
}

async function runWhatIf(opts: Options, file: string): Promise<number> {
  const profile = loadProfileFile(file);
  const ds = await connectDatabase({ migrate: false, poolSize: 2 });
  try {
    let bar: Progress | undefined;
    const report = await whatIf(ds, profile, opts.orgs, (done, total) => (bar ??= progress('what-if', 'calls', total)).update(done, total));
    bar?.finish();
    let actual = 0;
    let priced = 0;
    for (const l of report.lines) {
      actual += l.actual;
      priced += l.whatIf;
      const notes = [l.approximate > 0 ? `approximate=${l.approximate}` : '', l.unknownRoute > 0 ? `not-in-profile=${l.unknownRoute}` : ''].filter(Boolean);
      process.stdout.write(`${l.orgId}\tcredits\tcost=${l.actual}\twhat-if=${l.whatIf}\tdelta=${l.whatIf - l.actual}\tcalls=${l.calls}${notes.map((n) => `\t${n}`).join('')}\n`);
    }
    process.stdout.write(
      `what-if: profile "${report.profile}" from ${file}: ${report.lines.length} org(s), history cost ${actual}, would have cost ${priced}` +
        `${report.otherProfiles > 0 ? `; ${report.otherProfiles} org(s) of other profiles left out` : ''}; nothing was changed\n`,
    );
    return 0;
  } finally {
    await ds.destroy();
  }
}

runCommand('replay', module, main);
