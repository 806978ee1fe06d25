// Config loading: every problem names the file, line, column and key path; valid files normalise and freeze.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, type ConfigIssue, formatIssue, loadConfig, parseConfig } from '../../src/config/load.js';
import { makeCert } from '../helpers/certs.js';

const FILE = '/etc/wsgate/config.yaml';

const VALID = `listeners:
  - { name: public, address: 127.0.0.1, port: 8080 }
routes:
  - name: chat
    match: { host: Chat.Example.com, path: /chat }
    pool: chat
    origins: ["https://Chat.Example.com"]
pools:
  chat:
    hashKey: header:X-User-Id
    balanceFactor: 1.25
    backends:
      - ws://127.0.0.1:3001
      - { url: "ws://[::1]:3002", weight: 2 }
limits:
  maxConnections: 100
  perConnection: { messagesPerSecond: 50, maxMessageBytes: 1MiB }
timeouts: { handshake: 250ms, idle: 2m, drain: 30s }
`;

function issuesOf(text: string, env: NodeJS.ProcessEnv = {}): ConfigIssue[] {
  try {
    parseConfig(text, FILE, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).issues];
  }
  throw new Error('expected the config to be rejected');
}

describe('valid config', () => {
  it('normalises units, hosts, hash keys and backends, and fills defaults', () => {
    const c = parseConfig(VALID, FILE);
    expect(c.timeouts).toEqual({
      handshakeMs: 250,
      idleMs: 120_000,
      drainMs: 30_000,
      bodyMs: 10_000,
      maxLifetimeMs: 0,
      maxLifetimeJitter: 0.1,
    });
    expect(c.routes[0]?.host).toBe('chat.example.com');
    expect(c.routes[0]?.origins).toEqual(['https://chat.example.com']);
    expect(c.routes[0]?.protocol).toBe('strict');
    expect(c.routes[0]?.limits.clientToBackend.messagesPerSecond).toBe(50);
    expect(c.routes[0]?.limits.clientToBackend.maxMessageBytes).toBe(1024 * 1024);
    expect(c.routes[0]?.limits.backendToClient.maxMessageBytes).toBe(1024 * 1024);
    expect(c.routes[0]?.limits.backendToClient.messagesPerSecond).toBe(Number.POSITIVE_INFINITY);
    const pool = c.pools.get('chat');
    expect(pool?.hashKey).toEqual({ kind: 'header', name: 'x-user-id' });
    expect(pool?.backends).toEqual([
      { id: 'ws://127.0.0.1:3001', host: '127.0.0.1', port: 3001, tls: false, weight: 1 },
      { id: 'ws://[::1]:3002', host: '::1', port: 3002, tls: false, weight: 2 },
    ]);
    expect(c.admin).toEqual({ address: '127.0.0.1', port: 8077, token: undefined });
    expect(c.limits).toEqual({ maxConnections: 100, maxConnectionsPerIp: 1000 });
  });

  it('is deeply frozen', () => {
    const c = parseConfig(VALID, FILE);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.routes[0]?.limits.clientToBackend)).toBe(true);
    expect(Object.isFrozen(c.pools.get('chat')?.backends[0])).toBe(true);
  });

  it('substitutes environment variables', () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the config syntax under test
    const c = parseConfig(VALID.replace('ws://127.0.0.1:3001', 'ws://${BACKEND}:3001'), FILE, {
      BACKEND: 'chat-1.internal',
    });
    expect(c.pools.get('chat')?.backends[0]?.host).toBe('chat-1.internal');
  });

  it('accepts the shipped example', () => {
    const c = loadConfig(join(import.meta.dirname, '..', '..', 'config.example.yaml'));
    expect(c.routes.map((r) => r.name)).toEqual(['chat', 'echo']);
    expect(c.listeners[1]?.tls?.files).toBeUndefined();
  });
});

