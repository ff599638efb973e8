import { ConfigError } from '@tollgate/platform';
import { CliError, ExitCode, FlagSpecs, FlagValues, parseFlags } from '../args';
import { CliConfig, cliConfig } from '../config';

/** What an operator program gets from the process: output, environment (read through cliConfig, config.ts). */
export interface CommandIo {
  out: (s: string) => void;
  err: (s: string) => void;
  env: NodeJS.ProcessEnv;
  /** Where progress bars go (default stderr). */
  progress?: NodeJS.WriteStream;
}

export type OperatorCommand = (argv: string[], io: CommandIo) => Promise<number>;

/** Every operator program takes these besides its own. */
const common = { help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } } as const satisfies FlagSpecs;

/**
 * An operator program's shape, the same for replay, audit and dlq: `--help` prints its usage on stdout (exit 0);
 * a usage error prints "<name>: <what is wrong>" and the usage on stderr (exit 2); an unforeseen failure prints
 * "<name>: <message>" (exit 1); otherwise what it returns is its exit code. The environment is checked (cliConfig)
 * before the body runs: a bad variable is a usage error naming it (exit 2).
 */
export function operatorCommand<S extends FlagSpecs>(
  name: string,
  usage: string,
  specs: S,
  body: (flags: FlagValues<S & typeof common>, positionals: string[], io: CommandIo, config: CliConfig) => Promise<number>,
): OperatorCommand {
  return async (argv, io) => {
    if (argv.includes('--help') || argv.includes('-h') || argv[0] === 'help') {
      io.out(usage);
      return ExitCode.ok;
    }
    try {
      const { values, positionals } = parseFlags(argv, { ...common, ...specs } as S & typeof common);
      return await body(values, positionals, io, cliConfig(io.env));
    } catch (e) {
      if (e instanceof ConfigError) {
        io.err(`${name}: ${e.message}\n`);
        return ExitCode.usage;
      }
      // Anything unforeseen (the database or broker unreachable, a bug) ends the command with exit 1, saying what.
      if (!(e instanceof CliError)) {
        io.err(`${name}: ${(e as Error).message}\n`);
        return ExitCode.failed;
      }
      io.err(`${name}: ${e.message}\n${e.code === ExitCode.usage ? usage : ''}`);
      return e.code;
    }
  };
}

export function usageError(message: string): CliError {
  return new CliError(ExitCode.usage, message);
}

/** A report for machines: bigints as strings, sets as arrays. */
export function asJson(value: unknown): string {
  return `${JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Set ? [...(v as Set<unknown>)] : v instanceof Map ? Object.fromEntries(v as Map<string, unknown>) : v), 2)}\n`;
}
