// YAML file → validated, normalised, deeply frozen Config. Every problem is reported with file:line:column, the
// key path and the line itself, all at once, so an operator fixes a file in one pass. An invalid file never yields
// a Config.

import { readFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { createSecureContext } from 'node:tls';
import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { z } from 'zod';
import { Errors } from '../errors.js';
import { normaliseJwt } from './auth-load.js';
import { clientCertSettings, connectionRate, redactSettings } from './edge-settings.js';
import { readerWords, unknownKeyMessage } from './messages.js';
import { configSchema, type RawConfig } from './schema.js';
import { keysAllowedAt } from './schema-walk.js';
import type {
  Config,
  ConnectionLimits,
  DirectionLimits,
  ListenerConfig,
  PoolConfig,
  RouteConfig,
  TlsFiles,
  UpstreamTls,
} from './types.js';

/** A TLS session ticket key: 16 bytes of name, 16 of HMAC secret, 16 of AES key (node:tls setTicketKeys). */
export const TICKET_KEY_BYTES = 48;

export interface ConfigIssue {
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  /** Dotted key path, e.g. `routes[0].pool`. Empty for file-level problems. */
  readonly path: string;
  readonly message: string;
  /** The text of `line`, to show under the message; undefined without a line. */
  readonly source?: string | undefined;
  /** How many characters from `column` the offending key or value spans on that line (at least 1). */
  readonly width?: number | undefined;
}

export class ConfigError extends Error {
  readonly code = Errors.CONFIG_INVALID.code;
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super(`invalid configuration:\n${issues.map(formatIssue).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** One line: `file:line:column: key.path: message`. */
export function formatIssue(i: ConfigIssue): string {
  const where = i.line === undefined ? i.file : `${i.file}:${i.line}:${i.column}`;
  return i.path ? `${where}: ${i.path}: ${i.message}` : `${where}: ${i.message}`;
}

/** formatIssue, then the offending line with a caret under the column, as compilers show it (for people). */
export function formatIssueWithSource(i: ConfigIssue): string {
  const head = formatIssue(i);
  if (i.source === undefined || i.line === undefined || i.column === undefined) return head;
  const gutter = String(i.line).length;
  // Tabs stay tabs so the caret lines up whatever the terminal's tab width.
  const pad = i.source.slice(0, i.column - 1).replace(/[^\t]/g, ' ');
  const width = Math.max(1, Math.min(i.width ?? 1, i.source.length - i.column + 1));
  const bar = `${' '.repeat(gutter + 2)}|`;
  return `${head}\n${bar}\n ${i.line} | ${i.source}\n${bar} ${pad}${'^'.repeat(width)}`;
}

type PathSegment = string | number;

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/** Why a file could not be read, in a few words ("does not exist", "permission denied"). */
export function fileProblem(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return err.message;
  }
}

/** Reads and validates a config file; throws ConfigError listing every problem. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const absolute = resolvePath(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    const problem = fileProblem(err as NodeJS.ErrnoException);
    throw new ConfigError([issueAt(absolute, undefined, '', `cannot read config file: ${problem}`)]);
  }
  return parseConfig(text, absolute, env);
}

/** A span of the source text: [start, end) offsets. */
type Range = readonly [number, number];

/** Validates config text as if it were read from `file` (relative TLS paths resolve against its folder). */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const sourceLine = (line: number) => text.split('\n')[line - 1]?.replace(/\r$/, '');
  const at = (range: Range | undefined, path: string, message: string): ConfigIssue => {
    // No node to point at only when the document is empty: its first line is where the content should be.
    const [start, end] = range ?? [0, 0];
    const p = lines.linePos(start);
    return { ...issueAt(file, p, path, message), source: sourceLine(p.line), width: end - start };
  };

  const issues: ConfigIssue[] = [];
  // The first syntax error is the real one; the ones after it are mostly the parser losing its footing.
  const syntax = doc.errors[0];
  if (syntax) {
    const message = (syntax.message.split('\n')[0] ?? syntax.message).replace(/ at line \d+, column \d+:?$/, '');
    const p = syntax.linePos?.[0];
    issues.push({ ...issueAt(file, p, '', message), source: p && sourceLine(p.line) });
  }
  if (issues.length > 0) throw new ConfigError(issues);

  substituteEnv(doc, env, (range, path, message) => issues.push(at(range, path, message)));
  if (issues.length > 0) throw new ConfigError(issues);

  const parsed = configSchema.safeParse(doc.toJS() ?? {}, { error: readerWords });
  if (!parsed.success) {
    for (const zi of parsed.error.issues) issues.push(...zodIssueToConfigIssues(doc, zi, at));
    throw new ConfigError(issues);
  }

  const config = normalise(parsed.data, file, (path, message) => {
    issues.push(at(rangeOf(doc, path), formatPath(path), message));
  });
  if (issues.length > 0) throw new ConfigError(issues);
  return deepFreeze(config);
}

function issueAt(
  file: string,
  p: { line: number; col: number } | undefined,
  path: string,
  message: string,
): ConfigIssue {
  return { file, line: p?.line, column: p?.col, path, message };
}

/** `${NAME}` in string values is replaced by the environment variable; an unset variable is an error. */
function substituteEnv(
  doc: Document,
  env: NodeJS.ProcessEnv,
  report: (range: Range | undefined, path: string, message: string) => void,
): void {
  visit(doc, {
    Scalar(_key, node, ancestors) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      node.value = node.value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, varName: string) => {
        const value = env[varName];
        if (value !== undefined) return value;
        report(rangeOfNode(node), pathOfAncestors([...ancestors, node]), `environment variable ${varName} is not set`);
        return whole;
      });
    },
  });
}

function pathOfAncestors(ancestors: readonly unknown[]): string {
  const segs: PathSegment[] = [];
  for (let i = 0; i < ancestors.length; i++) {
    const a = ancestors[i];
    if (isPair(a) && isScalar(a.key)) segs.push(String(a.key.value));
    else if (isSeq(a)) {
      const child = ancestors[i + 1];
      const idx = a.items.indexOf(child as never);
      if (idx >= 0) segs.push(idx);
    }
  }
  return formatPath(segs);
}

function rangeOfNode(node: unknown): Range | undefined {
  const range = (node as { range?: readonly number[] } | null)?.range;
  return range && range[0] !== undefined && range[1] !== undefined ? [range[0], range[1]] : undefined;
}

/**
 * Where the YAML node at `path` is (its key, with `atKey`), or its nearest existing ancestor, so a missing key
 * points at its parent.
 */
function rangeOf(doc: Document, path: readonly PropertyKey[], atKey = false): Range | undefined {
  let node: unknown = doc.contents;
  let range = rangeOfNode(doc.contents);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      range = rangeOfNode(pair.key) ?? range;
      if (atKey && i === path.length - 1) break;
      node = pair.value;
      if (isScalar(node) || isMap(node) || isSeq(node)) range = rangeOfNode(node) ?? range;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      node = item;
      range = rangeOfNode(item) ?? range;
    } else break;
  }
  return range;
}

/** Whether a union branch refused the value outright (wrong kind or value) rather than something inside it. */
function refusedOutright(branch: readonly z.core.$ZodIssue[]): boolean {
  const first = branch[0];
  return first !== undefined && first.path.length === 0 && ['invalid_type', 'invalid_value'].includes(first.code);
}

function zodIssueToConfigIssues(
  doc: Document,
  zi: z.core.$ZodIssue,
  at: (range: Range | undefined, path: string, message: string) => ConfigIssue,
): ConfigIssue[] {
  const path = zi.path as PropertyKey[];
  if (zi.code === 'unrecognized_keys') {
    const allowed = keysAllowedAt(configSchema, path);
    return zi.keys.map((k) =>
      at(rangeOf(doc, [...path, k], true), formatPath([...path, k]), unknownKeyMessage(k, allowed)),
    );
  }
  if (zi.code === 'invalid_union') {
    // A branch that accepted the kind of value knows what is wrong with it: report its first problem. When every
    // branch refused the kind, the union's own message says what would do ("must be a number or `auto`").
    const best = zi.errors.find((branch) => !refusedOutright(branch))?.[0];
    if (best) return zodIssueToConfigIssues(doc, { ...best, path: [...path, ...best.path] } as z.core.$ZodIssue, at);
  }
  if (zi.code === 'invalid_key') {
    const key = path.at(-1);
    return [
      at(rangeOf(doc, path, true), formatPath(path), `\`${String(key)}\` ${zi.issues[0]?.message ?? zi.message}`),
    ];
  }
  return [at(rangeOf(doc, path), formatPath(path), zi.message)];
}

