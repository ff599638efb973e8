import { ServedCall } from './scripted-upstream';

/**
 * The money fuzzer's invariants, as a pure function of what the client received, what the upstream served and
 * what metering recorded (so it is tested on its own, test/fuzz/check.unit.spec.ts):
 * - every 2xx the client received of a paid route the upstream served is in /usage exactly once, charged what
 *   the upstream's answer prices (trackyard: 1; trace: the ids in it not already charged to the org in the run);
 * - a 2xx of an answer that cannot be priced (undecodable, not JSON, not the route's shape) is never handed out;
 * - every other answer (and a call that got no answer) is charged nothing, and nothing is charged for a call
 *   the client never made;
 * - no hold is left open, the balance is the sum of the ledger, and the ledger spent what /usage charged.
 */

export interface ClientResult {
  n: number;
  /** null when the client got no answer (connection reset, timeout). */
  status: number | null;
  requestId: string | null;
  error?: string;
}

export interface UsageRow {
  request_id: string | null;
  status_code: number;
  credits_consumed: number;
  endpoint: string;
  decision: string;
  cost_reason: string;
  path: string;
}

export interface LedgerEntry {
  seq: number;
  type: string;
  amount: number;
}

export interface LaneFacts {
  lane: number;
  profile: 'trace' | 'trackyard';
  orgId: string;
  /** The lane's calls in the order they were made (one at a time). */
  results: ClientResult[];
  served: Map<number, ServedCall>;
  usage: UsageRow[];
  ledger: LedgerEntry[];
  balance: number;
  openHolds: number;
}

export interface Violation {
  invariant:
    | 'not-metered' | 'metered-twice' | 'wrong-charge' | 'unpriceable-handed-out' | 'charged-non-2xx' | 'charged-free-answer'
    | 'phantom-charge' | 'no-request-id' | 'forwarded-twice' | 'hold-left' | 'balance-not-ledger' | 'ledger-not-usage'
    | 'memory' | 'gateway-died';
  call?: number;
  orgId?: string;
  detail: string;
}

const ok = (s: number | null) => s !== null && s >= 200 && s < 300;

/** Does this upstream answer carry paid data (a 2xx of a route the profile charges for)? */
function paidAnswer(served: ServedCall | undefined): served is ServedCall {
  return served !== undefined && served.route !== null && served.route !== 'trace:open' && served.status >= 200 && served.status < 300;
}

