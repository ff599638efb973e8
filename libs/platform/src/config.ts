import { customCleanEnv, EnvError, EnvMissingError, makeValidator, OptionalValidatorSpec, RequiredValidatorSpec, ValidatorSpec } from 'envalid';

/**
 * Configuration from the environment, read once at start and validated whole: each app gathers its variables in
 * one module (`apps/<app>/src/config.ts`) from the shared groups below (`shared-config.ts`) and its own, and its
 * `main.ts` reads them before anything else. A bad value stops the start with one line naming every bad variable:
 * `invalid configuration: GATEWAY_PORT: must be a whole number from 0 to 65535 (got "80a")`.
 *
 * The schema library is envalid (cleanEnv): made for exactly this (typed specs per variable, defaults, a reporter
 * that sees every error at once), small, and with no dependency but tslib. class-validator, already here for the
 * admin API's bodies, would need a class per app and its own string-to-number coercion; Nest's config module wraps
 * joi or class-validator and would tie the CLI and the example upstream to Nest's DI for their settings.
 *
 * Conventions kept from before: an empty value is the same as an unset one (the default applies); numbers are
 * whole and written in decimal digits.
 */

/** A setting the operator can fix: runMain prints its message alone (no stack) and exits 1. */
export class ConfigError extends Error {}

export type EnvSpecs = Record<string, ValidatorSpec<unknown>>;

export type Cleaned<S extends EnvSpecs> = {
  readonly [K in keyof S]: S[K] extends OptionalValidatorSpec<infer U> ? U | undefined : S[K] extends RequiredValidatorSpec<infer U> ? U : never;
};

/**
 * Checks across variables, run once every variable is valid on its own: a map from the variable at fault to what is
 * wrong with it (e.g. KAFKA_MIN_INSYNC_REPLICAS above KAFKA_REPLICATION_FACTOR).
 */
export type CrossCheck<S extends EnvSpecs> = (cleaned: Cleaned<S>) => Record<string, string>;

/** Where the environment came from, for the message: `node --env-file=<file>` names the file that was read. */
export function environmentSource(execArgv: readonly string[] = process.execArgv): string {
  const files: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    if (a.startsWith('--env-file=')) files.push(a.slice('--env-file='.length));
    else if (a === '--env-file' && execArgv[i + 1]) files.push(execArgv[++i]!);
  }
  return files.length ? ` (environment, with ${files.join(', ')} read by node --env-file)` : '';
}

/**
 * Reads `specs` from `env` and returns the typed values, or throws one ConfigError naming each bad variable:
 * `invalid configuration: NAME: what is wrong (got "value"); OTHER: ...`.
 */
export function readConfig<S extends EnvSpecs>(specs: S, env: NodeJS.ProcessEnv = process.env, check?: CrossCheck<S>): Cleaned<S> {
  const raw: Record<string, string> = {};
  for (const name of Object.keys(specs)) {
    const value = env[name];
    if (value !== undefined && value !== '') raw[name] = value;
  }
  const problems: string[] = [];
  const cleaned = customCleanEnv(raw, specs, (c) => ({ ...(c as object) }), {
    reporter: ({ errors }) => {
      for (const [name, error] of Object.entries(errors as Record<string, Error | undefined>)) {
        if (!error) continue;
        problems.push(`${name}: ${error instanceof EnvMissingError ? error.message || 'must be set' : error.message}`);
      }
    },
  }) as unknown as Cleaned<S>;
  if (problems.length === 0 && check) {
    for (const [name, message] of Object.entries(check(cleaned))) problems.push(`${name}: ${message}`);
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join('; ')}${environmentSource()}`);
  return cleaned;
}

// ---- validators: each message says what is expected and what was given ----------------------------------------

const got = (raw: string) => `(got "${raw}")`;

/** A whole number in decimal digits within [min, max]. */
export function whole(fallback: number, range: { min?: number; max?: number } = {}): RequiredValidatorSpec<number> {
  return makeValidator<number>(wholeParser(range))({ default: fallback });
}

/** Like whole, with no default: undefined when unset. */
export function optionalWhole(range: { min?: number; max?: number } = {}): OptionalValidatorSpec<number> {
  return makeValidator<number>(wholeParser(range))({ default: undefined });
}

function wholeParser({ min = 0, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number }) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new EnvError(`must be a whole number from ${min} to ${max} ${got(raw)}`);
    }
    return n;
  };
}

/** A TCP port (0: any free one, for tests). */
export const port = (fallback: number) => whole(fallback, { min: 0, max: 65535 });

/** A string; any value is taken. */
export function text(fallback: string): RequiredValidatorSpec<string> {
  return makeValidator<string>((raw) => raw)({ default: fallback });
}

export function optionalText(spec: { desc?: string; requiredWhen?: (cleaned: Record<string, unknown>) => boolean } = {}): OptionalValidatorSpec<string> {
  return makeValidator<string>((raw) => raw)({ default: undefined, ...spec });
}

/** One of a fixed set of words. */
export function oneOf<T extends string>(choices: readonly T[], fallback: T): RequiredValidatorSpec<T> {
  return makeValidator<T>(oneOfParser(choices))({ default: fallback });
}

export function optionalOneOf<T extends string>(choices: readonly T[]): OptionalValidatorSpec<T> {
  return makeValidator<T>(oneOfParser(choices))({ default: undefined });
}

function oneOfParser<T extends string>(choices: readonly T[]) {
  return (raw: string): T => {
    if (!(choices as readonly string[]).includes(raw)) throw new EnvError(`must be one of ${choices.join(', ')} ${got(raw)}`);
    return raw as T;
  };
}

/** true/false (also 1/0). */
export function flag(fallback: boolean): RequiredValidatorSpec<boolean> {
  return makeValidator<boolean>((raw) => {
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new EnvError(`must be true or false (or 1 or 0) ${got(raw)}`);
  })({ default: fallback });
}

/** An absolute URL with one of the given schemes. */
export function url(fallback: string, schemes: readonly string[]): RequiredValidatorSpec<string> {
  return makeValidator<string>(urlParser(schemes))({ default: fallback });
}

export function optionalUrl(schemes: readonly string[]): OptionalValidatorSpec<string> {
  return makeValidator<string>(urlParser(schemes))({ default: undefined });
}

function urlParser(schemes: readonly string[]) {
  return (raw: string): string => {
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new EnvError(`must be a URL such as ${schemes[0]}://host:port ${got(redact(raw))}`);
    }
    if (!schemes.includes(parsed.protocol.replace(/:$/, ''))) {
      throw new EnvError(`must be a ${schemes.join(' or ')} URL ${got(redact(raw))}`);
    }
    return raw;
  };
}

/** A comma-separated list of host:port addresses (Kafka's bootstrap servers). */
export function hostPorts(fallback: string): RequiredValidatorSpec<string[]> {
  return makeValidator<string[]>((raw) => {
    const list = raw.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = list.find((a) => !/^[^\s:/]+:\d{1,5}$/.test(a) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(a));
    if (list.length === 0 || bad !== undefined) throw new EnvError(`must be host:port[,host:port...] ${got(raw)}`);
    return list;
  })({ default: fallback.split(',') });
}

/** A password in a URL is never repeated in a message. */
function redact(raw: string): string {
  return raw.replace(/\/\/([^:/@]+):[^@/]*@/, '//$1:***@');
}