describe('errors name file, line, column and key path', () => {
  it('an unknown key', () => {
    const issues = issuesOf(VALID.replace('    pool: chat', '    pool: chat\n    pooll: chat'));
    expect(issues).toHaveLength(1);
    expect(formatIssue(issues[0] as ConfigIssue)).toBe(
      `${FILE}:7:5: routes[0].pooll: unknown key \`pooll\`; did you mean \`pool\`?`,
    );
  });

  it('a wrong type', () => {
    const [issue] = issuesOf(VALID.replace('port: 8080', 'port: eighty'));
    expect(issue).toMatchObject({ line: 2, path: 'listeners[0].port' });
    expect(issue?.message).toMatch(/number/);
  });

  it('a bad unit', () => {
    const [issue] = issuesOf(VALID.replace('idle: 2m', 'idle: 2 fortnights'));
    expect(issue).toMatchObject({ line: 18, path: 'timeouts.idle' });
    expect(issue?.message).toContain('is not a duration');
  });

  it('a bad size', () => {
    const [issue] = issuesOf(VALID.replace('maxMessageBytes: 1MiB', 'maxMessageBytes: 1 MegaByte'));
    expect(issue).toMatchObject({ line: 17, path: 'limits.perConnection.maxMessageBytes' });
  });

  it('a route naming a missing pool', () => {
    const [issue] = issuesOf(VALID.replace('    pool: chat', '    pool: chatt'));
    expect(issue).toMatchObject({ line: 6, column: 11, path: 'routes[0].pool' });
    expect(issue?.message).toBe('pool "chatt" is not defined (pools: chat)');
  });

  it('duplicate route names and duplicate YAML keys', () => {
    const dup = VALID.replace('routes:\n', 'routes:\n  - { name: chat, match: { path: / }, pool: chat }\n');
    const [issue] = issuesOf(dup);
    expect(issue).toMatchObject({ path: 'routes[1].name' });
    expect(issue?.message).toContain('duplicate route name');
    const [yamlIssue] = issuesOf(
      VALID.replace('  maxConnections: 100', '  maxConnections: 100\n  maxConnections: 200'),
    );
    expect(yamlIssue?.line).toBe(17);
    expect(yamlIssue?.message).toMatch(/unique|duplicate/i);
  });

  it('an unreadable TLS file', () => {
    const text = VALID.replace(
      '  - { name: public, address: 127.0.0.1, port: 8080 }',
      '  - { name: public, address: 127.0.0.1, port: 8080 }\n  - name: tls\n    port: 8443\n    tls: { cert: ./missing.crt, key: ./missing.key }',
    );
    const [issue] = issuesOf(text);
    expect(issue).toMatchObject({ line: 5, path: 'listeners[1].tls.cert' });
    expect(issue?.message).toContain('cannot read TLS file');
    expect(issue?.message).toContain('/etc/wsgate/missing.crt');
  });

  it('a certificate and a key that do not belong together', () => {
    const a = makeCert('pair-a.test');
    const b = makeCert('pair-b.test');
    const text = VALID.replace(
      '  - { name: public, address: 127.0.0.1, port: 8080 }',
      `  - { name: public, address: 127.0.0.1, port: 8080 }\n  - name: tls\n    port: 8443\n    tls: { cert: ${a.cert}, key: ${b.key} }`,
    );
    const [issue] = issuesOf(text);
    expect(issue).toMatchObject({ line: 5, path: 'listeners[1].tls.cert' });
    expect(issue?.message).toContain('not usable together');
    expect(issue?.message).toContain(b.key);
    // The right pair passes.
    expect(parseConfig(text.replace(b.key, a.key), FILE, {}).listeners[1]?.tls?.files?.keyFile).toBe(a.key);
  });

  it('a cipher list OpenSSL cannot use', () => {
    const a = makeCert('ciphers.test');
    const text = VALID.replace(
      '  - { name: public, address: 127.0.0.1, port: 8080 }',
      `  - { name: public, address: 127.0.0.1, port: 8080 }\n  - name: tls\n    port: 8443\n    tls: { cert: ${a.cert}, key: ${a.key}, ciphers: NOT-A-CIPHER }`,
    );
    const [issue] = issuesOf(text);
    expect(issue).toMatchObject({ line: 5, path: 'listeners[1].tls.ciphers' });
    expect(issue?.message).toContain('not a usable cipher list');
    expect(parseConfig(text.replace('NOT-A-CIPHER', 'ECDHE-RSA-AES128-GCM-SHA256'), FILE, {}).listeners).toHaveLength(
      2,
    );
  });

  it('an unreadable CA file for wss:// backends', () => {
    const [issue] = issuesOf(
      VALID.replace('    balanceFactor: 1.25\n', '    balanceFactor: 1.25\n    tls: { ca: ./ca.pem }\n'),
    );
    expect(issue).toMatchObject({ line: 12, path: 'pools.chat.tls.ca' });
    expect(issue?.message).toContain('/etc/wsgate/ca.pem');
  });

  it('a bad hash key and a bad backend URL', () => {
    const issues = issuesOf(
      VALID.replace('header:X-User-Id', 'headr:x').replace('ws://127.0.0.1:3001', 'http://127.0.0.1:3001'),
    );
    expect(issues.map((i) => i.path).sort()).toEqual(['pools.chat.backends[0]', 'pools.chat.hashKey']);
  });

  it('an unset environment variable', () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the config syntax under test
    const [issue] = issuesOf(VALID.replace('ws://127.0.0.1:3001', 'ws://${NOPE}:3001'));
    expect(issue).toMatchObject({ line: 13, path: 'pools.chat.backends[0]' });
    expect(issue?.message).toBe('environment variable NOPE is not set');
  });

  it('durations a timer cannot wait are refused (Node fires anything above 2^31-1 ms after 1 ms)', () => {
    const [issue] = issuesOf(VALID.replace('handshake: 250ms', 'handshake: 30d'));
    expect(issue).toMatchObject({ line: 18, path: 'timeouts.handshake' });
    expect(issue?.message).toContain('must be at most 2147483647ms');
    expect(parseConfig(VALID.replace('idle: 2m', 'idle: 24d'), FILE).timeouts.idleMs).toBe(24 * 86_400_000);
  });

  it('zero where it would mean "at once" or "in a tight loop" is refused; idle 0 (never) is not', () => {
    const [handshake] = issuesOf(VALID.replace('handshake: 250ms', 'handshake: 0'));
    expect(handshake).toMatchObject({ path: 'timeouts.handshake', message: 'must be more than 0' });
    const withCheck = (interval: string) =>
      VALID.replace(
        '    balanceFactor: 1.25\n',
        `    balanceFactor: 1.25\n    healthCheck: { path: /health, interval: ${interval} }\n`,
      );
    const [check] = issuesOf(withCheck('0'));
    expect(check).toMatchObject({
      line: 12,
      path: 'pools.chat.healthCheck.interval',
      message: 'must be at least 100ms',
    });
    expect(parseConfig(withCheck('100ms'), FILE).pools.get('chat')?.healthCheck?.intervalMs).toBe(100);
    expect(parseConfig(VALID.replace('idle: 2m', 'idle: 0'), FILE).timeouts.idleMs).toBe(0);
  });

  it('an empty file points at its first line', () => {
    const [issue] = issuesOf('');
    expect(formatIssue(issue as ConfigIssue)).toBe(`${FILE}:1:1: listeners: is required`);
  });

  it('a route without match takes every host and path', () => {
    const c = parseConfig(VALID.replace('    match: { host: Chat.Example.com, path: /chat }\n', ''), FILE);
    expect(c.routes[0]).toMatchObject({ name: 'chat', host: undefined, pathPrefix: '/' });
  });

  it('reports every problem at once', () => {
    const issues = issuesOf(VALID.replace('port: 8080', 'port: -1').replace('idle: 2m', 'idle: soon'));
    expect(issues.length).toBe(2);
  });

  it('protocol off with limits is refused', () => {
    const [issue] = issuesOf(VALID.replace('    pool: chat\n', '    pool: chat\n    protocol: off\n'));
    expect(issue?.path).toBe('routes[0].protocol');
  });

  it('a missing file', () => {
    expect(() => loadConfig('/nonexistent/wsgate.yaml')).toThrow(/cannot read config file/);
  });

  it('a YAML syntax error has its line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsgate-cfg-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'listeners:\n  - { name: a, port: 1\n');
    try {
      loadConfig(file);
      expect.unreachable();
    } catch (err) {
      const issue = (err as ConfigError).issues[0];
      expect(issue?.file).toBe(file);
      expect(issue?.line).toBeGreaterThanOrEqual(2);
    }
  });
});
