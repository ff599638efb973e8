import { performance } from 'node:perf_hooks';
import { loadavg } from 'node:os';
import { Client } from 'pg';
import { eventually, Stack, uniqueId } from '../support/stack';
import { WebhookReceiver } from '../support/webhook-receiver';

/**
 * `npm run bench -- webhooks`: delivery throughput and the lag from ledger entry to webhook, at load, with the
 * webhook loops at their default settings (notifier and sender every 250 ms, 16 queues in flight).
 *
 * Two phases against one global endpoint (a receiver in this process that verifies every signature):
 * 1. paid calls through the gateway (BENCH_HOOK_ORGS orgs x BENCH_HOOK_CALLS calls, 16 in flight), each org with
 *    10 credits_below and 10 allowance_used_percent thresholds, so the first calls of every org cross one each:
 *    credits.low derived from holds and charges while the gateway and the consumer are busy;
 * 2. a burst of admin grants (BENCH_HOOK_GRANTS per org, all orgs at once): credits.granted, the sender's
 *    throughput with a deep backlog.
 * Lag = the receiver's arrival instant minus the entry's recorded_at (one machine clock); also read from the
 * database: queued (created_at) and delivered (delivered_at) against recorded_at.
 */
export interface WebhookBenchRow {
  name: string;
  n: number;
  p50: string;
  p99: string;
  throughput: string;
}

