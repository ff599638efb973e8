import { ConsoleLogger, LogLevel } from '@nestjs/common';

/** Structured JSON logs (one object per line) unless LOG_FORMAT=text. Secrets are never passed to it. */
export function createLogger(app: string): ConsoleLogger {
  const level = (process.env.LOG_LEVEL || 'log') as LogLevel;
  const order: LogLevel[] = ['verbose', 'debug', 'log', 'warn', 'error', 'fatal'];
  const from = Math.max(0, order.indexOf(level));
  return new ConsoleLogger(app, { json: process.env.LOG_FORMAT !== 'text', logLevels: order.slice(from), colors: false });
}
