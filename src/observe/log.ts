// pino logger: JSON lines to stdout; in a terminal, one readable line per entry. Children bind route/pool once.

import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export function createLogger(level: string, options: { pretty?: boolean } = {}): Logger {
  const settings = { name: 'wsgate', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (!(options.pretty ?? process.stdout.isTTY === true)) return pino(settings);
  // In this thread and synchronous, so what the CLI prints after a log line (the demo banner) comes after it.
  const stream = pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', singleLine: true, sync: true });
  return pino(settings, stream);
}
