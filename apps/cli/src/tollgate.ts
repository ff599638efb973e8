/**
 * `tollgate`: the operator's one CLI (SPEC §8, §9). The admin commands are a client only: each is one or a few
 * HTTP calls to metering's admin API, so they work against any metering the operator can reach.
 *
 * The admin commands are commands/admin.ts (their HTTP client admin-client.ts, their tables output.ts); replay, audit
 * and dlq (commands/) work on the database and broker directly, like the `npm run` scripts they were. Settings come
 * from the environment through config.ts, checked before any command runs.
 *
 * Exit codes (args.ts, also in `tollgate help`): 0 done; 1 the server failed (5xx) or answered something unexpected,
 * or an operator program found something wrong; 2 usage (bad arguments, or input the API refused with 400);
 * 3 auth (401/403: TOLLGATE_ADMIN_TOKEN missing or wrong); 4 not found (404); 5 metering unreachable; 6 conflict (409, e.g. a duplicate org id).
 */
import { ConfigError } from '@tollgate/platform';
import { CliError, ExitCode, parseFlags } from './args';
import { operatorCommands, operatorUsage } from './commands';
import { AdminIo, Flags, options, runAdmin } from './commands/admin';
import { cliConfig } from './config';

export { CliError, ExitCode };
export { actorOf, describeCommand } from './commands/admin';
export { table } from './output';

const usage = `tollgate: the operator's CLI: metering's admin API, and replay, audit and dlq on the database and broker

Usage: tollgate <command> [arguments] [--json]

  orgs create <id> --plan PLAN [--name NAME]   create an org (its plan's credits are granted)
  orgs list [--search TEXT] [--sort FIELD] [--order asc|desc] [--limit N] [--offset N]
                                               FIELD: id, name, plan, balance, used_this_month, calls_today, last_call_at, created_at
  orgs show <org>                              plan, balance, limits and keys
  keys create <org> [--name NAME] [--kind key|user]   a new API key, shown once
  keys revoke <key-id>
  credits grant <org> <amount> [--reason TEXT] [--expires-at TIME] [--idempotency-key KEY]
                                               granted once per invocation (retries reuse its idempotency key)
  plan set <org> <plan>
  limits set <org> NAME=N [NAME=N ...]         per-org limit overrides (requests per window)
  limits show <org>
  ledger <org> [--after SEQ] [--limit N] [--follow] [--interval SECONDS]
  history <org> [--after SEQ] [--limit N]      the org's operator commands, oldest first: who did what, when
  usage <org> [--limit N] [--offset N]
  system                                       events/s, consumer lag, dead letters, holds, decisions
  alerts set (<org> | --plan PLAN) [--credits-below N,N...] [--allowance-used-percent P,P...]
                                               credits.low thresholds (the lists given replace the org's or the
                                               plan's); a plan's apply to its orgs that set none of their own
  alerts show (<org> | --plan PLAN)
  alerts clear <org>                           removes the org's own thresholds: its plan's apply again
  webhooks list [--org ORG]                    endpoints (the org's and the global ones with --org)
  webhooks create <url> --events TYPE,TYPE... [--org ORG]
                                               an endpoint (without --org: every org's); its secret is shown once
                                               TYPE: credits.low, credits.exhausted, credits.granted, credits.expired, allowance.reset,
                                               endpoint.disabled
  webhooks rotate-secret <id> [--overlap SECONDS]
                                               a new secret, shown once; the old one also signs for SECONDS (default 86400)
  webhooks delete <id>
  webhooks deliveries <id> [--limit N]         delivery attempts, newest first
  webhooks resend <id> (--msg MSG_ID | --since TIME)
                                               queue one message, or all since TIME, again (re-enables a disabled endpoint)
${operatorUsage}

Environment: TOLLGATE_ADMIN_URL (default http://127.0.0.1:8081), TOLLGATE_ADMIN_TOKEN.
--json prints the API's JSON (one object per line with ledger --follow) instead of tables.
--actor NAME records who issued a command (default: $USER; without either, metering records "admin-token").

Every command takes --help.
Exit codes: 0 ok, 1 a difference or violation found (replay, audit, dlq) or a server error, 2 usage or invalid
input, 3 auth, 4 not found, 5 unreachable, 6 conflict, 130 interrupted (Ctrl-C).
`;

interface Io extends AdminIo {
  env: NodeJS.ProcessEnv;
}

export async function run(argv: string[], io: Io): Promise<number> {
  // The operator programs (replay, audit, dlq) read their own flags with the same parser (and check the
  // configuration the same way): commands/.
  const operator = operatorCommands[argv[0] ?? ''];
  if (operator) return operator(argv.slice(1), io);
  let parsed: { values: Flags; positionals: string[] };
  try {
    parsed = parseFlags(argv, options) as { values: Flags; positionals: string[] };
  } catch (e) {
    io.err(`tollgate: ${(e as Error).message}; see tollgate help\n`);
    return ExitCode.usage;
  }
  const { values: flags, positionals: args } = parsed;
  if (flags.help || args.length === 0 || args[0] === 'help') {
    (args.length === 0 && !flags.help ? io.err : io.out)(usage);
    return args.length === 0 && !flags.help ? ExitCode.usage : ExitCode.ok;
  }
  let config;
  try {
    config = cliConfig(io.env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    io.err(`tollgate: ${e.message}\n`);
    return ExitCode.usage;
  }
  return runAdmin(flags, args, io, config);
}

/** The process entry (`npm run tollgate`, the `tollgate` bin): real stdout, environment and Ctrl-C. */
export function main(): void {
  // Only `--follow` turns Ctrl-C into a clean stop (exit 0); any other command keeps the default (interrupted).
  const following = process.argv.includes('--follow') || process.argv.includes('-f');
  const stopped = new Promise<void>((resolve) => {
    if (!following) return;
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  run(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    env: process.env,
    // Not unref'd: `ledger --follow` sleeping between polls is all the process has to do (an unref'd timer let it
    // exit there, silently, as soon as its HTTP connection closed).
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    stopped,
  }).then(
    (code) => {
      // exitCode, not exit(): a piped stdout is flushed before the process ends. The operator programs end at once
      // when done (after stdout is flushed), as their scripts did: a broker client may linger otherwise.
      process.exitCode = code;
      if (operatorCommands[process.argv[2] ?? '']) process.stdout.write('', () => process.exit(code));
    },
    (e: Error) => {
      process.stderr.write(`tollgate: ${e.message}\n`);
      process.exitCode = ExitCode.failed;
    },
  );
}

if (require.main === module) main();
