import { ConsoleLogger } from '@nestjs/common';
import { readConfig } from './config';
import { LogLevels, RuntimeConfig, RuntimeEnv } from './shared-config';

/**
 * Structured JSON logs (one object per line) unless LOG_FORMAT=text. Secrets are never passed to it. An app passes
 * its config's logging; without it, LOG_LEVEL and LOG_FORMAT are read (and checked) here.
 */
export function createLogger(app: string, logging?: RuntimeConfig['logging']): ConsoleLogger {
  const { level, format } = logging ?? (({ LOG_LEVEL, LOG_FORMAT }) => ({ level: LOG_LEVEL, format: LOG_FORMAT }))(
    readConfig({ LOG_LEVEL: RuntimeEnv.LOG_LEVEL, LOG_FORMAT: RuntimeEnv.LOG_FORMAT }),
  );
  return new ConsoleLogger(app, { json: format !== 'text', logLevels: LogLevels.slice(LogLevels.indexOf(level)), colors: false });
}
