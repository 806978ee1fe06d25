// What a listener's servers report as errors, sorted for the operator: accept failures (out of file descriptors)
// reported at most once a second however many come, TLS handshake failures told apart from HTTP parse errors, and
// each parse error mapped to its catalogue entry (431, 408, 400).

import { type CatalogueEntry, Errors } from '../errors.js';

/** Accept errors come in bursts (every pending connection fails alike): one log line per second at most. */
const ACCEPT_ERROR_REPORT_INTERVAL_MS = 1000;
let lastAcceptErrorReport = 0;
let acceptErrorsSinceReport = 0;

export function reportAcceptError(
  err: NodeJS.ErrnoException,
  report: (err: NodeJS.ErrnoException, logCount: number | undefined) => void,
): void {
  acceptErrorsSinceReport++;
  const now = Date.now();
  if (now - lastAcceptErrorReport < ACCEPT_ERROR_REPORT_INTERVAL_MS) {
    report(err, undefined);
    return;
  }
  report(err, acceptErrorsSinceReport);
  lastAcceptErrorReport = now;
  acceptErrorsSinceReport = 0;
}

export function emitAcceptWarning(err: NodeJS.ErrnoException, logCount: number | undefined): void {
  if (logCount === undefined) return;
  process.emitWarning(`accept failed ${logCount} time(s): ${err.code ?? err.message}`, { code: 'WSG_ACCEPT_ERROR' });
}

/** A failed or timed-out TLS handshake (node's own timeout, or an OpenSSL error such as a refused version). */
export function isTlsHandshakeError(err: NodeJS.ErrnoException & { library?: string }): boolean {
  return (
    err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || err.library !== undefined || err.code?.startsWith('ERR_SSL_') === true
  );
}

/** The catalogue entry for an error node:http reports on a client connection before a request reached us. */
export function clientErrorEntry(err: NodeJS.ErrnoException): CatalogueEntry {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return Errors.HEADERS_TOO_LARGE;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_TIMEOUT':
      return Errors.HANDSHAKE_TIMEOUT;
    default:
      return Errors.BAD_REQUEST;
  }
}
