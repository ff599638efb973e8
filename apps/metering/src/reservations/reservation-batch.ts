import { EntityManager } from 'typeorm';
import { ReserveReply, ReserveRequest } from '@tollgate/contracts';
import { Account, lease, LedgerEntryDraft, leaseSize, priceCall, reserve, rollForward, startOfNextMonth } from '@tollgate/billing';
import { pricingOf, ProfileCatalog } from '@tollgate/ledger';
import {
  accountsPart,
  entriesParts,
  loadWindows,
  loadAccounts,
  PendingEntityHold,
  pendingEntityHolds,
  reservationKey,
  withPendingCharges,
  writeAll,
} from '@tollgate/ledger';

/** A Reserve as metering decides it: the request's fields, its instant in ms, and the lease it asks for if any. */
export type ReserveCommand = Pick<ReserveRequest, 'reservationId' | 'orgId' | 'profile' | 'method' | 'route' | 'entities'> & {
  occurredAt: number;
  /** A lease instead of a hold: up to `wanted` credits, none below `minimum`, for `gateway` (see leaseSize). */
  lease?: { wanted: number; minimum: number; gateway: string };
};

/** What a hold or lease decided: the gRPC reply itself (a lease: its credits and how long it may be drawn from). */
export type ReserveOutcome = ReserveReply;

/**
 * How long a gateway may draw from a lease: long enough that an org's steady traffic renews it about once a second
 * (its size is about a second of that traffic), short enough that credits in a lease nobody draws from come back
 * soon (the gateway ends it when its time is up: see README, "How money moves"). Never past the end of the month
 * the lease was taken in, so a lease's credits pay only for calls of their month.
 */
export const LeaseLifeMs = 5000;
/** A lease with less time than this left in its month is not granted: the gateway holds per call until midnight. */
const LeaseShortestMs = 1000;

export class UnknownOrgError extends Error {}
export class UnknownRouteError extends Error {}
/** An optimistic batch that can't be decided without locks (per-entity holds): decide it under locks instead. */
export class NeedsLocks extends Error {}

/**
 * Decides a batch of holds in one transaction (group commit): the orgs involved are locked once, in org order
 * (so batches and the consumer never deadlock), every hold is decided in arrival order in memory (a hot org's
 * holds one after another, each seeing the ones before it), and everything is written with one statement per
 * table. The caller commits once for the whole batch.
 *
 * `optimistic`: `m` is outside any transaction, and the batch costs two round trips instead of four. The accounts
 * are read without locks (with their row versions), the holds decided the same way, and everything written by one
 * statement (its own transaction) that writes nothing unless every account row it changes is still the version read
 * (`writeAll`'s `expect`). A batch that lost to a concurrent writer throws (see `optimisticConflict`) having written
 * nothing, and so does one with per-entity holds (NeedsLocks: their windows and pending holds are read under the
 * locks): the caller decides it again under locks. An account a batch only reads (a refused hold, a retried one)
 * is decided on a snapshot taken during the call, as if the call had come a moment earlier.
 *
 * Returns one outcome per command, in order: a decision, or the error that refused that command alone.
 */
