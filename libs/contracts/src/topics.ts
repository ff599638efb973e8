/** Kafka topic names: the one place they are spelled. */
export const Topics = {
  RequestCompleted: 'tollgate.request-completed.v1',
  RequestCompletedDeadLetter: 'tollgate.request-completed.v1.dlq',
  Ledger: 'tollgate.ledger.v1',
} as const;

export type TopicName = (typeof Topics)[keyof typeof Topics];

/** Partitions the project creates each topic with; metering scales out to this many consumers. */
export const TopicPartitions: Record<TopicName, number> = {
  [Topics.RequestCompleted]: 6,
  [Topics.RequestCompletedDeadLetter]: 1,
  [Topics.Ledger]: 6,
};

/** The consumer group of the metering service. */
export const MeteringConsumerGroup = 'tollgate-metering';