export function checkLane(f: LaneFacts): Violation[] {
  const v: Violation[] = [];
  const rowsById = new Map<string, UsageRow[]>();
  for (const r of f.usage) {
    const k = r.request_id ?? '\u0000none';
    rowsById.set(k, [...(rowsById.get(k) ?? []), r]);
  }
  // Calls that share a request id (the client sent the same one twice) are checked as one group.
  const groups = new Map<string, Array<{ res: ClientResult; expected: number | null; ids: string[] }>>();
  const charged = new Set<string>();
  for (const res of f.results) {
    const served = f.served.get(res.n);
    let expected: number | null = 0;
    let ids: string[] = [];
    if (ok(res.status)) {
      if (served && served.times > 1) v.push({ invariant: 'forwarded-twice', call: res.n, orgId: f.orgId, detail: `the upstream served it ${served.times} times` });
      if (served?.unpriceable) v.push({ invariant: 'unpriceable-handed-out', call: res.n, orgId: f.orgId, detail: `client got ${res.status}; the upstream's ${served.mode} answer of ${served.route} cannot be priced` });
      if (paidAnswer(served)) {
        if (f.profile === 'trackyard') expected = 1;
        else {
          const fresh = served.ids.filter((id) => !charged.has(id));
          for (const id of fresh) charged.add(id);
          expected = fresh.length;
          ids = served.ids;
        }
      } else expected = null; // answered by Tollgate itself or a free route: no row required, nothing charged
    }
    if (res.requestId === null) {
      if (ok(res.status) && expected !== null) v.push({ invariant: 'no-request-id', call: res.n, orgId: f.orgId, detail: `a ${res.status} without X-Request-Id: it cannot be found in /usage` });
      continue;
    }
    groups.set(res.requestId, [...(groups.get(res.requestId) ?? []), { res, expected, ids }]);
  }

  // Ids handed out in a 2xx that was not metered (or charged less than it owed): metering never saw them, so a
  // later answer with them is charged again. Still a violation of the model, labelled as the knock-on it is.
  const unbilled = new Set<string>();

  for (const [rid, calls] of groups) {
    const rows = rowsById.get(rid) ?? [];
    rowsById.delete(rid);
    const paid = calls.filter((c) => ok(c.res.status) && c.expected !== null);
    const ok2xxRows = rows.filter((r) => r.status_code >= 200 && r.status_code < 300);
    const otherRows = rows.filter((r) => !(r.status_code >= 200 && r.status_code < 300));
    const first = calls[0]!.res.n;
    const owed = paid.reduce((s, c) => s + c.expected!, 0);
    if (paid.length > 0 && ok2xxRows.length < paid.length) {
      for (const c of paid) for (const id of c.ids) unbilled.add(id);
      v.push({ invariant: 'not-metered', call: paid[0]!.res.n, orgId: f.orgId, detail: `${paid.length} 2xx answer(s) with request id ${show(rid)}, ${ok2xxRows.length} 2xx row(s) in /usage${rows.length ? ` (rows: ${rows.map(describeRow).join('; ')})` : ''}; owed ${owed}` });
    } else if (ok2xxRows.length > paid.length) {
      const charges = ok2xxRows.reduce((s, r) => s + r.credits_consumed, 0);
      if (paid.length > 0) v.push({ invariant: 'metered-twice', call: first, orgId: f.orgId, detail: `${paid.length} 2xx answer(s), ${ok2xxRows.length} 2xx rows with request id ${show(rid)}: ${ok2xxRows.map(describeRow).join('; ')}` });
      else if (charges !== 0) {
        const noAnswer = calls.every((c) => !ok(c.res.status));
        v.push({ invariant: noAnswer ? 'charged-non-2xx' : 'charged-free-answer', call: first, orgId: f.orgId, detail: `client got ${calls.map((c) => c.res.status ?? 'no answer').join(', ')}; /usage charged ${charges}: ${ok2xxRows.map(describeRow).join('; ')}` });
      }
    }
    if (paid.length > 0 && ok2xxRows.length === paid.length) {
      const got = ok2xxRows.reduce((s, r) => s + r.credits_consumed, 0);
      const seenUnbilled = new Set(paid.flatMap((c) => c.ids).filter((id) => unbilled.has(id))).size;
      const knockOn = got > owed && got - owed <= seenUnbilled ? `; knock-on: ${seenUnbilled} of its ids were handed out earlier in a 2xx metering never charged` : '';
      if (got < owed) for (const c of paid) for (const id of c.ids) unbilled.add(id);
      if (got !== owed) v.push({ invariant: 'wrong-charge', call: paid[0]!.res.n, orgId: f.orgId, detail: `charged ${got}, the upstream's answer prices ${owed} (${ok2xxRows.map(describeRow).join('; ')})${knockOn}` });
    }
    const otherCharges = otherRows.reduce((s, r) => s + r.credits_consumed, 0);
    if (otherCharges !== 0) v.push({ invariant: 'charged-non-2xx', call: first, orgId: f.orgId, detail: `non-2xx rows charged ${otherCharges}: ${otherRows.map(describeRow).join('; ')}` });
  }
  for (const rows of rowsById.values()) {
    for (const r of rows) {
      if (r.credits_consumed !== 0) v.push({ invariant: 'phantom-charge', orgId: f.orgId, detail: `a row no answer of the client carries: ${describeRow(r)}` });
    }
  }

  if (f.openHolds !== 0) v.push({ invariant: 'hold-left', orgId: f.orgId, detail: `${f.openHolds} hold(s) still open after the run settled` });
  const sum = f.ledger.reduce((s, e) => s + e.amount, 0);
  if (sum !== f.balance) v.push({ invariant: 'balance-not-ledger', orgId: f.orgId, detail: `balance ${f.balance}, Σ ledger ${sum}` });
  // Leases closed (the run settled), what they took less what they gave back is what their calls spent.
  const spentByLedger = -f.ledger.filter((e) => ['reservation', 'lease', 'release', 'charge'].includes(e.type)).reduce((s, e) => s + e.amount, 0);
  const spentByUsage = f.usage.reduce((s, r) => s + r.credits_consumed, 0);
  if (spentByLedger !== spentByUsage) v.push({ invariant: 'ledger-not-usage', orgId: f.orgId, detail: `the ledger spent ${spentByLedger}, /usage charged ${spentByUsage}` });
  return v;
}

function describeRow(r: UsageRow): string {
  return `${r.status_code} ${r.endpoint} ${r.credits_consumed} credit(s) (${r.decision}/${r.cost_reason})`;
}

/** A value safe to print: control characters escaped, long ones cut. */
export function show(s: string, max = 120): string {
  const esc = JSON.stringify(s);
  return esc.length > max ? `${esc.slice(0, max)}…(${s.length} chars)` : esc;
}
