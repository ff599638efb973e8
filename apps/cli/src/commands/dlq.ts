import { DataSource } from 'typeorm';
import { DeadLetterHeaders, isGatewayDeadLetter } from '@tollgate/contracts';
import { createKafkaMessaging, OutgoingMessage } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { DeadLetter, DeadLetterSelection, findDeadLetters, markReplayed } from '@tollgate/ledger';
import { ExitCode, FlagValues } from '../args';
import { operatorCommand, usageError } from './command';

/**
 * `tollgate dlq list [--pending] [--json]` and `tollgate dlq replay (--all | --id ID... | --offset N... [--partition P])`
 * (also `npm run dlq -- ...`)
 *
 * The dead letters metering recorded (see RequestCompletedConsumer), and re-driving them after a fix: `replay`
 * publishes each selected dead letter's original key and bytes to its original topic, so metering reads it again
 * like any other event, and marks it replayed. Replaying is safe to repeat: `event_id` is the idempotency key, so
 * an event already metered is skipped; one refused again becomes a new dead letter (at its new offset).
 * `--all` replays the dead letters not replayed yet; `--id` and `--offset` replay those, replayed before or not.
 *
 * A dead letter a gateway made (reason "refused at the gateway: ...": an event the broker can never take) holds a
 * summary of the event, not the event: it is never replayed. `--id` / `--offset` naming one exit 1 saying so; `--all`
 * leaves them out and says how many.
 */
export type Command =
  | { command: 'list'; pending: boolean; json: boolean }
  | { command: 'replay'; selection: DeadLetterSelection };

export const usage = `usage: tollgate dlq list [--pending] [--json]
       tollgate dlq replay (--all | --id ID [--id ID ...] | --offset N [--offset N ...] [--partition P])
       (npm run dlq -- ... is the same)
  list --pending   only the dead letters not replayed yet; --json for machines
  replay --all     every dead letter not replayed yet (those refused at the gateway left out)
  replay --id / --offset [--partition]   these, replayed before or not
Exit codes: 0 done, 1 a dead letter named that does not exist or cannot be replayed, 2 bad arguments.
`;

export const flags = {
  pending: { type: 'boolean' },
  all: { type: 'boolean' },
  id: { type: 'string', multiple: true, needs: 'a whole number' },
  offset: { type: 'string', multiple: true, needs: 'a whole number' },
  partition: { type: 'string', needs: 'a whole number' },
} as const;

/** The command, or a usage error (CliError) saying what is unclear. */
export function parseDlqArgs(values: FlagValues<typeof flags> & { json?: boolean; help?: boolean }, positionals: string[]): Command {
  const [command, ...rest] = positionals;
  if (command === undefined) throw usageError('say list or replay');
  if (command !== 'list' && command !== 'replay') throw usageError(`unknown command "${command}"`);
  if (rest.length > 0) throw usageError(`unknown argument "${rest[0]}"`);
  const given = (Object.keys(values) as Array<keyof typeof values>).filter((k) => values[k] !== undefined);
  const allowed: string[] = command === 'list' ? ['pending', 'json', 'help'] : ['all', 'id', 'offset', 'partition', 'help'];
  const stray = given.find((k) => !allowed.includes(k));
  if (stray) throw usageError(`unknown argument "--${stray}"`);
  if (command === 'list') return { command, pending: values.pending ?? false, json: values.json ?? false };
  for (const name of ['id', 'offset', 'partition'] as const) {
    const v = values[name];
    for (const x of v === undefined ? [] : Array.isArray(v) ? v : [v]) if (!/^\d{1,18}$/.test(x)) throw usageError(`--${name} needs a whole number`);
  }
  const all = values.all ?? false;
  const ids = values.id ?? [];
  const offsets = values.offset ?? [];
  const partition = values.partition === undefined ? undefined : Number(values.partition);
  if (all && (ids.length > 0 || offsets.length > 0)) throw usageError('--all replays every pending dead letter: give it alone, or pick with --id / --offset');
  if (!all && ids.length === 0 && offsets.length === 0) throw usageError('say which dead letters: --all, --id ID or --offset N');
  if (partition !== undefined && offsets.length === 0) throw usageError('--partition narrows --offset: give an --offset too');
  const selection: DeadLetterSelection = all ? { pending: true } : { ids: ids.length ? ids : undefined, offsets: offsets.length ? offsets : undefined, partition };
  return { command, selection };
}

function status(d: DeadLetter): string {
  if (d.replayedAt) return 'replayed';
  return d.sentAt ? 'sent' : 'unsent';
}

