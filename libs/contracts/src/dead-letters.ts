/**
 * Kafka headers of a dead letter on `tollgate.request-completed.v1.dlq` (its value and key are the original
 * message's bytes), and of a dead letter re-driven to its original topic by `npm run dlq -- replay`.
 */
export const DeadLetterHeaders = {
  Reason: 'x-dead-letter-reason',
  OriginalTopic: 'x-original-topic',
  OriginalPartition: 'x-original-partition',
  OriginalOffset: 'x-original-offset',
  /** The dead letter's id in metering's database (what `npm run dlq -- replay --id` takes). */
  Id: 'x-dead-letter-id',
  /**
   * On a dead letter whose original bytes were larger than a Kafka message may be: their length. The value sent is
   * cut to its first MaxDeadLetterBytes; the whole message stays in metering's dead_letters table (npm run dlq).
   */
  TruncatedFrom: 'x-dead-letter-truncated-from',
  /** On a replayed message: the id of the dead letter it re-drives. */
  ReplayOf: 'x-replay-of-dead-letter',
} as const;

/**
 * Largest dead-letter value sent to Kafka. The broker's default limit (1 MiB) is per record batch, and the relay
 * sends several dead letters to the topic's one partition together: it keeps each send under 512 KiB.
 */
export const MaxDeadLetterBytes = 128 * 1024;

/**
 * How the reason of a dead letter the gateway made begins: an event the broker can never take (larger than its
 * message limit, or refused as an invalid record). The gateway records it in its spool directory
 * (`dead-letters.jsonl`) and publishes in its place a small notice to the event's topic: the same key, the header
 * `x-dead-letter-reason` (a reason with this prefix) and, as value, a JSON summary (the ids the event carried, its
 * size and sha256, its first bytes). Metering records a message carrying that header as a dead letter with that
 * reason, without metering it. Its value is not the event, so `npm run dlq -- replay` refuses to re-drive it.
 */
export const GatewayDeadLetterReasonPrefix = 'refused at the gateway: ';

export function isGatewayDeadLetter(reason: string): boolean {
  return reason.startsWith(GatewayDeadLetterReasonPrefix);
}
