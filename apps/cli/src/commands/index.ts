import type { OperatorCommand } from './command';

/**
 * The operator programs `tollgate` dispatches to by their first word (also `npm run replay|audit|dlq`). Loaded
 * when run: they bring the database and broker clients, which the admin commands (HTTP only) start without.
 */
export const operatorCommands: Record<string, OperatorCommand> = {
  replay: async (argv, io) => (await import('./replay')).replay(argv, io),
  audit: async (argv, io) => (await import('./audit')).audit(argv, io),
  dlq: async (argv, io) => (await import('./dlq')).dlq(argv, io),
};

/** Their lines in `tollgate --help`; each prints its own with `tollgate <command> --help`. */
export const operatorUsage = `
  replay (--all | --org ID ...) [--source ledger|kafka] [--apply] [--profile FILE]
                                               rebuild projections from the ledger (or re-price the event topic)
                                               and show what differs; --apply repairs, --profile prices a what-if
  audit [--org ID ...] [--check NAME ...] [--group ID] [--read-topic] [--hold-grace SECONDS]
                                               check the database against the ledger's invariants
  dlq list [--pending]                         the dead letters metering recorded
  dlq replay (--all | --id ID ... | --offset N ... [--partition P])
                                               publish dead letters again after a fix
  (replay, audit and dlq read DATABASE_URL and KAFKA_BROKERS, not the admin API; npm run replay|audit|dlq -- ...
  are the same commands)`;
