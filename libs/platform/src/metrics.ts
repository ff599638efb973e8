import { Counter, Histogram, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per process; every app exposes it on GET /metrics. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

export const httpRequests = new Counter({
  name: 'tollgate_http_requests_total',
  help: 'HTTP requests answered, by app, route and status',
  labelNames: ['app', 'route', 'status'] as const,
  registers: [registry],
});

export const decisions = new Counter({
  name: 'tollgate_decisions_total',
  help: 'Gateway decisions by profile and outcome',
  labelNames: ['profile', 'outcome'] as const,
  registers: [registry],
});

export const creditsCharged = new Counter({
  name: 'tollgate_credits_charged_total',
  help: 'Credits charged by metering',
  registers: [registry],
});

export const eventsMetered = new Counter({
  name: 'tollgate_events_metered_total',
  help: 'request-completed events by result (metered, duplicate, dead_lettered)',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const ledgerAppendSeconds = new Histogram({
  name: 'tollgate_ledger_append_seconds',
  help: 'Time to append one Kafka batch (entries, projections, offsets) in one transaction',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  registers: [registry],
});

export const holdsKeptPastTimeout = new Gauge({
  name: 'tollgate_reservations_kept_past_timeout',
  help: 'Credit holds past their timeout that metering keeps because the consumer has not read every event that could settle them',
  registers: [registry],
});

export const holdsDecided = new Counter({
  name: 'tollgate_holds_total',
  help: "Credit holds metering's reservations decided, by outcome (granted, refused for want of credits, failed)",
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const holdBatches = new Counter({
  name: 'tollgate_hold_batches_total',
  help:
    'Group commits of credit holds, by how they were written: optimistic (read without locks, one guarded statement), ' +
    'locked_after_conflict (lost to a concurrent writer, then decided under row locks), locked (per-entity holds, always under locks)',
  labelNames: ['path'] as const,
  registers: [registry],
});

export const consumerLag = new Gauge({
  name: 'tollgate_consumer_lag_messages',
  help: 'Messages of tollgate.request-completed.v1 not yet committed by metering',
  registers: [registry],
});

export const consumerOffsetResets = new Counter({
  name: 'tollgate_consumer_offset_resets_total',
  help:
    "Partitions whose stored offset the log no longer holds, moved to the log's start, by topic and reason: past_log_end " +
    '(the log was replaced; read again from its start, event ids dedupe) or before_log_start (retention removed events never read)',
  labelNames: ['topic', 'reason'] as const,
  registers: [registry],
});

export const consumerStalledPartitions = new Gauge({
  name: 'tollgate_consumer_stalled_partitions',
  help: "Partitions assigned to this metering whose stored offset is not at the log's end and has not moved for METERING_STALL_SECONDS",
  registers: [registry],
});

export const dependencyErrors = new Counter({
  name: 'tollgate_dependency_unavailable_total',
  help: 'Calls refused with 503 because a dependency was unavailable, by app and dependency (postgres, metering, kafka, redis, query)',
  labelNames: ['app', 'dependency'] as const,
  registers: [registry],
});

export const spoolBytes = new Gauge({
  name: 'tollgate_gateway_spool_bytes',
  help: "Bytes in the gateway's event spool on disk (events the broker has not acknowledged yet, and drained ones awaiting deletion)",
  registers: [registry],
});

export const spooledEvents = new Counter({
  name: 'tollgate_gateway_spooled_events_total',
  help: 'Events the gateway wrote to its spool because the broker did not acknowledge them in time',
  registers: [registry],
});

export const gatewayDeadLetters = new Counter({
  name: 'tollgate_gateway_dead_letters_total',
  help: "Events the gateway dead-lettered because the broker can never take them, by reason (too_large: over KAFKA_MAX_MESSAGE_BYTES or the broker's limit; invalid_record)",
  labelNames: ['reason'] as const,
  registers: [registry],
});

export const webhookBacklog = new Gauge({
  name: 'tollgate_webhook_backlog_messages',
  help: 'Webhook messages not yet delivered (all endpoints, disabled ones included)',
  registers: [registry],
});

export const webhookOldestUndelivered = new Gauge({
  name: 'tollgate_webhook_oldest_undelivered_seconds',
  help: 'Age of the oldest webhook message not yet delivered to an enabled endpoint (0 when none)',
  registers: [registry],
});

export const webhookEndpointsDisabled = new Gauge({
  name: 'tollgate_webhook_endpoints_disabled',
  help: 'Webhook endpoints disabled after failing for too long',
  registers: [registry],
});

export const webhookAttempts = new Counter({
  name: 'tollgate_webhook_attempts_total',
  help: 'Webhook delivery attempts, by outcome (delivered, failed)',
  labelNames: ['outcome'],
  registers: [registry],
});
