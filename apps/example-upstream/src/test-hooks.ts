import { NextFunction, Request, Response } from 'express';

/**
 * Request headers that let tests (through the gateway, which forwards them) make the upstream misbehave
 * on any data route:
 * - `x-upstream-delay-ms: <n>`: answer after n ms (capped at 10 s), for timeout and concurrency tests.
 * - `x-upstream-status: <code>` (200..599): answer that status instead of the route's own answer, with a
 *   JSON body `{"error":"upstream_test_status","message","status"}` (no body for 204, 205, 304), for
 *   "failures are not charged" tests.
 * Both together: the status after the delay. An unusable value is a 400 naming the header, so a typo
 * fails loudly instead of silently testing the happy path. Health and metrics ignore the hooks, so a
 * stack's readiness probe can't be fooled by them.
 */
export const UpstreamStatusHeader = 'x-upstream-status';
export const UpstreamDelayHeader = 'x-upstream-delay-ms';
export const MaxUpstreamDelayMs = 10_000;

const hookFree = /^\/(health\/(live|ready)|metrics)\/?$/;
const bodiless = new Set([204, 205, 304]);

type HookValue = { ok: true; value: number | null } | { ok: false; message: string };

function parseHook(raw: string | string[] | undefined, header: string, min: number, max: number): HookValue {
  const text = Array.isArray(raw) ? raw[0] : raw;
  if (text === undefined || text.trim() === '') return { ok: true, value: null };
  const n = Number(text.trim());
  if (!Number.isInteger(n) || n < min || n > max) return { ok: false, message: `${header} must be a whole number from ${min} to ${max} (got "${text}")` };
  return { ok: true, value: n };
}

export function upstreamTestHooks(req: Request, res: Response, next: NextFunction): void {
  if (hookFree.test(req.path)) return next();
  const status = parseHook(req.headers[UpstreamStatusHeader], UpstreamStatusHeader, 200, 599);
  // Larger delays are capped, not refused: a test asking for "very slow" gets the slowest there is.
  const delay = parseHook(req.headers[UpstreamDelayHeader], UpstreamDelayHeader, 0, Number.MAX_SAFE_INTEGER);
  for (const hook of [status, delay]) {
    if (!hook.ok) {
      res.status(400).json({ error: 'invalid_test_hook', message: hook.message });
      return;
    }
  }
  const answer = () => {
    const code = status.ok ? status.value : null;
    if (code === null) return next();
    if (bodiless.has(code)) {
      res.status(code).end();
      return;
    }
    res.status(code).json({ error: 'upstream_test_status', message: `Answered ${code} because the request asked for it (${UpstreamStatusHeader}).`, status: code });
  };
  const delayMs = delay.ok && delay.value !== null ? Math.min(delay.value, MaxUpstreamDelayMs) : 0;
  if (delayMs > 0) setTimeout(answer, delayMs);
  else answer();
}