export async function reserveBatch(
  m: EntityManager,
  catalog: ProfileCatalog,
  cmds: readonly ReserveCommand[],
  /** When a hold of `profile` times out, or a lease drawable for `leaseMs` from now stops being drawn from. */
  expiresAt: (profile: string, leaseMs: number) => number,
  optimistic = false,
): Promise<Array<ReserveOutcome | Error>> {
  // Per-entity holds are priced against the org's re-access windows and the entities other held calls pay for.
  const perEntity = cmds.filter((c) => c.entities.length > 0);
  if (optimistic && perEntity.length > 0) throw new NeedsLocks('per-entity holds are decided under locks');
  // Retried commands (a gateway that timed out and asked again) get the hold they already have. A reservation is
  // its id within its org (the key is (org_id, id)): the same id under another org is another hold.
  const { accounts, existing, versions } = await loadAccounts(m, [...new Set(cmds.map((c) => c.orgId))], optimistic ? 'optimistic' : 'lock', cmds.map((c) => c.reservationId));

  const pairs = perEntity.flatMap((c) => c.entities.map((e) => [c.orgId, e] as const));
  const windows = pairs.length > 0 ? await loadWindows(m, pairs.map((p) => p[0]), pairs.map((p) => p[1])) : new Map<string, Map<string, number>>();
  const pending: PendingEntityHold[] = pairs.length > 0 ? await pendingEntityHolds(m, pairs.map((p) => p[0]), pairs.map((p) => p[1])) : [];

  const touched = new Map<string, Account>();
  const entries: LedgerEntryDraft[] = [];
  const holds: Array<{ cmd: ReserveCommand; credits: number; allocation: string; payingFor: string[]; leaseMs: number }> = [];
  const outcomes: Array<ReserveOutcome | Error> = [];
  const inBatch = new Map<string, { orgId: string; credits: number }>();

  for (const cmd of cmds) {
    const locked = accounts.get(cmd.orgId);
    if (!locked) {
      outcomes.push(new UnknownOrgError(`unknown org "${cmd.orgId}"`));
      continue;
    }
    const account = touched.get(cmd.orgId) ?? locked.account;
    const key = reservationKey(cmd.orgId, cmd.reservationId);
    const already = existing.get(key);
    const earlier = inBatch.get(key);
    if (already || earlier) {
      outcomes.push({ granted: true, reservationId: cmd.reservationId, requested: (already ?? earlier)!.credits, shortfall: 0, balance: account.balance });
      continue;
    }
    if (cmd.lease) {
      const life = Math.min(LeaseLifeMs, startOfNextMonth(cmd.occurredAt) - cmd.occurredAt);
      let r;
      try {
        const available = rollForward(account, cmd.occurredAt).account.balance;
        const size = life >= LeaseShortestMs ? leaseSize(available, cmd.lease.wanted, cmd.lease.minimum) : 0;
        r = lease(account, cmd.reservationId, size, cmd.occurredAt, { gateway: cmd.lease.gateway, drawUntil: cmd.occurredAt + life });
      } catch (e) {
        outcomes.push(e as Error);
        continue;
      }
      touched.set(cmd.orgId, r.decided.account);
      entries.push(...r.decided.entries);
      const size = r.requested;
      if (size > 0) {
        inBatch.set(key, { orgId: cmd.orgId, credits: size });
        holds.push({ cmd, credits: size, allocation: JSON.stringify(r.allocation), payingFor: [], leaseMs: life });
      }
      outcomes.push({ granted: size > 0, reservationId: cmd.reservationId, requested: size, shortfall: 0, balance: r.decided.account.balance, leaseCredits: size, leaseMs: size > 0 ? life : 0 });
      continue;
    }
    const route = catalog.route(locked.profile, cmd.method, cmd.route);
    if (!route) {
      outcomes.push(new UnknownRouteError(`route "${cmd.method} ${cmd.route}" is not in profile "${locked.profile}"`));
      continue;
    }
    const pricing = pricingOf(route);
    let credits = 0;
    // What the hold pays for: per-entity holds store only the entities they charge, so one entity is paid by at
    // most one held reservation of an org at a time (later ones, in this batch too, see it pending).
    let payingFor: string[] = [];
    if (pricing.kind === 'fixed') credits = pricing.credits;
    else if (pricing.kind === 'per_entity') {
      // A company another held call of this org is paying for (its 2xx went out, its event is on the way) is
      // already paid for: re-fetching it at once is free, not held twice or refused for want of credits.
      const paid = withPendingCharges(windows.get(cmd.orgId) ?? new Map(), pending.filter((h) => h.orgId === cmd.orgId));
      const priced = priceCall(pricing, { statusCode: 200, forwarded: true, entities: cmd.entities }, paid, cmd.occurredAt);
      credits = priced.credits;
      payingFor = priced.chargedEntities;
    }
    let r;
    try {
      r = reserve(account, cmd.reservationId, credits, cmd.occurredAt);
    } catch (e) {
      outcomes.push(e as Error);
      continue;
    }
    touched.set(cmd.orgId, r.decided.account);
    entries.push(...r.decided.entries);
    if (r.granted && credits > 0) {
      inBatch.set(key, { orgId: cmd.orgId, credits });
      holds.push({ cmd, credits, allocation: JSON.stringify(r.allocation), payingFor, leaseMs: 0 });
      if (payingFor.length > 0) pending.push({ id: cmd.reservationId, orgId: cmd.orgId, entities: payingFor, occurredAt: cmd.occurredAt });
    }
    outcomes.push({ granted: r.granted, reservationId: cmd.reservationId, requested: r.requested, shortfall: r.shortfall, balance: r.decided.account.balance });
  }

  // Every write of the batch in one statement (one round trip): entries and their outbox rows, accounts, holds.
  const written = [...touched.values()];
  await writeAll(m, [
    ...entriesParts(entries),
    accountsPart(written, optimistic ? versions : undefined),
    holds.length === 0
      ? null
      : {
          sql: `INSERT INTO reservations (id, org_id, credits, allocation, route, entities, occurred_at, expires_at, status, kind, lease_ms, gateway)
                SELECT u.id, u.org_id, u.credits, u.allocation, u.route, ARRAY(SELECT jsonb_array_elements_text(u.entities)), u.occurred_at, u.expires_at, 'held',
                       CASE WHEN u.lease_ms > 0 THEN 'lease' ELSE 'hold' END, u.lease_ms, u.gateway
                  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::jsonb[], $5::text[], $6::jsonb[], $7::timestamptz[], $8::timestamptz[], $9::int[], $10::text[])
                    AS u(id, org_id, credits, allocation, route, entities, occurred_at, expires_at, lease_ms, gateway)`,
          params: [
            holds.map((h) => h.cmd.reservationId),
            holds.map((h) => h.cmd.orgId),
            holds.map((h) => h.credits),
            holds.map((h) => h.allocation),
            holds.map((h) => `${h.cmd.method} ${h.cmd.route}`),
            holds.map((h) => JSON.stringify(h.payingFor)),
            holds.map((h) => new Date(h.cmd.occurredAt).toISOString()),
            // A lease expires (for the sweeper) when the gateway must stop drawing from it.
            holds.map((h) => new Date(expiresAt(accounts.get(h.cmd.orgId)!.profile, h.leaseMs)).toISOString()),
            holds.map((h) => h.leaseMs),
            holds.map((h) => h.cmd.lease?.gateway ?? null),
          ],
        },
  ], optimistic && written.length > 0 ? { part: 'accounts_written', rows: written.length } : undefined);
  return outcomes;
}
