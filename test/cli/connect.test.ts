// `wsgate connect` as a real child process (the built CLI), typed at through its stdin, against a real gateway
// and real backends: what it prints, how it closes, and the one line for each way a connection cannot open.

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startDemoBackend } from '../../src/demo/backends.js';
import { startEchoBackend, startRawBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { handshakeConfig, simpleConfig, startGatewayFor } from '../helpers/gateway.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const CLI = join(ROOT, 'dist', 'src', 'cli.js');
const cleanups = cleanupAfterEach();

/** `HH:MM:SS.mmm D text`: every line the client prints about the connection. */
const LINE = /^\d\d:\d\d:\d\d\.\d{3} [<>*] /;
const TIME = /^\d\d:\d\d:\d\d\.\d{3} /;

interface Client {
  readonly child: ChildProcessWithoutNullStreams;
  readonly out: string[];
  readonly err: string[];
  readonly exited: Promise<number | null>;
  /** Waits for a stdout line matching `pattern`; returns it without its timestamp. */
  line(pattern: RegExp): Promise<string>;
  type(text: string): void;
}

function connect(args: string[]): Client {
  const child = spawn(NODE_BIN, [CLI, 'connect', ...args], { cwd: ROOT, stdio: 'pipe' });
  const out: string[] = [];
  const err: string[] = [];
  const collect = (into: string[]) => {
    let rest = '';
    return (d: Buffer) => {
      const parts = (rest + d.toString()).split('\n');
      rest = parts.pop() ?? '';
      into.push(...parts);
    };
  };
  child.stdout.on('data', collect(out));
  child.stderr.on('data', collect(err));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    out,
    err,
    exited,
    line: async (pattern) => {
      let found: string | undefined;
      await waitFor(
        () => {
          found = out.find((l) => pattern.test(l.replace(TIME, '')));
          return found !== undefined;
        },
        10_000,
        `a line matching ${pattern}`,
      ).catch((e: Error) => {
        throw new Error(`${e.message} (stdout: ${out.join(' | ')}; stderr: ${err.join(' | ')})`);
      });
      return (found as string).replace(TIME, '');
    },
    type: (text) => child.stdin.write(text),
  };
}

async function demoGateway() {
  const backend = await startDemoBackend('backend-demo', 0);
  cleanups.push(() => backend.close());
  return startGatewayFor(cleanups, simpleConfig([`ws://127.0.0.1:${backend.port}`]));
}

