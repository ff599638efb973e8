export * from './messaging';
export * from './kafka-messaging';
