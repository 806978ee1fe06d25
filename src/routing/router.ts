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
 * ('%2e%2E', '.%2e'), also with a path parameter ('..;', the Tomcat/Jetty trick), an encoded '/' or '\' ('%2f',
 * '%5c') that a backend may decode into a segment boundary, a raw '\' that some servers treat as '/', or a
 * percent-encoded unreserved character ('%61' for 'a'), which RFC 3986 §6.2.2.2 makes the same path as its plain
 * form, so '/%61dmin' would slip past a route for '/admin' (and its Origin list) into a catch-all, to a backend
 * that decodes it. Clients never encode unreserved characters. Only the path (before '?') is checked. The caller
 * answers 400.
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
    } else if (
      code === 0x25 /* % */ &&
      (isEncodedSeparator(requestTarget, i, end) || isEncodedUnreserved(requestTarget, i, end))
    ) {
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
  const next = text.charCodeAt(i);
  const atSegmentEnd = i === end || next === 0x2f || next === 0x5c || next === 0x3b; /* / \ ; */
  return (dots === 1 || dots === 2) && atSegmentEnd;
}

/** '%XX' decoding to ALPHA, DIGIT, '-', '.', '_' or '~' (a '%2e' dot is judged as part of its segment). */
function isEncodedUnreserved(text: string, at: number, end: number): boolean {
  if (at + 2 >= end) return false;
  const value = Number.parseInt(text.slice(at + 1, at + 3), 16);
  if (Number.isNaN(value) || value === 0x2e) return false;
  return (
    (value >= 0x30 && value <= 0x39) ||
    (value >= 0x41 && value <= 0x5a) ||
    (value >= 0x61 && value <= 0x7a) ||
    value === 0x2d ||
    value === 0x5f ||
    value === 0x7e
  );
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
  const problem = routeHostProblem(route.host);
  if (problem !== undefined) throw new TypeError(`route ${route.name}: ${problem}`);
  const host = normalisedRouteHost(route.host);
  return host.startsWith('*.') ? { hostKind: 'wildcard', host: host.slice(1) } : { hostKind: 'exact', host };
}

/** Lower case, IPv6 brackets and the FQDN's trailing dot removed ('Example.com.' is 'example.com'). */
function normalisedRouteHost(pattern: string): string {
  let host = pattern.toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.endsWith('.')) host = host.slice(0, -1);
  return host;
}

/**
 * Why `pattern` cannot be a route's match.host, or undefined if it can: 'name', '*.name' or an IP address, without
 * a port (requests match whatever port their Host names). Config validation calls this, so the Router never throws.
 */
export function routeHostProblem(pattern: string): string | undefined {
  const host = normalisedRouteHost(pattern);
  const rest = host.startsWith('*.') ? host.slice(2) : host;
  if (rest === '' || rest.includes('*') || !/^[a-z0-9._~!$&'()+,;=:%-]+$/.test(rest)) {
    return `host must be 'name' or '*.name', got '${pattern}'`;
  }
  // One colon outside brackets is a port (several make an IPv6 address).
  if (!pattern.startsWith('[') && host.indexOf(':') >= 0 && host.indexOf(':') === host.lastIndexOf(':')) {
    return `host must not have a port (any port matches), got '${pattern}'`;
  }
  return undefined;
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
