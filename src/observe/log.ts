// pino logger: JSON lines to stdout; in a terminal, one readable line per entry. Children bind route/pool once.

import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/** How each logger made here writes plain text in order with its log lines. */
const textWriters = new WeakMap<Logger, (text: string) => void>();

export function createLogger(level: string, options: { pretty?: boolean } = {}): Logger {
  const settings = { name: 'wsgate', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (options.pretty ?? process.stdout.isTTY === true) {
    // In this thread and synchronous, so text written after a log line comes after it.
    const stream = pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', singleLine: true, sync: true });
    const log = pino(settings, stream);
    textWriters.set(log, (text) => process.stdout.write(text));
    return log;
  }
  // pino's default destination (stdout, asynchronous writes), kept to queue text behind the lines it holds.
  const destination = pino.destination({ dest: 1, sync: false });
  const log = pino(settings, destination);
  textWriters.set(log, (text) => destination.write(text));
  return log;
}

/** Writes `text` to `log`'s output after every line logged so far (lines may still be queued there). */
export function writeAfterLogLines(log: Logger, text: string): void {
  (textWriters.get(log) ?? ((t: string) => process.stdout.write(t)))(text);
}