function asJson(d: DeadLetter) {
  return {
    id: d.id,
    topic: d.topic,
    partition: d.partition,
    offset: d.offset,
    status: status(d),
    reason: d.reason,
    created_at: d.createdAt.toISOString(),
    sent_at: d.sentAt?.toISOString() ?? null,
    replayed_at: d.replayedAt?.toISOString() ?? null,
    replays: d.replays,
    key: d.key?.toString('utf8') ?? null,
    /** The original bytes as UTF-8 (lossy where they are not), and how many there were. */
    value: d.value?.toString('utf8') ?? null,
    bytes: d.value?.length ?? 0,
  };
}

export async function list(ds: DataSource, pending: boolean, json: boolean, out: (s: string) => void): Promise<number> {
  const letters = await findDeadLetters(ds.manager, { pending });
  if (json) {
    out(`${JSON.stringify(letters.map(asJson), null, 2)}\n`);
    return 0;
  }
  out('id\ttopic\tpartition\toffset\tstatus\tcreated_at\treason\n');
  for (const d of letters) out(`${d.id}\t${d.topic}\t${d.partition}\t${d.offset}\t${status(d)}\t${d.createdAt.toISOString()}\t${d.reason}\n`);
  out(`dlq: ${letters.length} dead letter(s)${pending ? ' not replayed yet' : ''}\n`);
  return 0;
}

/** Publishes the selection to its original topics, then marks it replayed (a crash in between replays again: harmless). */
export async function replay(
  ds: DataSource,
  selection: DeadLetterSelection,
  publish: (topic: string, messages: OutgoingMessage[]) => Promise<void>,
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  const letters = await findDeadLetters(ds.manager, selection);
  const missing = (selection.ids ?? []).filter((id) => !letters.some((d) => d.id === id));
  if (missing.length > 0) {
    err(`dlq: no dead letter with id ${missing.join(', ')}; nothing replayed\n`);
    return ExitCode.found;
  }
  if (letters.length === 0) {
    if (selection.pending) {
      out('dlq: nothing to replay\n');
      return 0;
    }
    err('dlq: no dead letter at those offsets; nothing replayed\n');
    return ExitCode.found;
  }
  const unreplayable = letters.filter((d) => isGatewayDeadLetter(d.reason));
  if (unreplayable.length > 0 && !selection.pending) {
    err(
      `dlq: ${unreplayable.map((d) => d.id).join(', ')}: refused at the gateway (the broker can never take the event); ` +
        `its value is a summary (ids, size, sha256, first bytes), not the event, so it cannot be replayed: bill the call from its ids; nothing replayed\n`,
    );
    return ExitCode.found;
  }
  const replayable = letters.filter((d) => !isGatewayDeadLetter(d.reason));
  if (unreplayable.length > 0) err(`dlq: left out ${unreplayable.length} dead letter(s) refused at the gateway: they hold a summary, not the event, and cannot be replayed\n`);
  if (replayable.length === 0) {
    out('dlq: nothing to replay\n');
    return 0;
  }
  const byTopic = new Map<string, DeadLetter[]>();
  for (const d of replayable) byTopic.set(d.topic, [...(byTopic.get(d.topic) ?? []), d]);
  for (const [topic, group] of byTopic) {
    await publish(
      topic,
      group.map((d) => ({ key: d.key?.toString('utf8') ?? '', value: d.value ?? Buffer.alloc(0), headers: { [DeadLetterHeaders.ReplayOf]: d.id } })),
    );
    await markReplayed(ds.manager, group.map((d) => d.id));
    for (const d of group) out(`replayed ${d.id}\t${topic}[${d.partition}]@${d.offset}\t${d.reason}\n`);
  }
  out(`dlq: replayed ${replayable.length} dead letter(s)\n`);
  return 0;
}

export const dlq = operatorCommand('dlq', usage, flags, async (values, positionals, io, config) => {
  const cmd = parseDlqArgs(values, positionals);
  const ds = await connectDatabase({ url: config.databaseUrl, migrate: false, poolSize: 2 });
  try {
    if (cmd.command === 'list') return await list(ds, cmd.pending, cmd.json, io.out);
    const messaging = createKafkaMessaging({ clientId: 'tollgate-dlq', ...config.kafka });
    try {
      const publisher = await messaging.publisher();
      return await replay(ds, cmd.selection, (topic, messages) => publisher.publish(topic, messages), io.out, io.err);
    } finally {
      await messaging.close();
    }
  } finally {
    await ds.destroy();
  }
});
