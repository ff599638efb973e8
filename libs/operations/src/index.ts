/**
 * What the operator's tools do, apart from how they are invoked (apps/cli/src/commands): replaying the ledger or
 * the event topic (replay/), pricing history under another profile (what-if), and checking the database against
 * the ledger's invariants (audit/). Only apps/cli imports this lib: the metering service never runs it
 * (.dependency-cruiser.js: operator-code-outside-the-service).
 */
export * from './replay/diff';
export * from './replay/ledger-replay';
export { kafkaReplay } from './replay/kafka-replay';
export type { KafkaReplayDeps, KafkaReplayOptions, KafkaReplayReport } from './replay/kafka-replay';
export type { Difference as KafkaDifference, WhatIfLine as KafkaWhatIfLine } from './replay/kafka-replay';
export { CommandQueue } from './replay/recorded-commands';
export type { RecordedCommand } from './replay/recorded-commands';
export * from './replay/scratch-schema';
export * from './replay/what-if';
export * from './replay/what-if-profile';
export * from './audit/run-audit';
export * from './audit/violation';
export { OffsetsScope } from './audit/offsets';
