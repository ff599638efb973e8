import { join } from 'node:path';

/** gRPC package names and the `.proto` files that define them (shipped beside the compiled code). */
export const ProtoPackages = { Metering: 'tollgate.metering.v1', Query: 'tollgate.query.v1' } as const;

const protoDir = join(__dirname, 'proto');
export const ProtoFiles = {
  Metering: join(protoDir, 'metering.proto'),
  Query: join(protoDir, 'query.proto'),
} as const;
