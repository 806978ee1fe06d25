// The validated YAML (RawConfig) → the runtime's Config: paths resolved against the file's folder, TLS files read
// and checked, per-route limits merged over the global ones, defaults that depend on other keys filled in. Problems
// found here (a file that cannot be read, a key that does not match its certificate) are reported by path, like the
// schema's, so load.ts puts them at their line.

import { readFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { createSecureContext } from 'node:tls';
import { normaliseJwt } from './auth-load.js';
import { clientCertSettings, connectionRate, redactSettings } from './edge-settings.js';
import { fileProblem } from './messages.js';
import type { RawConfig } from './schema.js';
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

export function normalise(
  raw: RawConfig,
  file: string,
  report: (path: PropertyKey[], message: string) => void,
): Config {
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
