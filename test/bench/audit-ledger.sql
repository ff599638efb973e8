-- A clean ledger of ~1M entries for measuring `npm run audit` (README, "Auditing the ledger"): :orgs orgs x 100
-- entries (a grant, then charges, holds settled at their price, holds given back), with their holds, usage rows,
-- usage totals and accounts, inserted set-based. Into a scratch database, migrated first:
--   createdb tg_audit_bench && DATABASE_URL=postgres://postgres@127.0.0.1:5432/tg_audit_bench npm run migration:run
--   psql -h 127.0.0.1 -U postgres -d tg_audit_bench -f test/bench/audit-ledger.sql
--   DATABASE_URL=postgres://postgres@127.0.0.1:5432/tg_audit_bench npm run audit
\set orgs 10000
INSERT INTO orgs (id, name, profile, plan)
SELECT 'perf-' || lpad(o::text, 6, '0'), 'perf ' || o, 'trackyard', 'pro' FROM generate_series(1, :orgs) o;

CREATE TEMP TABLE gen AS
SELECT 'perf-' || lpad(o::text, 6, '0') AS org_id, s AS seq,
       CASE WHEN s = 1 THEN 'grant'
            WHEN (s - 2) % 6 IN (0, 2, 5) THEN 'charge'
            WHEN (s - 2) % 6 IN (1, 3) THEN 'reservation'
            ELSE 'release' END AS type,
       CASE WHEN s = 1 THEN 1000000 WHEN (s - 2) % 6 = 4 THEN 1 ELSE -1 END AS amount,
       timestamptz '2026-12-01T00:00:00Z' + make_interval(secs => s) + make_interval(secs => o / 1000.0) AS occurred_at,
       (s - 2) % 6 AS pos
  FROM generate_series(1, :orgs) o, generate_series(1, 100) s;

INSERT INTO ledger_entries (org_id, seq, type, amount, balance_after, cause, occurred_at, bucket_id, detail)
SELECT org_id, seq, type, amount, SUM(amount) OVER (PARTITION BY org_id ORDER BY seq),
       CASE type WHEN 'grant' THEN 'admin:create-org:' || org_id
                 WHEN 'charge' THEN 'event:e-' || org_id || '-' || seq
                 WHEN 'reservation' THEN 'reservation:r-' || org_id || '-' || seq
                 ELSE 'reservation:r-' || org_id || '-' || (seq - 1) || ':released' END,
       occurred_at, 'allowance:2026-12',
       CASE type WHEN 'grant' THEN jsonb_build_object('plan', 'pro', 'month', '2026-12', 'expires_at', '2027-01-01T00:00:00.000Z')
                 WHEN 'charge' THEN '{}'::jsonb
                 WHEN 'reservation' THEN jsonb_build_object('reservation_id', 'r-' || org_id || '-' || seq)
                 ELSE jsonb_build_object('reservation_id', 'r-' || org_id || '-' || (seq - 1)) END
  FROM gen;

INSERT INTO reservations (id, org_id, credits, allocation, route, occurred_at, expires_at, status, closed_at, closed_by, held_at)
SELECT 'r-' || org_id || '-' || seq, org_id, 1, '[{"bucketId":"allowance:2026-12","credits":1}]'::jsonb, 'POST /search',
       occurred_at, occurred_at + interval '120 seconds', CASE pos WHEN 1 THEN 'settled' ELSE 'released' END,
       occurred_at + interval '1 second', CASE pos WHEN 1 THEN 'event' ELSE 'gateway' END, occurred_at
  FROM gen WHERE type = 'reservation';

-- One usage row per call: charged (charge entries or a hold settled at its price), and given back (0 credits).
INSERT INTO usage_records (event_id, org_id, occurred_at, method, route, path, status_code, credits, cost_reason, response_time_ms, decision, entities)
SELECT 'e-' || org_id || '-' || seq, org_id, occurred_at, 'POST', '/search', '/api/external/v1/search', 200,
       CASE WHEN pos = 3 THEN 0 ELSE 1 END, CASE WHEN pos = 3 THEN 'given_back' ELSE 'charged' END, 5, 'forwarded', 0
  FROM gen WHERE type IN ('charge', 'reservation');

INSERT INTO usage_totals (org_id, total) SELECT org_id, COUNT(*) FROM usage_records GROUP BY org_id;

INSERT INTO accounts (org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets)
SELECT org_id, '{"name":"pro","oneTimeCredits":0,"monthlyAllowance":1000000}'::jsonb, SUM(amount), 0, MAX(seq) + 1, '2026-12',
       -SUM(amount) FILTER (WHERE seq > 1), '{}',
       jsonb_build_array(jsonb_build_object('id', 'allowance:2026-12', 'kind', 'allowance', 'expiresAt', 1798761600000, 'remaining', SUM(amount)))
  FROM gen GROUP BY org_id;
ANALYZE;
SELECT (SELECT COUNT(*) FROM ledger_entries) AS entries, (SELECT COUNT(*) FROM reservations) AS holds, (SELECT COUNT(*) FROM usage_records) AS usage;
