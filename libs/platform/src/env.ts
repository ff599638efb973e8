import { readConfig } from './config';
import { AdminTokenEnv, adminTokenOf, InternalTokenEnv, internalTokenOf, RuntimeEnv, Token } from './shared-config';

/** The admin token (apps read it through their config; this is for code that has no config of its own). */
export function adminToken(env: NodeJS.ProcessEnv = process.env): Token {
  return adminTokenOf(readConfig({ NODE_ENV: RuntimeEnv.NODE_ENV, ...AdminTokenEnv }, env));
}

/** The internal gRPC token, read the same way as the apps' configs read it. */
export function internalToken(env: NodeJS.ProcessEnv = process.env): Token {
  return internalTokenOf(readConfig({ NODE_ENV: RuntimeEnv.NODE_ENV, ...InternalTokenEnv }, env));
}
