import { backOff } from 'exponential-backoff';
import { CliError, ExitCode } from './args';

type Json = Record<string, unknown>;

/**
 * Metering's admin API over HTTP: one call is one request, its failure turned into the CLI's exit codes (401/403
 * auth, 404 not found, 409 conflict, other 4xx usage, 5xx failed, no answer unreachable). A call given more than one
 * attempt retries only what may succeed later (unreachable, 5xx): the commands that do so are idempotent.
 */
export class AdminClient {
  constructor(
    private readonly base: string,
    private readonly token: string | undefined,
    private readonly actor: string | undefined,
  ) {}

  async call<T = Json>(method: string, path: string, body?: unknown, attempts = 1): Promise<T> {
    // 300 ms, then 600 ms between attempts.
    return backOff(() => this.once<T>(method, path, body), {
      numOfAttempts: attempts,
      startingDelay: 300,
      timeMultiple: 2,
      retry: (e: unknown) => e instanceof CliError && (e.code === ExitCode.unreachable || e.code === ExitCode.failed),
    });
  }

  private async once<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: {
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          ...(this.actor ? { 'x-tollgate-actor': this.actor } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(ExitCode.unreachable, `metering is unreachable at ${this.base} (${cause?.code ?? cause?.message ?? (e as Error).message}); set TOLLGATE_ADMIN_URL`);
    }
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (res.ok) return parsed as T;
    const message = (parsed as { message?: unknown } | null)?.message;
    const said = typeof message === 'string' ? message : Array.isArray(message) ? message.join('; ') : text.slice(0, 200) || res.statusText;
    if (res.status === 401 || res.status === 403) {
      throw new CliError(ExitCode.auth, `not authorised (${res.status}): ${this.token ? 'TOLLGATE_ADMIN_TOKEN was refused' : 'set TOLLGATE_ADMIN_TOKEN'}`);
    }
    if (res.status === 404) throw new CliError(ExitCode.notFound, `not found: ${said}`);
    // The server's message names the key and what it was first used for; with --idempotency-key the operator chose it.
    if (res.status === 409 && (parsed as { error?: unknown } | null)?.error === 'idempotency_key_reused') {
      throw new CliError(ExitCode.conflict, `idempotency key reused, nothing was done: ${said}`);
    }
    if (res.status === 409) throw new CliError(ExitCode.conflict, `conflict: ${said}`);
    if (res.status >= 400 && res.status < 500) throw new CliError(ExitCode.usage, `refused (${res.status}): ${said}`);
    throw new CliError(ExitCode.failed, `metering failed (${res.status}): ${said}`);
  }
}