function normalise(raw: RawConfig, file: string, report: (path: PropertyKey[], message: string) => void): Config {
  const baseDir = dirname(file);
  const readTlsFile = (file: string, path: PropertyKey[]): string | undefined => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      report(path, `cannot read TLS file ${file}: ${fileProblem(err as NodeJS.ErrnoException)}`);
      return undefined;
    }
  };
  /** The certificate and key named at `path` (an object with `cert` and `key`), checked to belong together. */
  const readTls = (certFile: string, keyFile: string, path: PropertyKey[]): TlsFiles | undefined => {
    const certPath = resolvePath(baseDir, certFile);
    const keyPath = resolvePath(baseDir, keyFile);
    // Both files are read, so a pair that is missing altogether is reported at once, each at its own key.
    const cert = readTlsFile(certPath, [...path, 'cert']);
    const key = readTlsFile(keyPath, [...path, 'key']);
    if (cert === undefined || key === undefined) return undefined;
    const files: TlsFiles = { certFile: certPath, keyFile: keyPath, cert, key };
    try {
      // What the listener will do with them: OpenSSL checks the PEM and that the key belongs to the certificate,
      // so --check and a reload catch a mismatched pair, not only a start.
      createSecureContext({ cert: files.cert, key: files.key });
    } catch (err) {
      report(
        [...path, 'cert'],
        `TLS certificate ${certPath} and key ${keyPath} are not usable together: ${(err as Error).message}`,
      );
      return undefined;
    }
    return files;
  };

  /** pools.NAME.tls.cert and .key: both or neither, checked to belong together like a listener's pair. */
  const upstreamClientCert = (
    cert: string | undefined,
    key: string | undefined,
    path: PropertyKey[],
  ): { cert: string | undefined; key: string | undefined } => {
    if (cert === undefined || key === undefined) {
      report([...path, cert === undefined ? 'cert' : 'key'], 'cert and key must be given together');
      return { cert: undefined, key: undefined };
    }
    const files = readTls(cert, key, path);
    return { cert: files?.cert, key: files?.key };
  };

  /** A ticket key file: one base64 line of exactly 48 bytes (what node:tls's setTicketKeys takes). */
  const readTicketKeys = (file: string, path: PropertyKey[]): { file: string; base64: string } | undefined => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch (err) {
      report(path, `cannot read the ticket key file ${file}: ${fileProblem(err as NodeJS.ErrnoException)}`);
      return undefined;
    }
    const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, 'base64') : undefined;
    if (bytes === undefined || bytes.length !== TICKET_KEY_BYTES) {
      report(
        path,
        `${file} must hold one base64 line of ${TICKET_KEY_BYTES} bytes (openssl rand ${TICKET_KEY_BYTES} | base64 -w0)`,
      );
      return undefined;
    }
    return { file, base64: bytes.toString('base64') };
  };

  const seenListeners = new Set<string>();
  const seenEndpoints = new Map<string, string>();
  const listeners: ListenerConfig[] = raw.listeners.map((l, i) => {
    if (seenListeners.has(l.name)) report(['listeners', i, 'name'], `duplicate listener name "${l.name}"`);
    seenListeners.add(l.name);
    const endpoint = `${l.address}:${l.port}`;
    if (l.port !== 0 && seenEndpoints.has(endpoint)) {
      report(['listeners', i, 'port'], `${endpoint} is also used by listener "${seenEndpoints.get(endpoint)}"`);
    }
    seenEndpoints.set(endpoint, l.name);
    const tls = l.tls;
    if (tls?.ciphers !== undefined) {
      // What the listener will do with it: an unusable list must fail --check and a reload, not the bind.
      try {
        createSecureContext({ ciphers: tls.ciphers });
      } catch (err) {
        report(['listeners', i, 'tls', 'ciphers'], `not a usable cipher list: ${(err as Error).message}`);
      }
    }
    const clientAddress = l.clientAddress;
    if (clientAddress.forwardedFor && (clientAddress.trustedProxies ?? []).length === 0) {
      report(
        ['listeners', i, 'clientAddress', 'forwardedFor'],
        'forwardedFor needs trustedProxies: only the forwarding headers of a trusted proxy are believed',
      );
    }
    return {
      name: l.name,
      address: l.address,
      port: l.port,
      clientAddress: {
        proxyProtocol: clientAddress.proxyProtocol,
        forwardedFor: clientAddress.forwardedFor,
        trustedProxies: clientAddress.trustedProxies ?? [],
      },
      tls: tls && {
        files: tls.cert && tls.key ? readTls(tls.cert, tls.key, ['listeners', i, 'tls']) : undefined,
        minVersion: tls.minVersion,
        ciphers: tls.ciphers,
        unknownSni: tls.unknownSni,
        sessionTicketKeys:
          tls.sessionTicketKeys === undefined
            ? undefined
            : readTicketKeys(resolvePath(baseDir, tls.sessionTicketKeys), ['listeners', i, 'tls', 'sessionTicketKeys']),
        sni: Object.entries(tls.sni).flatMap(([serverName, pair]) => {
          const files = readTls(pair.cert, pair.key, ['listeners', i, 'tls', 'sni', serverName]);
          return files ? [{ ...files, serverName: serverName.toLowerCase() }] : [];
        }),
        ...clientCertSettings(
          tls,
          (file) => readTlsFile(resolvePath(baseDir, file), ['listeners', i, 'tls', 'clientCa']),
          (m) => report(['listeners', i, 'tls', 'clientCert'], m),
        ),
      },
    };
  });

  const pools = new Map<string, PoolConfig>();
  const stickyCookies = new Map<string, string>();
  for (const [poolName, p] of Object.entries(raw.pools)) {
    const ids = new Set<string>();
    const upstreamTls: UpstreamTls | undefined = p.tls && {
      ca:
        p.tls.ca === undefined
          ? undefined
          : readTlsFile(resolvePath(baseDir, p.tls.ca), ['pools', poolName, 'tls', 'ca']),
      serverName: p.tls.serverName,
      rejectUnauthorized: !p.tls.insecureSkipVerify,
      ...(p.tls.cert === undefined && p.tls.key === undefined
        ? { cert: undefined, key: undefined }
        : upstreamClientCert(p.tls.cert, p.tls.key, ['pools', poolName, 'tls'])),
    };
    const proxyProtocol = p.proxyProtocol === 'off' ? undefined : p.proxyProtocol;
    const backends = (p.backends ?? []).map((b) => ({
      ...b,
      ...(b.tls && upstreamTls ? { tlsOptions: upstreamTls } : {}),
      ...(proxyProtocol ? { proxyProtocol } : {}),
    }));
    backends.forEach((b, i) => {
      if (ids.has(b.id)) report(['pools', poolName, 'backends', i], `duplicate backend ${b.id}`);
      ids.add(b.id);
    });
    if (p.backends && p.discovery) {
      report(['pools', poolName, 'discovery'], 'give either backends or discovery, not both');
    } else if (!p.backends && !p.discovery) {
      report(['pools', poolName], 'a pool needs backends or discovery');
    }
    const sticky = p.sticky;
    if (sticky) {
      const where = ['pools', poolName, 'sticky', 'cookie'];
      const other = stickyCookies.get(sticky.cookie);
      // The same name on one site would flip between two pools' values, each refused by the other pool.
      if (other !== undefined) report(where, `cookie "${sticky.cookie}" is also the sticky cookie of pool "${other}"`);
      stickyCookies.set(sticky.cookie, poolName);
      if (p.hashKey.kind === 'cookie' && p.hashKey.name === sticky.cookie) {
        report(where, `the hash key reads this cookie; hash on something the client sends on its first request`);
      }
      if (sticky.sameSite === 'None' && sticky.secure === false) {
        report(['pools', poolName, 'sticky', 'secure'], 'sameSite "None" needs a Secure cookie (browsers drop it)');
      }
    }
    const hc = p.healthCheck;
    pools.set(poolName, {
      name: poolName,
      hashKey: p.hashKey,
      balanceFactor: p.balanceFactor,
      backends,
      discovery: p.discovery && {
        dns: p.discovery.dns,
        port: p.discovery.port,
        scheme: p.discovery.scheme,
        tlsOptions:
          p.discovery.scheme === 'wss'
            ? {
                ca: upstreamTls?.ca,
                serverName: upstreamTls?.serverName ?? p.discovery.dns,
                rejectUnauthorized: upstreamTls?.rejectUnauthorized ?? true,
                cert: upstreamTls?.cert,
                key: upstreamTls?.key,
              }
            : undefined,
        proxyProtocol,
        intervalMs: p.discovery.interval,
        nameservers: p.discovery.nameservers,
      },
      healthCheck: hc && {
        path: hc.path,
        intervalMs: hc.interval,
        timeoutMs: hc.timeout,
        healthyThreshold: hc.healthyThreshold,
        unhealthyThreshold: hc.unhealthyThreshold,
        websocket: hc.websocket,
      },
      outlier: {
        consecutiveFailures: p.outlier.consecutiveFailures,
        ejectForMs: p.outlier.ejectFor,
        maxEjectForMs: Math.max(p.outlier.maxEjectFor, p.outlier.ejectFor),
      },
      rebalance: p.rebalance,
      panicThreshold: p.panicThreshold,
      proxyProtocol: p.proxyProtocol,
      sticky: sticky && {
        cookie: sticky.cookie,
        maxAgeMs: sticky.maxAge,
        sameSite: sticky.sameSite,
        secure: sticky.secure,
        secret: sticky.secret,
      },
    });
  }

  const globalLimits = raw.limits.perConnection;
  const seenRoutes = new Set<string>();
  const routes: RouteConfig[] = raw.routes.map((r, i) => {
    if (seenRoutes.has(r.name)) report(['routes', i, 'name'], `duplicate route name "${r.name}"`);
    seenRoutes.add(r.name);
    if (!pools.has(r.pool)) {
      const known = [...pools.keys()].join(', ') || 'none';
      report(['routes', i, 'pool'], `pool "${r.pool}" is not defined (pools: ${known})`);
    }
    // Without frame scanning there are no messages to count or limit and no boundaries to ping at.
    if (r.protocol === 'off' && (r.limits !== undefined || globalLimits !== undefined || r.keepalive !== undefined)) {
      report(
        ['routes', i, 'protocol'],
        'protocol "off" cannot enforce limits.perConnection or keepalive; use strict or lenient',
      );
    }
    return {
      name: r.name,
      host: r.match.host?.toLowerCase(),
      pathPrefix: r.match.path,
      pool: r.pool,
      origins: r.origins?.map((o) => o.toLowerCase()),
      protocol: r.protocol,
      limits: connectionLimits(globalLimits, r.limits?.perConnection),
      keepalive: r.keepalive && {
        intervalMs: r.keepalive.interval,
        timeoutMs: r.keepalive.timeout,
        client: r.keepalive.peers !== 'backend',
        backend: r.keepalive.peers !== 'client',
      },
      http: r.http,
      access: r.access && { allow: r.access.allow, deny: r.access.deny },
      forwardClientCert: r.forwardClientCert,
      jwt: normaliseJwt(r.auth, baseDir, ['routes', i, 'auth'], report),
    };
  });

  return {
    file,
    listeners,
    admin: { address: raw.admin.address, port: raw.admin.port, token: raw.admin.token },
    routes,
    pools,
    limits: {
      maxConnections: raw.limits.maxConnections,
      maxConnectionsPerIp: raw.limits.maxConnectionsPerIp,
      connectionRate: connectionRate(raw.limits.connectionRate),
    },
    timeouts: {
      handshakeMs: raw.timeouts.handshake,
      idleMs: raw.timeouts.idle,
      drainMs: raw.timeouts.drain,
      bodyMs: raw.timeouts.body,
      maxLifetimeMs: raw.timeouts.maxLifetime,
      maxLifetimeJitter: raw.timeouts.maxLifetimeJitter,
    },
    log: { level: raw.log.level, redact: redactSettings(raw.log.redact) },
    workers: raw.workers,
    workersAccept: raw.workersAccept,
    shutdown: { acceptDelayMs: raw.shutdown.acceptDelay },
  };
}

