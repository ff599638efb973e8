import { Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Webhook } from 'standardwebhooks';
import { Agent, fetch as undiciFetch } from 'undici';
import { webhookAttempts, webhookBacklog, webhookEndpointsDisabled, webhookOldestUndelivered } from '@tollgate/platform';
import { RelayLoop } from '../outbox/relay-loop';
import { checkUrlShape, DeliveryPolicy, guardsAddresses, pinnedLookup, resolveAll, retryDelayMs, UrlRules } from './delivery-policy';

/** The most of a response body kept in the attempt log. */
export const ResponseCapBytes = 1024;

interface Claimed {
  id: string;
  endpoint_id: string;
  org_id: string;
  msg_id: string;
  payload: string;
  attempts: number;
  url: string;
  secret: string;
  /** The secret before the last rotation, while its overlap lasts (null after). */
  previous_secret: string | null;
}

export interface AttemptResult {
  status: number | null;
  latencyMs: number;
  head: string | null;
  error: string | null;
}

/**
 * Delivers webhook messages (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature), at least once and
 * strictly in order per (endpoint, org): only the head of each queue (its oldest undelivered message) is ever
 * claimed, so message N+1 is not attempted before N is delivered.
 *
 * Several instances share the work through leases: a claim is one UPDATE of due heads selected FOR UPDATE SKIP
 * LOCKED that sets `leased_until` (attempt timeout + a margin), so no two instances attempt a message at once; the
 * HTTP call runs outside any transaction (a slow receiver holds no connection). A result is written only if the
 * lease is still ours (`attempts` unchanged). An instance killed mid-delivery leaves the lease to run out: the
 * message is attempted again, with the same webhook-id, and nothing behind it moves meanwhile.
 */
export class WebhookSender {
  private readonly log = new Logger('webhook-sender');
  private readonly loop: RelayLoop;
  private lastSample = 0;
  /** Production without private networks: connections whose addresses were resolved once and checked. */
  private readonly dispatcher: Agent | undefined;

  constructor(
    private readonly ds: DataSource,
    private readonly policy: DeliveryPolicy,
    private readonly urlRules: UrlRules,
    intervalMs = 250,
    /** Queues attempted at once: each holds a pool connection only for its claim and its result statement. */
    private readonly batchSize = 16,
    private readonly clock: () => number = Date.now,
    resolve: (host: string) => Promise<string[]> = resolveAll,
  ) {
    this.dispatcher = guardsAddresses(urlRules) ? new Agent({ connect: { lookup: pinnedLookup(resolve) } }) : undefined;
    this.loop = new RelayLoop(this.log, 'webhook delivery round', () => this.round(), intervalMs, (attempted) => attempted > 0);
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
    await this.dispatcher?.close();
  }

  /** One round and, every 5 s, the metrics; a round that attempted anything is followed by another at once. */
  private async round(): Promise<number> {
    const attempted = await this.deliverOnce();
    if (this.clock() - this.lastSample > 5000) await this.sample();
    return attempted;
  }