function pct(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export async function webhooksBench(): Promise<{ rows: WebhookBenchRow[]; notes: string[] }> {
  const orgs = Number(process.env.BENCH_HOOK_ORGS ?? 40);
  const calls = Number(process.env.BENCH_HOOK_CALLS ?? 60);
  const grants = Number(process.env.BENCH_HOOK_GRANTS ?? 50);
  let secret = '';
  const receiver = new WebhookReceiver(() => secret);
  const arrived = new Map<string, number>();
  receiver.answer = () => ({ status: 204 });
  await receiver.start();
  const stack = await Stack.start({ profile: 'trackyard' });
  const db = new Client({ connectionString: process.env.DATABASE_URL });
  await db.connect();
  const rows: WebhookBenchRow[] = [];
  const notes: string[] = [];
  try {
    const run = uniqueId('hookbench');
    const made: Array<{ orgId: string; key: string }> = [];
    for (let i = 0; i < orgs; i++) {
      const org = await stack.orgWithKey('starter', `${run}-${i}`);
      await stack.admin('PUT', `/admin/orgs/${org.orgId}/limits`, { minute: 1_000_000, day: 10_000_000 });
      await stack.admin('PUT', `/admin/orgs/${org.orgId}/alerts`, {
        credits_below: Array.from({ length: 10 }, (_, k) => 499 - k * 3),
        allowance_used_percent: Array.from({ length: 10 }, (_, k) => 1 + k),
      });
      made.push(org);
    }
    // Wait for the orgs' openings to be read before the endpoint exists: only the load is sent.
    await new Promise((r) => setTimeout(r, 1500));
    const created = await stack.admin<{ id: string; secret: string }>('POST', '/admin/webhooks', { url: receiver.url, events: ['credits.low', 'credits.granted'] });
    secret = created.body.secret;
    const endpoint = created.body.id;
    const origPush = receiver.hits.push.bind(receiver.hits);
    receiver.hits.push = (...h) => {
      for (const x of h) if (!arrived.has(x.id)) arrived.set(x.id, Date.now());
      return origPush(...h);
    };

    const phase = async (name: string, eventType: string, load: () => Promise<void>, expected: number) => {
      const load1 = loadavg()[0]!;
      const t0 = performance.now();
      await load();
      const loadSeconds = (performance.now() - t0) / 1000;
      await eventually(async () => {
        const r = await db.query(`SELECT count(*) FILTER (WHERE delivered_at IS NULL)::int AS left, count(*)::int AS n FROM webhook_messages WHERE endpoint_id = $1 AND event_type = $2`, [endpoint, eventType]);
        return r.rows[0].n >= expected && r.rows[0].left === 0;
      }, 300_000, 200);
      const r = await db.query(
        `SELECT msg_id, (extract(epoch FROM source_at) * 1000)::float8 AS source_ms, (extract(epoch FROM created_at) * 1000)::float8 AS created_ms,
                (extract(epoch FROM delivered_at) * 1000)::float8 AS delivered_ms
           FROM webhook_messages WHERE endpoint_id = $1 AND event_type = $2`,
        [endpoint, eventType],
      );
      const lag = r.rows.map((x) => (arrived.get(x.msg_id) ?? NaN) - x.source_ms).sort((a, b) => a - b);
      const queued = r.rows.map((x) => x.created_ms - x.source_ms).sort((a, b) => a - b);
      const sent = r.rows.map((x) => x.delivered_ms - x.created_ms).sort((a, b) => a - b);
      const first = Math.min(...r.rows.map((x) => x.source_ms));
      const last = Math.max(...r.rows.map((x) => x.delivered_ms));
      const span = (last - first) / 1000;
      rows.push({ name: `${name}: ledger entry -> webhook received`, n: r.rows.length, p50: `${Math.round(pct(lag, 0.5))} ms`, p99: `${Math.round(pct(lag, 0.99))} ms`, throughput: `${Math.round(r.rows.length / span)} msg/s over ${span.toFixed(1)} s` });
      rows.push({ name: `${name}: entry -> queued (notifier)`, n: r.rows.length, p50: `${Math.round(pct(queued, 0.5))} ms`, p99: `${Math.round(pct(queued, 0.99))} ms`, throughput: '-' });
      rows.push({ name: `${name}: queued -> delivered (sender)`, n: r.rows.length, p50: `${Math.round(pct(sent, 0.5))} ms`, p99: `${Math.round(pct(sent, 0.99))} ms`, throughput: '-' });
      notes.push(`${name}: load generated in ${loadSeconds.toFixed(1)} s; load average ${load1.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after`);
      console.error(`bench: webhooks ${name} done`);
    };

    await phase('paid calls -> credits.low', 'credits.low', async () => {
      let next = 0;
      const total = orgs * calls;
      const statuses = new Map<number, number>();
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < total) {
          const i = next++;
          const org = made[i % orgs]!;
          const res = await fetch(stack.gatewayUrl('/api/external/v1/search'), {
            method: 'POST', headers: { authorization: `Bearer ${org.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ query: 'bench' }),
          });
          await res.arrayBuffer();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }
      }));
      notes.push(`paid calls: ${total} (${[...statuses].map(([s, n]) => `${n} x ${s}`).join(', ')})`);
    }, orgs * 20);

    await phase('admin grants -> credits.granted', 'credits.granted', async () => {
      await Promise.all(made.map(async (org) => {
        for (let g = 0; g < grants; g++) {
          await stack.admin('POST', `/admin/orgs/${org.orgId}/credits`, { amount: 1, reason: 'bench', idempotency_key: `${org.orgId}-g${g}` });
        }
      }));
    }, orgs * grants);

    if (receiver.badSignatures.length > 0) throw new Error(`bad signatures: ${receiver.badSignatures.slice(0, 3).join('; ')}`);
    // In order per org: each org's credits.low thresholds arrive highest first, its grants by seq.
    for (const org of made) {
      const seqs = receiver.accepted().filter((h) => h.body.data.org_id === org.orgId).map((h) => Number(h.body.data.seq));
      if (seqs.some((s, i) => i > 0 && s < seqs[i - 1]!)) throw new Error(`out of order for ${org.orgId}`);
    }
    await stack.admin('DELETE', `/admin/webhooks/${endpoint}`);
  } finally {
    await db.end();
    await stack.stop();
    await receiver.stop();
  }
  return { rows, notes };
}
