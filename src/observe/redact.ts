// What log lines keep of a request target (log.redact): query values are secrets often enough (`?token=…`,
// `?access_token=…`) that a line carrying a path or URL shows the parameter names only. Every log call that writes
// a request target goes through targetForLog; header values (Cookie, Authorization) are never written to logs.

/** log.redact: what log lines hide. */
export interface RedactConfig {
  readonly query: boolean;
  readonly cookie: boolean;
  readonly authorization: boolean;
}

/** Log lines cut request targets to this many characters. */
export const LOGGED_PATH_CHARS = 200;

/** What a redacted query value is replaced with. */
export const REDACTED = '…';

/** `target` as a log line may show it: query values replaced by "…" (names kept) when `redact.query`, then cut. */
export function targetForLog(target: string, redact: RedactConfig): string {
  const question = target.indexOf('?');
  if (!redact.query || question < 0) return target.slice(0, LOGGED_PATH_CHARS);
  let out = target.slice(0, question + 1);
  const parts = target.slice(question + 1).split('&');
  for (let i = 0; i < parts.length && out.length <= LOGGED_PATH_CHARS; i++) {
    const part = parts[i] as string;
    const eq = part.indexOf('=');
    out += `${i === 0 ? '' : '&'}${eq < 0 ? part : `${part.slice(0, eq)}=${REDACTED}`}`;
  }
  return out.slice(0, LOGGED_PATH_CHARS);
}
