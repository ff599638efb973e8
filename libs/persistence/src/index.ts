export * from './data-source';
export * from './api-keys';
export * from './authenticator';
