export * from './advisory-locks';
export * from './data-source';
export * from './api-keys';
export * from './authenticator';
export * from './database-failures';