type RawPerConnection = NonNullable<RawConfig['limits']['perConnection']>;
type RawDirection = Partial<Omit<RawPerConnection, 'onExceed' | 'backendToClient'>>;

/** Route limits override global ones key by key; backendToClient overrides the shared size keys for that direction. */
function connectionLimits(global: RawPerConnection | undefined, route: RawPerConnection | undefined): ConnectionLimits {
  const merged: RawPerConnection = { ...global, ...route };
  const b2c = { ...global?.backendToClient, ...route?.backendToClient };
  const shared = { maxMessageBytes: merged.maxMessageBytes, maxFramesPerMessage: merged.maxFramesPerMessage };
  return {
    clientToBackend: directionLimits(merged),
    backendToClient: directionLimits({ ...shared, ...b2c }),
    onExceed: merged.onExceed ?? 'close',
  };
}

function directionLimits(d: RawDirection): DirectionLimits {
  const rate = d.messagesPerSecond ?? Number.POSITIVE_INFINITY;
  return {
    messagesPerSecond: rate,
    burstMessages: d.burstMessages ?? (Number.isFinite(rate) ? Math.ceil(rate * 2) : Number.POSITIVE_INFINITY),
    bytesPerSecond: d.bytesPerSecond ?? Number.POSITIVE_INFINITY,
    maxMessageBytes: d.maxMessageBytes ?? Number.POSITIVE_INFINITY,
    maxFramesPerMessage: d.maxFramesPerMessage ?? Number.POSITIVE_INFINITY,
    controlFramesPerSecond: d.controlFramesPerSecond ?? Number.POSITIVE_INFINITY,
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    const children = value instanceof Map ? value.values() : Object.values(value);
    for (const child of children) deepFreeze(child);
  }
  return value;
}
