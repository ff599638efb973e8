/**
 * The CLI's one argument parser and its exit codes, shared by every `tollgate` command (the admin API commands in
 * tollgate.ts and the operator programs in commands/: replay, audit, dlq).
 */
import { parseArgs } from 'node:util';

/**
 * One set of exit codes for every command (documented in `tollgate --help` and the README):
 * 0 ok; 1 something was found wrong (replay: a difference, audit: a violation, dlq: a dead letter that can't be
 * replayed) or the server failed; 2 usage (bad arguments or input refused); 3 auth; 4 not found; 5 metering
 * unreachable; 6 conflict; 130 interrupted (Ctrl-C).
 */
export const ExitCode = { ok: 0, failed: 1, found: 1, usage: 2, auth: 3, notFound: 4, unreachable: 5, conflict: 6, interrupted: 130 } as const;

export class CliError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** A flag: its type, whether it repeats, and (for a value) what it needs, which names the value in a usage error. */
export interface FlagSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  needs?: string;
}
export type FlagSpecs = Record<string, FlagSpec>;
type Value<F extends FlagSpec> = F['type'] extends 'boolean' ? boolean : F['multiple'] extends true ? string[] : string;
export type FlagValues<S extends FlagSpecs> = { [K in keyof S]?: Value<S[K]> };

/**
 * Reads `argv` against `specs` (strictly: an unknown flag or a flag without its value is a usage error, a CliError
 * with ExitCode.usage saying which). A value starting with "-" is refused as missing, so `--org --apply` does not
 * take "--apply" for an org id.
 */
export function parseFlags<S extends FlagSpecs>(argv: string[], specs: S): { values: FlagValues<S>; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const [name, s] of Object.entries(specs)) options[name] = { type: s.type, ...(s.multiple ? { multiple: true } : {}), ...(s.short ? { short: s.short } : {}) };
  try {
    const parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: parsed.values as FlagValues<S>, positionals: parsed.positionals };
  } catch (e) {
    throw new CliError(ExitCode.usage, usageMessage(e as Error & { code?: string }, specs));
  }
}

function usageMessage(e: Error & { code?: string }, specs: FlagSpecs): string {
  const flag = /'(-{1,2}[^' ]+)/.exec(e.message)?.[1];
  const spec = flag ? specs[flag.replace(/^-+/, '')] : undefined;
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown argument "${flag ?? e.message}"`;
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) {
    if (spec?.type === 'boolean') return `${flag} takes no value`;
    return `${flag} needs ${spec?.needs ?? 'a value'}`;
  }
  return e.message.split('\n')[0]!;
}
