export * from './messaging';
export * from './kafka-messaging';
export { messageRefusal, partitionOfKey } from './kafka-publisher';
export * from './spool-log';
export * from './spooling-publisher';
export * from './dead-letter-file';
