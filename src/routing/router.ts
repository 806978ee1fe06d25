// Maps a request's Host header and target to the first configured route that matches, in config order.

export interface RouteSpec {
  readonly name: string;
  /** 'example.com' or '*.example.com' (one or more extra labels); omitted matches any host. */
  readonly host?: string;
  /** Must start with '/'; '/chat' matches '/chat', '/chat/x' and '/chat?x' but not '/chatty'. */
  readonly pathPrefix: string;
}

type HostKind = 'any' | 'exact' | 'wildcard';

interface CompiledRoute<R> {
  readonly route: R;
  readonly hostKind: HostKind;
  /** Lower-case host for 'exact'; the lower-case suffix including its leading '.' for 'wildcard'. */
  readonly host: string;
  readonly pathPrefix: string;
  /** A prefix ending in '/' already marks a segment boundary. */
  readonly prefixEndsWithSlash: boolean;
}

/**
 * Routes on the raw path: no percent-decoding and no dot-segment removal, so '/chat/../admin' is under '/chat'
 * here. Callers should reject such targets with 400 first (`isSuspiciousPath`), because a backend that does
 * normalise would see a different path than the one we routed. Paths compare case-sensitively (RFC 3986 §6.2.2.1).
 */
export class Router<R extends RouteSpec> {
  private readonly routes: readonly CompiledRoute<R>[];

  /** Throws TypeError on a malformed host pattern or path prefix; config validation should have caught it. */
  constructor(routes: readonly R[]) {
    this.routes = routes.map(compileRoute);
  }

  /** First route matching both host and path, or undefined (the caller answers 404). Allocation-free. */
  match(hostHeader: string | undefined, requestTarget: string): R | undefined {
    const host = hostHeader ?? '';
    const hostStart = host.charCodeAt(0) === 0x5b /* [ */ ? 1 : 0;
    const hostEnd = hostNameEnd(host, hostStart);
    let pathEnd = requestTarget.indexOf('?');
    if (pathEnd < 0) pathEnd = requestTarget.length;
    for (const compiled of this.routes) {
      if (matchesHost(compiled, host, hostStart, hostEnd) && matchesPath(compiled, requestTarget, pathEnd)) {
        return compiled.route;
      }
    }
    return undefined;
  }
}

/**
 * True for targets a prefix router must not route: a '.' or '..' segment, raw or percent-encoded in any case
 * ('%2e%2E', '.%2e'), an encoded '/' or '\' ('%2f', '%5c') that a backend may decode into a segment boundary,
 * or a raw '\' that some servers treat as '/'. Only the path (before '?') is checked. The caller answers 400.
 */
export function isSuspiciousPath(requestTarget: string): boolean {
  let end = requestTarget.indexOf('?');
  if (end < 0) end = requestTarget.length;
  let segmentStart = true;
  for (let i = 0; i < end; i++) {
    if (segmentStart) {
      if (isDotSegmentAt(requestTarget, i, end)) return true;
      segmentStart = false;
    }
    const code = requestTarget.charCodeAt(i);
    if (code === 0x2f /* / */) {
      segmentStart = true;
    } else if (code === 0x5c /* \ */) {
      return true;
    } else if (code === 0x25 /* % */ && isEncodedSeparator(requestTarget, i, end)) {
      return true;
    }
  }
  return false;
}

/** Whether the segment starting at `from` is exactly '.' or '..', each dot raw or '%2e'. */
function isDotSegmentAt(text: string, from: number, end: number): boolean {
  let dots = 0;
  let i = from;
  while (i < end && dots <= 2) {
    if (text.charCodeAt(i) === 0x2e) {
      i++;
    } else if (isEncodedDot(text, i, end)) {
      i += 3;
    } else {
      break;
    }
    dots++;
  }
  const atSegmentEnd = i === end || text.charCodeAt(i) === 0x2f || text.charCodeAt(i) === 0x5c;
  return (dots === 1 || dots === 2) && atSegmentEnd;
}

function isEncodedDot(text: string, at: number, end: number): boolean {
  return (
    at + 2 < end &&
    text.charCodeAt(at) === 0x25 &&
    text.charCodeAt(at + 1) === 0x32 /* 2 */ &&
    (text.charCodeAt(at + 2) | 0x20) === 0x65 /* e */
  );
}

/** '%2f' / '%5c' in any case. */
function isEncodedSeparator(text: string, at: number, end: number): boolean {
  if (at + 2 >= end) return false;
  const hi = text.charCodeAt(at + 1);
  const lo = text.charCodeAt(at + 2) | 0x20;
  return (hi === 0x32 /* 2 */ && lo === 0x66) /* f */ || (hi === 0x35 /* 5 */ && lo === 0x63) /* c */;
}

function compileRoute<R extends RouteSpec>(route: R): CompiledRoute<R> {
  if (!route.pathPrefix.startsWith('/')) {
    throw new TypeError(`route ${route.name}: pathPrefix must start with '/', got '${route.pathPrefix}'`);
  }
  const { hostKind, host } = compileHost(route);
  return {
    route,
    hostKind,
    host,
    pathPrefix: route.pathPrefix,
    prefixEndsWithSlash: route.pathPrefix.endsWith('/'),
  };
}

function compileHost(route: RouteSpec): { hostKind: HostKind; host: string } {
  if (route.host === undefined) return { hostKind: 'any', host: '' };
  let host = route.host.toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.endsWith('.')) host = host.slice(0, -1); // 'example.com.' is the same name (FQDN form)
  const wildcard = host.startsWith('*.');
  const rest = wildcard ? host.slice(1) : host;
  if (rest === '' || rest === '.' || rest.includes('*') || rest.includes('/')) {
    throw new TypeError(`route ${route.name}: host must be 'name' or '*.name', got '${route.host}'`);
  }
  return wildcard ? { hostKind: 'wildcard', host: rest } : { hostKind: 'exact', host: rest };
}

/** End of the host name in a Host header: before the port, before ']' of an IPv6 literal, before a trailing dot. */
function hostNameEnd(host: string, start: number): number {
  let end: number;
  if (start === 1) {
    end = host.indexOf(']');
    if (end < 0) return -1; // unterminated IPv6 literal: matches only host-less routes
  } else {
    end = host.indexOf(':');
    if (end < 0) end = host.length;
  }
  if (end > start && host.charCodeAt(end - 1) === 0x2e /* . */) end--;
  return end;
}

function matchesHost<R>(compiled: CompiledRoute<R>, host: string, start: number, end: number): boolean {
  if (compiled.hostKind === 'any') return true;
  if (end < 0) return false;
  const wanted = compiled.host;
  const length = end - start;
  if (compiled.hostKind === 'exact') {
    return length === wanted.length && equalsLowerAscii(host, start, wanted);
  }
  // Wildcard: at least one character before the '.suffix'.
  return length > wanted.length && equalsLowerAscii(host, end - wanted.length, wanted);
}

/** host[at .. at+lower.length) equals `lower` ignoring ASCII case, without allocating a lower-cased copy. */
function equalsLowerAscii(host: string, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let code = host.charCodeAt(at + i);
    if (code >= 0x41 && code <= 0x5a) code |= 0x20;
    if (code !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function matchesPath<R>(compiled: CompiledRoute<R>, target: string, pathEnd: number): boolean {
  const prefix = compiled.pathPrefix;
  if (prefix.length > pathEnd || !target.startsWith(prefix)) return false;
  if (compiled.prefixEndsWithSlash || prefix.length === pathEnd) return true;
  return target.charCodeAt(prefix.length) === 0x2f /* / */;
}
