import { createHash, timingSafeEqual } from 'node:crypto';
import { Metadata, ServerInterceptingCall, ServerInterceptor, status } from '@grpc/grpc-js';
import { GrpcOptions, Transport } from '@nestjs/microservices';

/** The proto-loader options every Tollgate gRPC server and client uses: int64 as JS numbers, defaults filled. */
export const grpcLoaderOptions = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

export interface GrpcServerAuth {
  /** Every call must carry `authorization: Bearer <token>`; others get UNAUTHENTICATED before any handler runs. */
  bearerToken: string;
}

export function grpcServerOptions(pkg: string, protoPath: string, url: string, auth?: GrpcServerAuth): GrpcOptions {
  return {
    transport: Transport.GRPC,
    options: {
      package: pkg,
      protoPath,
      url,
      loader: grpcLoaderOptions,
      // Nest hands channelOptions to grpc-js's Server, whose interceptors see every call of every service.
      ...(auth ? { channelOptions: { interceptors: [requireBearerToken(auth.bearerToken)] } } : {}),
    },
  };
}

/** The metadata a client sends with each call to a server that requires `token`. */
export function bearerMetadata(token: string): Metadata {
  const m = new Metadata();
  m.set('authorization', `Bearer ${token}`);
  return m;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * A server interceptor that refuses, with UNAUTHENTICATED, every call whose `authorization` metadata is not
 * `Bearer <token>`. Compared as SHA-256 digests in constant time, so timing says nothing about the token.
 */
export function requireBearerToken(token: string): ServerInterceptor {
  if (!token) throw new Error('requireBearerToken: the token must not be empty');
  const expected = digest(token);
  return (_method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, pass) => {
            const header = metadata.get('authorization')[0];
            const presented = typeof header === 'string' ? /^Bearer (.+)$/i.exec(header)?.[1] : undefined;
            if (presented !== undefined && timingSafeEqual(digest(presented), expected)) return pass(metadata);
            call.sendStatus({
              code: status.UNAUTHENTICATED,
              details: presented === undefined ? 'missing authorization metadata (Bearer <TOLLGATE_INTERNAL_TOKEN>)' : 'invalid internal token',
              metadata: new Metadata(),
            });
          },
        }),
    });
}