describe('wsgate connect', () => {
  it('sends typed lines, prints what arrives with time and direction, closes with 1000 at end of input', async () => {
    const gw = await demoGateway();
    const c = connect([`ws://127.0.0.1:${gw.port}/chat?room=r1`]);
    expect(await c.line(/^\* connected/)).toBe(
      `* connected to ws://127.0.0.1:${gw.port}/chat?room=r1 (101, subprotocol: none)`,
    );
    expect(await c.line(/welcome/)).toBe(
      '< {"backend":"backend-demo","event":"welcome","room":"r1","path":"/chat?room=r1"}',
    );
    c.type('hello there\n');
    expect(await c.line(/^> /)).toBe('> hello there');
    expect(await c.line(/"echo"/)).toBe('< {"backend":"backend-demo","event":"echo","text":"hello there"}');
    c.child.stdin.end();
    expect(await c.line(/^\* closed/)).toBe('* closed 1000 (normal closure)');
    expect(await c.exited).toBe(0);
    expect(
      c.out.every((l) => LINE.test(l)),
      c.out.join('\n'),
    ).toBe(true);
  });

  it('/close CODE REASON closes with them; //text sends /text; binary arrives as hex', async () => {
    const backend = await startEchoBackend('echo', { welcome: false });
    cleanups.push(() => backend.close());
    const gw = await startGatewayFor(cleanups, simpleConfig([backend.url]));
    const c = connect([`ws://127.0.0.1:${gw.port}/`]);
    await c.line(/^\* connected/);
    c.type('//slash\n');
    expect(await c.line(/^< /)).toBe('< /slash');
    const [server] = [...backend.sockets];
    server?.send(Buffer.from([0xde, 0xad, 0xbe, 0xef]), { binary: true });
    expect(await c.line(/binary/)).toBe('< [binary, 4 bytes] deadbeef');
    const seen = new Promise<[number, string]>((resolve) =>
      server?.once('close', (code, reason) => resolve([code, reason.toString()])),
    );
    c.type('/close 4001 done here\n');
    expect(await seen).toEqual([4001, 'done here']);
    expect(await c.line(/^\* closed/)).toBe('* closed 4001 (application code) "done here"');
    expect(await c.exited).toBe(0);
  });

  it('--header, --subprotocol and --origin reach the backend; --close-code at end of input', async () => {
    const backend = await startEchoBackend('echo');
    cleanups.push(() => backend.close());
    const gw = await startGatewayFor(cleanups, handshakeConfig(backend.url));
    const url = `ws://127.0.0.1:${gw.port}/chat`;
    const c = connect([
      url,
      '-H',
      'Host: chat.example.com',
      '--header',
      'X-User-Id: alice',
      '-s',
      'chat.v2',
      '-s',
      'chat.v1',
      '--origin',
      'https://chat.example.com',
      '--close-code',
      '4000',
      '--close-reason',
      'bye',
    ]);
    expect(await c.line(/^\* connected/)).toBe(`* connected to ${url} (101, subprotocol: chat.v2)`);
    const req = backend.requests[0];
    expect(req?.headers['x-user-id']).toBe('alice');
    expect(req?.headers.origin).toBe('https://chat.example.com');
    expect(req?.headers['sec-websocket-protocol']).toBe('chat.v2,chat.v1');
    c.child.stdin.end();
    expect(await c.line(/^\* closed/)).toBe('* closed 4000 (application code) "bye"');
  });

  it('--count and --rate: N messages, then a summary', async () => {
    const gw = await demoGateway();
    const c = connect([`ws://127.0.0.1:${gw.port}/`, '--count', '25', '--rate', '500', '--data', 'probe']);
    const summary = await c.line(/^\* sent/);
    expect(summary, summary).toMatch(/^\* sent 25 messages in \d+\.\d{3} s \(\d+\.\d\/s\); received 26$/);
    expect(await c.exited).toBe(0);
  });

  it('a refused handshake is one line: status, X-Wsgate-Error and what it means; exit 1', async () => {
    const backend = await startEchoBackend('echo');
    cleanups.push(() => backend.close());
    const gw = await startGatewayFor(cleanups, handshakeConfig(backend.url));
    const noRoute = connect([`ws://127.0.0.1:${gw.port}/elsewhere`]);
    expect(await noRoute.exited).toBe(1);
    expect(noRoute.err).toEqual([
      'wsgate connect: refused: 404 Not Found, X-Wsgate-Error: WSG_NO_ROUTE (no route matches this host and path)',
    ]);
    expect(noRoute.out).toEqual([]);
    const origin = connect([`ws://127.0.0.1:${gw.port}/chat`, '-H', 'Host: chat.example.com']);
    expect(await origin.exited).toBe(1);
    expect(origin.err).toEqual([
      'wsgate connect: refused: 403 Forbidden, X-Wsgate-Error: WSG_ORIGIN_NOT_ALLOWED (Origin is not allowed for this route)',
    ]);
  });

  it("a backend's own refusal, relayed, says it did not come from wsgate", async () => {
    const refusing = await startRawBackend(
      () => 'HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\nConnection: close\r\n\r\nlog in first\n',
    );
    cleanups.push(() => refusing.close());
    const gw = await startGatewayFor(cleanups, simpleConfig([refusing.url]));
    const c = connect([`ws://127.0.0.1:${gw.port}/`]);
    expect(await c.exited).toBe(1);
    expect(c.err).toEqual([
      `wsgate connect: refused: 401 Unauthorized, no X-Wsgate-Error (the backend's own answer, or not a wsgate): "log in first"`,
    ]);
  });

  it('nothing listening, and a self-signed certificate without --insecure: one line each, exit 1', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    const refused = connect([`ws://127.0.0.1:${closed}/`]);
    expect(await refused.exited).toBe(1);
    expect(refused.err).toEqual([
      `wsgate connect: cannot connect to 127.0.0.1:${closed}: connection refused (is wsgate running and listening there?)`,
    ]);

    const backend = await startEchoBackend('tls-echo');
    cleanups.push(() => backend.close());
    const gw = await startGatewayFor(
      cleanups,
      simpleConfig([backend.url], { listeners: [{ name: 'tls', address: '127.0.0.1', port: 0, tls: {} }] }),
    );
    const strict = connect([`wss://127.0.0.1:${gw.tlsPort}/`]);
    expect(await strict.exited).toBe(1);
    expect(strict.err).toEqual([
      `wsgate connect: TLS: 127.0.0.1:${gw.tlsPort}'s certificate is not signed by a trusted CA (DEPTH_ZERO_SELF_SIGNED_CERT); add --insecure to accept it`,
    ]);
    const insecure = connect([`wss://127.0.0.1:${gw.tlsPort}/`, '--insecure']);
    expect(await insecure.line(/tls-echo/)).toBe('< {"backend":"tls-echo"}');
    insecure.child.stdin.end();
    expect(await insecure.exited).toBe(0);
  });

  it('bad arguments: exit 2 with the reason and the usage', async () => {
    const c = connect(['http://127.0.0.1:1/']);
    expect(await c.exited).toBe(2);
    expect(c.err[0]).toBe('wsgate connect: URL must start with ws:// or wss://, got "http://127.0.0.1:1/"');
    expect(c.err.join('\n')).toContain('Usage: wsgate connect URL');
    const rate = connect(['ws://127.0.0.1:1/', '--rate', '5']);
    expect(await rate.exited).toBe(2);
    expect(rate.err[0]).toBe('wsgate connect: --rate needs --count');
  });
});
