import { ProfileError } from '@tollgate/profiles';
import { connectDatabase } from '@tollgate/persistence';
import { ProfileCatalog } from '@tollgate/ledger';
import { CliConfig } from '../config';
import { formatDifference, loadProfileFile, ReplayArgumentError, replayLedger, whatIf } from '@tollgate/operations';
import { ExitCode, FlagValues } from '../args';
import { progress, Progress } from '../progress';
import { asJson, CommandIo, operatorCommand, usageError } from './command';
import { kafkaReplayCommand } from './replay-kafka';

/**
 * `tollgate replay (--all | --org ID) [--source ledger|kafka] [--apply] [--profile FILE]` (also `npm run replay -- ...`)
 *
 * The command only: arguments, output, exit codes (0 nothing differs, 1 a difference, 2 bad arguments, 130
 * interrupted). What a ledger replay rebuilds, diffs and applies is in libs/operations replay/ledger-replay.ts;
 * the what-if pricing in replay/what-if.ts.
 *
 * `--source kafka [--profile FILE]` re-prices the event topic into a scratch schema: replay/kafka-replay.ts.
 */
export interface Options {
  orgs: string[] | 'all';
  source: 'ledger' | 'kafka';
  apply: boolean;
  profile: string | null;
  /** The report as one JSON object on stdout instead of lines. */
  json: boolean;
}

export const usage = `usage: tollgate replay (--all | --org ID [--org ID ...]) [--source ledger|kafka] [--apply] [--profile FILE]
       (npm run replay -- ... is the same)
  --all / --org ID   which orgs' ledgers (--org repeats)
  --source ledger    rebuild balances, buckets and holds from the ledger and diff them with the live rows (default)
  --source kafka     re-price the event topic into a scratch schema and diff it with the live ledger
  --apply            swap in the projections rebuilt from the ledger (with --source ledger), under each account lock
  --profile FILE     price history under another profile (a what-if: nothing is changed)
  --json             the report as one JSON object (differences, figures) instead of lines
Exit codes: 0 nothing differs, 1 a difference, 2 bad arguments, 130 interrupted.
`;

export const flags = {
  all: { type: 'boolean' },
  org: { type: 'string', multiple: true, needs: 'an org id' },
  source: { type: 'string', needs: 'ledger or kafka' },
  apply: { type: 'boolean' },
  profile: { type: 'string', needs: 'a profile file' },
} as const;

/** The options, or a usage error (CliError) saying what is unclear. */
export function parseReplayArgs(values: FlagValues<typeof flags> & { json?: boolean }, positionals: string[] = []): Options {
  if (positionals.length > 0) throw usageError(`unknown argument "${positionals[0]}"`);
  const source = values.source ?? 'ledger';
  if (source !== 'ledger' && source !== 'kafka') throw usageError('--source must be ledger or kafka');
  const orgs = values.all ? 'all' : values.org;
  if (!orgs) throw usageError('say which ledgers: --all or --org ID');
  const apply = values.apply ?? false;
  const profile = values.profile ?? null;
  if (apply && profile !== null) throw usageError('--profile prices history under another profile and changes nothing: it does not go with --apply');
  if (apply && source === 'kafka') throw usageError('--apply swaps in projections rebuilt from the ledger: use it with --source ledger');
  return { orgs, source, apply, profile, json: values.json ?? false };
}

export const replay = operatorCommand('replay', usage, flags, async (values, positionals, io, config) => {
  const opts = parseReplayArgs(values, positionals);
  if (opts.source === 'kafka') return kafkaReplayCommand(opts, io, config);
  try {
    return opts.profile !== null ? await runWhatIf(opts, opts.profile, io, config) : await runLedger(opts, io, config);
  } catch (e) {
    if (e instanceof ReplayArgumentError || e instanceof ProfileError) {
      io.err(`replay: ${e.message}\n`);
      return ExitCode.usage;
    }
    throw e;
  }
});

async function runLedger(opts: Options, io: CommandIo, config: CliConfig): Promise<number> {
  const out = opts.json ? () => undefined : io.out;
  const ds = await connectDatabase({ url: config.databaseUrl, migrate: false, poolSize: 2 });
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
        planTerms: (profile, plan) => (catalog ??= ProfileCatalog.load(config.profile.name, config.profile.dir)).plan(profile, plan),
      },
    );
    bar?.finish();
    repairBar?.finish();
    for (const d of report.differences) out(`${formatDifference(d)}\n`);
    if (report.unverifiedRows > 0) {
      out(
        `replay: ${report.unverifiedRows} usage row(s) of ${report.unverifiedOrgs} org(s) were metered before usage_records.charged_entities ` +
          `existed: re-access windows up to the last of them are not verified\n`,
      );
    }
    if (report.unfoldable.length > 0) {
      out(
        `replay: ${report.unfoldable.length} org(s) can't be replayed (their "ledger" or "account" line says why); ` +
          `${opts.apply ? '--apply left them as they are' : '--apply would leave them as they are'}\n`,
      );
    }
    const rate = report.seconds > 0 ? Math.round(report.entries / report.seconds) : report.entries;
    out(`replay: ${report.entries} ledger entries of ${report.orgs} org(s) in ${report.seconds.toFixed(1)} s (${rate} entries/s)\n`);
    const orgsDiffering = new Set(report.differences.map((d) => d.orgId)).size;
    if (report.differences.length === 0) out('replay: projections match the ledger\n');
    else {
      const repairable = orgsDiffering - new Set(report.unfoldable).size;
      const applied = opts.apply ? `; repaired ${report.repaired.length} of ${repairable} org(s) under their account lock` : '';
      out(`replay: ${report.differences.length} difference(s) in ${orgsDiffering} org(s)${applied}\n`);
    }
    if (opts.json) io.out(asJson({ source: 'ledger', apply: opts.apply, ...report }));
    if (report.interrupted) {
      io.err(`replay: interrupted${opts.apply ? ` after repairing ${report.repaired.length} org(s); every other org is untouched` : ''}\n`);
      return ExitCode.interrupted;
    }
    return report.differences.length === 0 ? ExitCode.ok : ExitCode.found;
  } finally {
    process.off('SIGINT', onSigint);
    await ds.destroy();
  }
}

async function runWhatIf(opts: Options, file: string, io: CommandIo, config: CliConfig): Promise<number> {
  const out = opts.json ? () => undefined : io.out;
  const profile = loadProfileFile(file);
  const ds = await connectDatabase({ url: config.databaseUrl, migrate: false, poolSize: 2 });
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
      out(`${l.orgId}\tcredits\tcost=${l.actual}\twhat-if=${l.whatIf}\tdelta=${l.whatIf - l.actual}\tcalls=${l.calls}${notes.map((n) => `\t${n}`).join('')}\n`);
    }
    out(
      `what-if: profile "${report.profile}" from ${file}: ${report.lines.length} org(s), history cost ${actual}, would have cost ${priced}` +
        `${report.otherProfiles > 0 ? `; ${report.otherProfiles} org(s) of other profiles left out` : ''}; nothing was changed\n`,
    );
    if (opts.json) io.out(asJson({ source: 'ledger', what_if: file, ...report, cost: actual, would_have_cost: priced, changed: false }));
    return 0;
  } finally {
    await ds.destroy();
  }
}
