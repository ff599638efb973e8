import { ConflictException } from '@nestjs/common';
import { fieldError } from '@tollgate/platform';

/**
 * The record of operator commands (table admin_commands): the names, who issued a command, the ledger cause its
 * entries carry, and how a recorded command reads in `GET /admin/orgs/:org/history`. Pure: the SQL is in
 * admin-command-store.ts.
 *
 * Invariants: a command's row is written in the transaction of its effect (both or neither); a rejected command
 * writes nothing; `input` never holds a secret (an API key or its hash); every ledger entry a command appends
 * carries `cause = admin:<command id>`.
 */

export const CommandNames = [
  'create-org', 'change-plan', 'set-limits', 'create-key', 'revoke-key', 'grant-credits',
  'set-alerts', 'create-webhook', 'delete-webhook', 'resend-webhook', 'set-plan-alerts', 'rotate-webhook-secret', 'disable-webhook',
  'clear-alerts',
] as const;
export type CommandName = (typeof CommandNames)[number];

/** The actor when a request names none: whoever holds the admin token. */
export const DefaultActor = 'admin-token';
/** The request header that names the actor (the CLI sends `--actor` or $USER; the console sends `console`). */
export const ActorHeader = 'x-tollgate-actor';
export const ActorMaxLength = 128;

/**
 * Who issued a command, from the `X-Tollgate-Actor` header: absent means the admin token's holder; present, it
 * must be 1-128 characters with no control characters (it is shown to operators and written to the record).
 */
export function parseActor(header: string | string[] | undefined): string {
  if (header === undefined) return DefaultActor;
  if (Array.isArray(header)) throw fieldError('X-Tollgate-Actor', 'must be given once');
  const actor = header.trim();
  if (actor.length === 0 || actor.length > ActorMaxLength) throw fieldError('X-Tollgate-Actor', `must be 1-${ActorMaxLength} characters (got ${actor.length})`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(actor)) throw fieldError('X-Tollgate-Actor', 'must not contain control characters');
  return actor;
}

/** What a grant asks for, as its recorded `input` holds it (every grant's row has one, the migrated ones too). */
export interface GrantInput {
  amount: number;
  reason: string;
  expires_at: string | null;
}

/**
 * Whether a grant repeats the one recorded under its idempotency key: the same amount, reason and expiry (the same
 * instant, however it is written). The key binds the request it was first used with; the recorded `input` is that
 * request, so no separate hash of it is kept. The org is the key's scope (the path), so it is not compared.
 */
export function sameGrant(recorded: Record<string, unknown>, asked: GrantInput): boolean {
  const instant = (v: unknown) => (typeof v === 'string' ? Date.parse(v) : null);
  return recorded.amount === asked.amount && recorded.reason === asked.reason && instant(recorded.expires_at ?? null) === instant(asked.expires_at);
}

/**
 * 409 for an idempotency key used before with another request (or by another command): answering the first
 * request's result would tell the operator that what they asked for now was done (Stripe refuses the same way).
 */
export function idempotencyKeyReused(key: string, first: { command: string; input: Record<string, unknown> }): ConflictException {
  const firstAsked = first.command === 'grant-credits'
    ? `amount ${JSON.stringify(first.input.amount)}, reason ${JSON.stringify(first.input.reason)}, expires_at ${JSON.stringify(first.input.expires_at ?? null)}`
    : `command ${first.command}`;
  const problem = `was first used with another request (${firstAsked}); repeat that request exactly to get its result, or use a new key`;
  return new ConflictException({
    error: 'idempotency_key_reused',
    message: `idempotency_key ${JSON.stringify(key)} ${problem}`,
    idempotency_key: key,
    fields: [{ field: 'idempotency_key', problem }],
  });
}

/**
 * A command's answer carries the id of its record under this symbol: the controller sends it as the
 * `X-Tollgate-Command-Id` header (JSON.stringify skips symbol keys, so the body stays what SPEC §8 says).
 */
export const CommandIdOf = Symbol('commandId');
export const CommandIdHeader = 'X-Tollgate-Command-Id';
export type Answer<T> = T & { [CommandIdOf]: string };

export function answer<T extends object>(body: T, commandId: string): Answer<T> {
  return Object.assign(body, { [CommandIdOf]: commandId });
}

/** The ledger cause of every entry a command appends (SPEC §6: an entry's cause is an event id or an admin command id). */
export function commandCause(commandId: string): string {
  return `admin:${commandId}`;
}

/** A command as it is recorded, before it gets its place (`seq`) in the org's history. */
export interface CommandRecord {
  id: string;
  orgId: string;
  command: CommandName;
  actor: string;
  at: number;
  /** What the operator asked for, with no secret in it. */
  input: Record<string, unknown>;
  idempotencyKey: string | null;
  result: Record<string, unknown>;
  /** The ledger entries the command appended (their seqs). */
  entrySeqs: number[];
}

/** A row of admin_commands as PostgreSQL returns it. */
export interface CommandRow {
  id: string;
  seq: string;
  command: string;
  actor: string;
  issued_at: Date;
  input: Record<string, unknown>;
  idempotency_key: string | null;
  result: Record<string, unknown>;
  entry_seqs: Array<string | number>;
}

/** One command in `GET /admin/orgs/:org/history`. */
export interface HistoryItem {
  id: string;
  seq: number;
  command: string;
  actor: string;
  at: string;
  input: Record<string, unknown>;
  idempotency_key: string | null;
  result: Record<string, unknown>;
  /** The seqs of the ledger entries the command appended, oldest first (empty for commands that move no credits). */
  entries: number[];
}

export function toHistoryItem(row: CommandRow): HistoryItem {
  return {
    id: row.id,
    seq: Number(row.seq),
    command: row.command,
    actor: row.actor,
    at: row.issued_at.toISOString(),
    input: row.input,
    idempotency_key: row.idempotency_key,
    result: row.result,
    entries: row.entry_seqs.map(Number).sort((a, b) => a - b),
  };
}
