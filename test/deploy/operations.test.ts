// What operators deploy and watch: the Dockerfile's runtime layout run by hand (node as PID 1), a
// Kubernetes ConfigMap/Secret volume update (kubelet's `..data` symlink swap) seen by the real CLI, the metrics
// an operator reads in cluster mode, /api/status against /metrics, the log lines docs/metrics.md promises, and config
// keys named in the deploy/observability artifacts.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { Status } from '../../src/control/status.js';
import { admin, connectClient } from '../control/support.js';
import { echoBackendFor, type TestBackend } from '../helpers/backends.js';
import { makeCert } from '../helpers/certs.js';
import { ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { startDnsStub } from '../helpers/dns-stub.js';
import { metricValue, simpleConfig, startGateway } from '../helpers/gateway.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML and pino JSON lines are free-form; each test narrows what it reads
type Loose = any;

beforeAll(ensureBuilt, 120_000);
const cleanups = cleanupAfterEach();

const echo = (id: string): Promise<TestBackend> => echoBackendFor(cleanups, id);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The wsgate config the Kubernetes ConfigMap ships. */
function configMapConfig(): Record<string, Loose> {
  const docs = parse(readFileSync(join(ROOT, 'deploy', 'kubernetes', 'configmap.yaml'), 'utf8')) as {
    data: Record<string, string>;
  };
  return parse(docs.data['config.yaml'] as string) as Record<string, Loose>;
}

/**
 * A directory laid out the way kubelet's atomic writer lays out a ConfigMap or Secret volume:
 * `..2026_11_30_NN/<files>`, `..data -> ..2026_11_30_NN`, and `<file> -> ..data/<file>`. `swap` writes a new
 * timestamped directory, points `..data` at it by rename (atomic), and removes the old one.
 */
function kubeletVolume(dir: string, files: Record<string, string>): { swap(files: Record<string, string>): void } {
  mkdirSync(dir, { recursive: true });
  let n = 0;
  let current = '';
  const writeVersion = (content: Record<string, string>) => {
    n++;
    const name = `..2026_11_30_08_00_${String(n).padStart(2, '0')}.${process.pid}`;
    mkdirSync(join(dir, name));
    for (const [f, text] of Object.entries(content)) writeFileSync(join(dir, name, f), text);
    return name;
  };
  current = writeVersion(files);
  symlinkSync(current, join(dir, '..data'));
  for (const f of Object.keys(files)) symlinkSync(join('..data', f), join(dir, f));
  return {
    swap(content) {
      const next = writeVersion(content);
      symlinkSync(next, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      rmSync(join(dir, current), { recursive: true, force: true });
      current = next;
    },
  };
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function dockerfile(): string[] {
  return readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

function lineReader(child: ChildProcess): { lines: string[]; logs: Record<string, Loose>[] } {
  const lines: string[] = [];
  const logs: Record<string, Loose>[] = [];
  let partial = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (t: string) => {
    const all = (partial + t).split('\n');
    partial = all.pop() ?? '';
    for (const l of all) {
      if (!l) continue;
      lines.push(l);
      if (l.startsWith('{')) logs.push(JSON.parse(l) as Record<string, Loose>);
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (t: string) => lines.push(`stderr: ${t}`));
  return { lines, logs };
}

function peerCommonName(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'wsgate.test' }, () => {
      const cn = s.getPeerCertificate().subject?.CN;
      s.destroy();
      resolve(String(cn));
    });
    s.once('error', reject);
  });
}

/** Sends `request` on a fresh TCP connection; resolves with everything answered until the close. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(request));
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      answer += d;
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve(answer));
    socket.setTimeout(3000, () => {
      socket.destroy();
      reject(new Error(`no close; got ${answer.slice(0, 80)}`));
    });
  });
}

// The image's layout is run with node as PID 1 in a new PID namespace, which needs root and unshare(1); without
// them that one test is skipped (CI runs as root on Debian, where it runs).
const UNSHARE_OK =
  process.getuid?.() === 0 && spawnSync('unshare', ['--pid', '--fork', 'true'], { stdio: 'ignore' }).status === 0;

describe('Dockerfile runtime image, reproduced by hand', () => {
  it('ships every file the runtime needs: only `dependencies` are imported, the status page is copied into dist', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const bare = new Set<string>();
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.js')) {
          for (const m of readFileSync(p, 'utf8').matchAll(/(?:from |import\()'([^'.][^']*)'/g)) bare.add(m[1]!);
        }
      }
    };
    walk(join(ROOT, 'dist', 'src'));
    const packages = [...bare]
      .filter((s) => !s.startsWith('node:'))
      .map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!));
    // pino's pretty transport is loaded by name at run time (TTY): it must be a runtime dependency too.
    packages.push('pino-pretty');
    for (const p of packages)
      expect(Object.keys(pkg.dependencies), `${p} is installed by npm ci --omit=dev`).toContain(p);
    // .dockerignore must not keep out what `npm run build` compiles (tsconfig include) or the runtime copies.
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] };
    const needed = [
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'config.example.yaml',
      'src',
      ...tsconfig.include.map((g) => g.split('/')[0]!),
    ];
    for (const n of needed) expect(ignored, `${n} reaches the build stage`).not.toContain(n);
    // The build stage copies non-TypeScript files of src/ (the status page) next to the compiled modules.
    const build = dockerfile().find((l) => l.startsWith('RUN npm run build')) ?? '';
    expect(build).toMatch(/find \. -type f ! -name '\*\.ts' -exec cp --parents \{\} \.\.\/dist\/src\//);
  });

  it.skipIf(!UNSHARE_OK)(
    'the copied layout checks and runs the ConfigMap config; HEALTHCHECK passes; node as PID 1 drains on SIGTERM',
    async () => {
      const instructions = dockerfile();
      const last = (k: string) =>
        instructions
          .filter((l) => l.startsWith(`${k} `))
          .at(-1)
          ?.slice(k.length + 1) ?? '';
      const entrypoint = JSON.parse(last('ENTRYPOINT')) as string[];
      const cmd = JSON.parse(last('CMD')) as string[];
      const healthcheck = JSON.parse(/CMD (\[.*\])$/.exec(last('HEALTHCHECK'))?.[1] ?? '[]') as string[];
      expect(entrypoint[0]).toBe('node');
      expect(healthcheck[0]).toBe('node');

      // The runtime stage: package manifests, node_modules, dist (with the status page), a config at /etc/wsgate.
      const root = mkdtempSync(join(tmpdir(), 'wsgate-image-'));
      cleanups.push(() => rmSync(root, { recursive: true, force: true }));
      const app = join(root, 'app');
      mkdirSync(app);
      for (const f of ['package.json', 'package-lock.json']) cpSync(join(ROOT, f), join(app, f));
      symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'));
      cpSync(join(ROOT, 'dist'), join(app, 'dist'), { recursive: true });
      const copy = spawnSync(
        'sh',
        ['-c', `find . -type f ! -name '*.ts' -exec cp --parents {} ${join(app, 'dist', 'src')}/ \\;`],
        {
          cwd: join(ROOT, 'src'),
        },
      );
      expect(copy.status).toBe(0);
      expect(existsSync(join(app, 'src'))).toBe(false);

      // The ConfigMap's config, on free ports, its TLS Secret in a kubelet-style volume, DNS from a stub.
      const backend = await echo('chat-pod-1');
      const dns = await startDnsStub();
      cleanups.push(() => dns.close());
      const config = configMapConfig();
      const dnsName: string = config.pools.chat.discovery.dns;
      dns.records.set(dnsName, ['127.0.0.1']);
      config.pools.chat.discovery = { ...config.pools.chat.discovery, port: backend.port, nameservers: [dns.server] };
      const [http, https, adminPort] = [await freePort(), await freePort(), await freePort()];
      config.listeners[0].port = http;
      config.listeners[1].port = https;
      config.admin.port = adminPort;
      const tlsDir = join(root, 'etc', 'wsgate-tls');
      const cert = makeCert('wsgate.test');
      kubeletVolume(tlsDir, { 'tls.crt': readFileSync(cert.cert, 'utf8'), 'tls.key': readFileSync(cert.key, 'utf8') });
      config.listeners[1].tls = { cert: join(tlsDir, 'tls.crt'), key: join(tlsDir, 'tls.key') };
      const etc = join(root, 'etc', 'wsgate');
      kubeletVolume(etc, { 'config.yaml': stringify(config) });
      const args = cmd.map((a) => a.replace('/etc/wsgate/', `${etc}/`));
      const env = { ...process.env, NODE_ENV: 'production', NODE_OPTIONS: '--max-old-space-size=768' };
      const nodeDir = join(ROOT, 'node_modules', '.bin');
      const envWithNode = { ...env, PATH: `${nodeDir}:${process.env.PATH ?? ''}` };

      const check = spawnSync(NODE_BIN, [...entrypoint.slice(1), ...args, '--check'], {
        cwd: app,
        env,
        encoding: 'utf8',
      });
      expect(check.status, check.stderr).toBe(0);

      // `docker run` with exec-form ENTRYPOINT: node is PID 1 of its own PID namespace.
      const child = spawn(
        'unshare',
        ['--pid', '--fork', '--kill-child', '--', NODE_BIN, ...entrypoint.slice(1), ...args],
        {
          cwd: app,
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      cleanups.push(() => child.kill('SIGKILL'));
      const out = lineReader(child);
      onTestFailed(() => {
        process.stderr.write(`image output:\n${out.lines.join('\n')}\n`);
      });
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      await waitFor(() => out.logs.some((l) => l.msg === 'wsgate ready'), 15_000, 'wsgate ready');
      expect(out.logs.find((l) => l.msg === 'wsgate ready')?.pid).toBe(1);

      // HEALTHCHECK, as Docker would run it (the admin port substituted), and the probes the Deployment uses.
      const hc = spawnSync(
        'node',
        healthcheck.slice(1).map((a) => a.replace(':8077/', `:${adminPort}/`)),
        { env: envWithNode, encoding: 'utf8', timeout: 3000 },
      );
      expect(hc.status, hc.stderr).toBe(0);
      expect((await admin(adminPort, '/readyz')).status).toBe(200);
      const page = await admin(adminPort, '/');
      expect(page.status).toBe(200);
      expect(page.text).toContain('<html');
      expect(await peerCommonName(https)).toBe('wsgate.test');

      const client = await connectClient(`ws://127.0.0.1:${http}/chat`, { 'x-user-id': 'alice' });
      expect(client.backend).toBe('chat-pod-1');

      // The kubelet's SIGTERM reaches PID 1 (node's own handler): 1001 to the client, exit 0.
      const hostPid = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim());
      expect(hostPid).toBeGreaterThan(0);
      process.kill(hostPid, 'SIGTERM');
      expect(await client.closed()).toBe(1001);
      expect(await exited).toBe(0);
      expect(out.logs.some((l) => l.msg === 'stopped')).toBe(true);
    },
    30_000,
  );
});

describe('Kubernetes ConfigMap and Secret volume updates (kubelet ..data symlink swap)', () => {
  it('the real CLI reloads a swapped ConfigMap and a rotated TLS Secret, and refuses a bad ConfigMap', async () => {
    const backend = await echo('a');
    const root = mkdtempSync(join(tmpdir(), 'wsgate-kubelet-'));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const tlsDir = join(root, 'wsgate-tls');
    const first = makeCert('first.wsgate.test');
    const second = makeCert('second.wsgate.test');
    const secret = kubeletVolume(tlsDir, {
      'tls.crt': readFileSync(first.cert, 'utf8'),
      'tls.key': readFileSync(first.key, 'utf8'),
    });
    const base = simpleConfig([backend.url], {
      listeners: [
        { name: 'public', address: '127.0.0.1', port: 0 },
        {
          name: 'public-tls',
          address: '127.0.0.1',
          port: 0,
          tls: { cert: join(tlsDir, 'tls.crt'), key: join(tlsDir, 'tls.key') },
        },
      ],
    });
    const cmDir = join(root, 'wsgate');
    const configMap = kubeletVolume(cmDir, { 'config.yaml': stringify(base) });
    const cli = runCli(join(cmDir, 'config.yaml'));
    cleanups.push(() => cli.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${cli.lines.join('\n')}\n`);
    });
    const ready = await cli.logLine('wsgate ready');
    const adminPort = ready.adminPort as number;
    const tlsPort = (ready.listeners as { port: number; secure: boolean }[]).find((l) => l.secure)?.port ?? 0;
    const status = async () => (await admin(adminPort, '/api/status')).json<Status>();
    expect(await peerCommonName(tlsPort)).toBe('first.wsgate.test');

    // kubectl apply of a changed ConfigMap: a new route appears without a restart.
    const fresh = await echo('fresh');
    configMap.swap({
      'config.yaml': stringify({
        ...base,
        routes: [{ name: 'fresh', match: { path: '/fresh' }, pool: 'other' }, ...(base.routes as object[])],
        pools: { ...(base.pools as object), other: { backends: [fresh.url] } },
      }),
    });
    await waitFor(async () => (await status()).generation === 2, 5000, 'ConfigMap swap reloaded');
    const plainPort = (ready.listeners as { port: number }[])[0]?.port ?? 0;
    const viaFresh = await connectClient(`ws://127.0.0.1:${plainPort}/fresh`);
    expect(viaFresh.backend).toBe('fresh');
    viaFresh.ws.close();

    // cert-manager renews the Secret: new handshakes get the new certificate.
    secret.swap({ 'tls.crt': readFileSync(second.cert, 'utf8'), 'tls.key': readFileSync(second.key, 'utf8') });
    await waitFor(async () => (await status()).generation === 3, 5000, 'Secret swap reloaded');
    expect(await peerCommonName(tlsPort)).toBe('second.wsgate.test');

    // A broken ConfigMap: counted as a failure, the running generation stays.
    configMap.swap({ 'config.yaml': 'listeners: [\n' });
    await waitFor(
      async () =>
        metricValue((await admin(adminPort, '/metrics')).text, 'wsgate_config_reload_total', { result: 'failure' }) ===
        1,
      5000,
      'the failed reload counted',
    );
    expect((await status()).generation).toBe(3);
  }, 30_000);
});

describe('cluster mode metrics as the dashboard and alerts read them', () => {
  it('wsgate_backend_up stays 1/0 and wsgate_pool_backends counts backends, whatever the number of workers', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const config = simpleConfig([a.url, b.url], { workers: 2 });
    (config.pools as Record<string, Record<string, unknown>>).main!.healthCheck = {
      path: '/',
      interval: '200ms',
      timeout: '150ms',
      healthyThreshold: 1,
    };
    const cli = runCli(writeConfig(config), ['--no-watch']);
    cleanups.push(() => cli.kill('SIGKILL'));
    const { adminPort } = await cli.ready();
    const s = (await admin(adminPort, '/api/status')).json<Status>();
    expect(s.workers.live).toBe(2);
    expect(s.pools[0]?.backends.map((x) => x.state)).toEqual(['healthy', 'healthy']);
    const text = (await admin(adminPort, '/metrics')).text;
    // docs/metrics.md: `wsgate_backend_up` gauge (1/0); the dashboard maps 0 → DOWN, 1 → UP, and "Healthy backends" sums
    // wsgate_pool_backends{state="healthy"}: with one healthy backend per series these must read 1 and 2.
    expect(metricValue(text, 'wsgate_backend_up', { backend: a.url })).toBe(1);
    expect(metricValue(text, 'wsgate_pool_backends', { pool: 'main', state: 'healthy' })).toBe(2);
  }, 20_000);
});

describe('/api/status against /metrics', () => {
  it('connectionsTotal ("since start") does not go back when a backend leaves the pool', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const config = simpleConfig([a.url]);
    const gw = await startGateway(config);
    cleanups.push(() => gw.stop());
    const client = await connectClient(`ws://127.0.0.1:${gw.port}/`, { 'x-user-id': 'u1' });
    client.ws.close();
    await client.closed();
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0, 3000, 'closed');
    const before = (await admin(gw.adminPort, '/api/status')).json<Status>();
    expect(before.connections.total).toBe(1);
    expect(before.routes[0]?.connectionsTotal).toBe(1);

    // The backend leaves (a reload here; DNS discovery does the same whenever a backend pod is replaced).
    await gw.gateway.reload(parseConfig(stringify(simpleConfig([b.url])), '/virtual/wsgate-test.yaml'));
    const after = (await admin(gw.adminPort, '/api/status')).json<Status>();
    expect(after.generation).toBe(2);
    // docs/admin-api.md: `connectionsTotal` is connections since start; the status page shows "N since start".
    expect(after.connections.total).toBe(1);
    expect(after.routes[0]?.connectionsTotal).toBe(1);
  });
});

describe('logs, as docs/metrics.md "Logs" promises them', () => {
  it('one line per open and per close (with every promised field), per refusal, none per message, paths cut', async () => {
    const a = await echo('a');
    const config = simpleConfig([a.url], {
      routes: [{ name: 'main', match: { path: '/ws' }, pool: 'main' }],
      limits: { maxConnections: 100, maxConnectionsPerIp: 100, perConnection: { maxMessageBytes: 1024 } },
      timeouts: { handshake: '2s', idle: '1500ms', drain: '2s' },
    });
    const cli = runCli(writeConfig(config), ['--no-watch']);
    cleanups.push(() => cli.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${cli.lines.join('\n')}\n`);
    });
    const { port } = await cli.ready();
    const url = `ws://127.0.0.1:${port}/ws`;
    const closeLines = () => cli.logs.filter((l) => l.msg === 'connection closed');

    // 1000 from the client, after 50 messages each way.
    const c1 = await connectClient(`${url}?n=1`, { 'x-user-id': 'u1' });
    for (let i = 0; i < 50; i++) await c1.echo(`m${i}`);
    c1.ws.close(1000);
    await c1.closed();
    await waitFor(() => closeLines().length === 1, 3000, 'close line 1');
    // 1009 by the proxy.
    const c2 = await connectClient(`${url}?n=2`, { 'x-user-id': 'u2' });
    c2.ws.send('x'.repeat(4096));
    expect(await c2.closed()).toBe(1009);
    await waitFor(() => closeLines().length === 2, 3000, 'close line 2');
    // The backend drops the connection: 1014.
    const c3 = await connectClient(`${url}?n=3`, { 'x-user-id': 'u3' });
    a.killConnections();
    expect(await c3.closed()).toBe(1014);
    await waitFor(() => closeLines().length === 3, 3000, 'close line 3');
    // Idle timeout: 1001 by the proxy.
    const c4 = await connectClient(`${url}/${'p'.repeat(5000)}`, { 'x-user-id': 'u4' });
    expect(await c4.closed()).toBe(1001);
    await waitFor(() => closeLines().length === 4, 3000, 'close line 4');

    // Refusals: 404 (no route), 400 (bad key) and 431 (headers too large), one line each.
    const refusedBefore = cli.logs.filter((l) => l.event === 'rejected').length;
    const upgrade = (path: string, extra = '') =>
      `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Version: 13\r\n${extra}\r\n`;
    const answers: string[] = [];
    for (const request of [
      upgrade(`/nope/${'q'.repeat(5000)}`, 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'),
      upgrade('/ws', 'Sec-WebSocket-Key: short\r\n'),
      upgrade('/ws', `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Big: ${'b'.repeat(20_000)}\r\n`),
    ]) {
      answers.push(await rawExchange(port, request));
    }
    expect(answers.map((a) => a.split(' ')[1])).toEqual(['404', '400', '431']);
    await waitFor(() => cli.logs.filter((l) => l.event === 'rejected').length === refusedBefore + 3, 3000, 'refusals');

    const opens = cli.logs.filter((l) => l.msg === 'connection opened');
    expect(opens).toHaveLength(4);
    const closes = closeLines();
    expect(closes.map((l) => [l.closeCode, l.initiator])).toEqual([
      [1000, 'client'],
      [1009, 'proxy'],
      [1014, 'backend'],
      [1001, 'proxy'],
    ]);
    for (const l of [...opens, ...closes]) {
      for (const f of ['route', 'pool', 'backend', 'client']) expect(l[f], `${l.msg} ${f}`).toBeTruthy();
    }
    for (const l of closes) {
      for (const f of ['durationMs', 'bytesIn', 'bytesOut', 'messagesIn', 'messagesOut', 'closeCode', 'reason']) {
        expect(l[f], `close ${f}`).toBeDefined();
      }
    }
    expect(closes[0]?.messagesIn).toBe(50);
    expect(closes[0]?.messagesOut).toBe(51);
    // Client-chosen strings are cut: no log line carries the 5000-character paths.
    for (const line of cli.lines) expect(line.length).toBeLessThan(2000);
    const refusals = cli.logs.filter((l) => l.event === 'rejected');
    expect(refusals.map((l) => l.status)).toEqual([404, 400, 431]);
    // Every refusal line names the client, node:http's malformed-request refusals (431 here) too.
    for (const l of refusals) expect(l.client).toBe('127.0.0.1');
    expect(refusals.map((l) => l.code)).toEqual(['WSG_NO_ROUTE', 'WSG_BAD_KEY', 'WSG_HEADERS_TOO_LARGE']);
    // Nothing per message: 4 opens, 4 closes, 3 refusals, and the start-up lines.
    expect(cli.logs.filter((l) => /message/i.test(String(l.msg)))).toEqual([]);
  }, 30_000);
});

describe('config keys named in deploy and observability artifacts', () => {
  it('every `admin.<key>` an artifact tells the operator to set is a real config key', () => {
    const files = [
      'Dockerfile',
      'grafana/prometheus.yml',
      'grafana/alerts.yml',
      ...readdirSync(join(ROOT, 'deploy', 'kubernetes')).map((f) => `deploy/kubernetes/${f}`),
    ];
    const keys = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(join(ROOT, f), 'utf8').matchAll(/\badmin\.([a-zA-Z]+)\b/g))
        keys.add(`${f}: ${m[1]}`);
    }
    expect(keys.size).toBeGreaterThan(0);
    // docs/configuration.md "Admin listener": admin.address, admin.port, admin.token.
    const unknown = [...keys].filter((k) => !['address', 'port', 'token'].includes(k.split(': ')[1]!));
    expect(unknown).toEqual([]);
  });
});

describe('shutdown logs', () => {
  it('a tunnel cut at the drain deadline still gets its close line before the process exits', async () => {
    const a = await echo('a');
    const config = simpleConfig([a.url], { timeouts: { handshake: '2s', idle: '60s', drain: '1s' } });
    const cli = runCli(writeConfig(config), ['--no-watch']);
    cleanups.push(() => cli.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${cli.lines.join('\n')}\n`);
    });
    const { port } = await cli.ready();
    // A raw client that completes the upgrade and then never answers a close frame.
    const socket = netConnect({ port, host: '127.0.0.1', allowHalfOpen: true });
    cleanups.push(() => socket.destroy());
    socket.on('error', () => {});
    let head = '';
    await new Promise<void>((resolve) => {
      socket.on('data', (d) => {
        head += d.toString('latin1');
        if (head.includes('\r\n\r\n')) resolve();
      });
      socket.write(
        'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-User-Id: u1\r\n\r\n',
      );
    });
    expect(head).toMatch(/^HTTP\/1\.1 101/);
    await cli.logLine('connection opened');
    cli.kill('SIGTERM');
    const exit = await cli.exited;
    expect(exit.code).toBe(0);
    const drained = cli.logs.find((l) => l.msg === 'drain finished' && 'destroyed' in l);
    // One tunnel was cut: the log must count it once (docs/operations.md: "the rest are cut and counted in the log").
    expect.soft(drained?.destroyed, 'tunnels cut, as logged by "drain finished"').toBe(1);
    expect.soft(cli.logs.find((l) => l.msg === 'stopped')?.destroyed, 'tunnels cut, as logged by "stopped"').toBe(1);
    // docs/metrics.md "Logs": one line per connection closed, also for the one cut at the deadline (its reason is the first
    // one recorded: the shutdown that told it to go away).
    const closed = cli.logs.filter((l) => l.msg === 'connection closed');
    expect(closed.map((l) => [l.reason, l.initiator, l.closeCode])).toEqual([['server shutting down', 'proxy', 1001]]);
  }, 15_000);
});
