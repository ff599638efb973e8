export * from './topics';
export * from './dead-letters';
export * from './request-completed';
export * from './headers';
export * from './proto-paths';
export * from './reservations';