  /**
   * Claims the due heads and attempts each; a queue whose head was delivered goes on with its next message at once
   * (claimed the same way), so a busy queue is not paced by the slowest of the round. Returns the attempts made.
   */
  async deliverOnce(): Promise<number> {
    const claimed = await this.claim(this.batchSize);
    const counts = await Promise.all(claimed.map(async (first) => {
      let c: Claimed | undefined = first;
      let n = 0;
      while (c) {
        n += 1;
        const delivered = await this.attempt(c);
        c = delivered && n < this.batchSize ? (await this.claim(1, { endpointId: c.endpoint_id, orgId: c.org_id }))[0] : undefined;
      }
      return n;
    }));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Leases up to `limit` due queue heads (of one queue with `only`). */
  private claim(limit: number, only?: { endpointId: string; orgId: string }): Promise<Claimed[]> {
    const leaseMs = this.policy.timeoutMs + 10_000;
    return this.ds.query(
      `WITH heads AS (
         SELECT m.id FROM webhook_messages m
           JOIN webhook_endpoints e ON e.id = m.endpoint_id AND e.disabled_at IS NULL
          WHERE m.delivered_at IS NULL AND m.next_attempt_at <= clock_timestamp()
            AND (m.leased_until IS NULL OR m.leased_until < clock_timestamp())
            AND ($3::text IS NULL OR (m.endpoint_id = $3 AND m.org_id = $4))
            AND NOT EXISTS (SELECT 1 FROM webhook_messages p
                             WHERE p.endpoint_id = m.endpoint_id AND p.org_id = m.org_id AND p.delivered_at IS NULL AND p.id < m.id)
          ORDER BY m.next_attempt_at LIMIT $1
          FOR UPDATE OF m SKIP LOCKED),
       leased AS (
         UPDATE webhook_messages m SET leased_until = clock_timestamp() + make_interval(secs => $2::float8 / 1000), attempts = m.attempts + 1
           FROM heads WHERE m.id = heads.id
         RETURNING m.id, m.endpoint_id, m.org_id, m.msg_id, m.payload, m.attempts)
       SELECT l.*, e.url, e.secret, CASE WHEN e.previous_secret_until > clock_timestamp() THEN e.previous_secret END AS previous_secret
         FROM leased l JOIN webhook_endpoints e ON e.id = l.endpoint_id ORDER BY l.id`,
      [limit, leaseMs, only?.endpointId ?? null, only?.orgId ?? null],
    );
  }

  /** One attempt, its log row and its outcome; true when delivered. */
  private async attempt(c: Claimed): Promise<boolean> {
    const started = this.clock();
    const result = await this.post(c);
    const ok = result.status !== null && result.status >= 200 && result.status < 300;
    webhookAttempts.inc({ outcome: ok ? 'delivered' : 'failed' });
    const retryAt = new Date(this.clock() + retryDelayMs(c.attempts, this.policy));
    // One statement (one round trip, no transaction held open): log the attempt; if the lease is still ours
    // (`attempts` unchanged: else another instance took the message over and its attempt decides), record the
    // outcome on the message and the endpoint, disabling it once it has failed for long enough.
    const [row] = (await this.ds.query(
      `WITH mine AS (SELECT id FROM webhook_messages WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL FOR UPDATE),
            logged AS (INSERT INTO webhook_attempts (message_id, endpoint_id, attempted_at, status, latency_ms, response_head, error)
                       VALUES ($1, $3, $4, $5, $6, $7, $8) RETURNING id),
            msg AS (UPDATE webhook_messages m
                       SET leased_until = NULL,
                           delivered_at = CASE WHEN $9 THEN clock_timestamp() END,
                           next_attempt_at = CASE WHEN $9 THEN m.next_attempt_at ELSE $10 END,
                           first_failed_at = CASE WHEN $9 THEN m.first_failed_at ELSE COALESCE(m.first_failed_at, clock_timestamp()) END
                      FROM mine WHERE m.id = mine.id RETURNING m.id),
            ep AS (UPDATE webhook_endpoints e
                      SET failing_since = CASE WHEN $9 THEN NULL ELSE COALESCE(e.failing_since, $4) END,
                          disabled_at = CASE WHEN NOT $9 AND COALESCE(e.failing_since, $4) <= clock_timestamp() - make_interval(secs => $11::float8 / 1000)
                                             THEN clock_timestamp() END
                    WHERE e.id = $3 AND e.disabled_at IS NULL AND (NOT $9 OR e.failing_since IS NOT NULL) AND EXISTS (SELECT 1 FROM msg)
                    RETURNING e.disabled_at)
       SELECT (SELECT count(*) FROM msg)::int AS mine, (SELECT disabled_at FROM ep) AS disabled_at, (SELECT count(*) FROM logged)::int AS logged`,
      [c.id, c.attempts, c.endpoint_id, new Date(started), result.status, result.latencyMs, result.head, result.error, ok, retryAt, this.policy.disableAfterMs],
    )) as Array<{ mine: number; disabled_at: Date | null }>;
    if (row?.disabled_at) this.log.warn({ msg: 'webhook endpoint disabled after failing too long', endpoint: c.endpoint_id });
    return ok && row?.mine === 1;
  }

  /**
   * One signed POST: no redirect followed, the body read up to a cap, the whole attempt bounded by the timeout.
   * In production (private networks not allowed) the URL is checked again and the connection's DNS lookup refuses
   * private addresses (pinnedLookup), so an endpoint whose name now resolves to one is refused here too.
   */
  private async post(c: Claimed): Promise<AttemptResult> {
    const started = this.clock();
    const refused = checkUrlShape(c.url, this.urlRules);
    if (refused) return { status: null, latencyMs: 0, head: null, error: `url refused: ${refused}` };
    const sentAt = new Date(this.clock());
    // After a rotation both secrets sign, space-separated (Standard Webhooks): a receiver with either verifies.
    const signature = [c.secret, c.previous_secret].filter((x): x is string => !!x).map((k) => new Webhook(k).sign(c.msg_id, sentAt, c.payload)).join(' ');
    const signal = AbortSignal.timeout(this.policy.timeoutMs);
    try {
      const res = await undiciFetch(c.url, {
        method: 'POST',
        redirect: 'manual',
        signal,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'tollgate-webhooks',
          'webhook-id': c.msg_id,
          'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
          'webhook-signature': signature,
        },
        body: c.payload,
      });
      const head = `${res.status} ${res.statusText}`.trim() + (await readCapped(res));
      return { status: res.status, latencyMs: this.clock() - started, head: head.slice(0, ResponseCapBytes + 64), error: res.ok ? null : `HTTP ${res.status}` };
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      const timedOut = signal.aborted;
      if (err.cause?.code === 'EPRIVATEADDRESS') return { status: null, latencyMs: this.clock() - started, head: null, error: err.cause.message ?? 'url refused' };
      return {
        status: null,
        latencyMs: this.clock() - started,
        head: null,
        error: timedOut ? `timed out after ${this.policy.timeoutMs} ms` : (err.cause?.code ?? err.cause?.message ?? err.message),
      };
    }
  }

  /** The operators' gauges: backlog, oldest undelivered age (enabled endpoints), disabled endpoints. */
  async sample(): Promise<void> {
    this.lastSample = this.clock();
    const [row] = (await this.ds.query(
      `SELECT (SELECT count(*) FROM webhook_messages WHERE delivered_at IS NULL)::int8 AS backlog,
              COALESCE((SELECT extract(epoch FROM clock_timestamp() - min(m.created_at)) FROM webhook_messages m
                          JOIN webhook_endpoints e ON e.id = m.endpoint_id AND e.disabled_at IS NULL WHERE m.delivered_at IS NULL), 0)::float8 AS oldest,
              (SELECT count(*) FROM webhook_endpoints WHERE disabled_at IS NOT NULL)::int8 AS disabled`,
    )) as Array<{ backlog: string; oldest: number; disabled: string }>;
    webhookBacklog.set(Number(row!.backlog));
    webhookOldestUndelivered.set(Number(row!.oldest));
    webhookEndpointsDisabled.set(Number(row!.disabled));
  }
}

/** Up to ResponseCapBytes of the body (then the stream is cancelled), prefixed with a newline; '' if none. */
async function readCapped(res: { body: ReadableStream<Uint8Array> | null }): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < ResponseCapBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  const text = Buffer.concat(chunks).subarray(0, ResponseCapBytes).toString('utf8');
  return text ? `\n${text}` : '';
}
