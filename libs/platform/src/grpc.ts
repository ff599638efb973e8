import { GrpcOptions, Transport } from '@nestjs/microservices';

/** The proto-loader options every Tollgate gRPC server and client uses: int64 as JS numbers, defaults filled. */
export const grpcLoaderOptions = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

export function grpcServerOptions(pkg: string, protoPath: string, url: string): GrpcOptions {
  return { transport: Transport.GRPC, options: { package: pkg, protoPath, url, loader: grpcLoaderOptions } };
}
