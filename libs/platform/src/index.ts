export * from './env';
export * from './metrics';
export * from './logger';
export * from './health.controller';
export * from './validation';
export * from './grpc';
export * from './http-app';
export * from './bootstrap';
