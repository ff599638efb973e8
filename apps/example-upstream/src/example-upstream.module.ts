import { Module } from '@nestjs/common';
import { HealthController, ReadinessChecks } from '@tollgate/platform';
import { BeatpassController } from './beatpass.controller';
import { TraceController } from './trace.controller';
import { TrackyardController } from './trackyard.controller';
import { TraktController } from './trakt.controller';

/**
 * Wiring only: one controller per seed profile, each under that profile's base path, all in one
 * process so any profile's gateway can forward to it. Readiness has no checks: it has no dependencies.
 */
@Module({
  controllers: [HealthController, TrackyardController, BeatpassController, TraktController, TraceController],
  providers: [{ provide: ReadinessChecks, useValue: [] }],
})
export class ExampleUpstreamModule {}
