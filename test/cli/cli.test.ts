// The wsgate command line as a real child process (built output in dist/, as `npm start` and the bin use it).

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startEchoBackend } from '../helpers/backends.js';
import { ensureBuilt } from '../helpers/child-gateway.js';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');

async function wsgate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function tempConfig(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'wsgate-cli-')), 'config.yaml');
  writeFileSync(file, text);
  return file;
}

const GOOD = `listeners: [{ name: public, address: 127.0.0.1, port: 0 }]
admin: { address: 127.0.0.1, port: 0 }
routes: [{ name: main, match: { path: / }, pool: main }]
pools: { main: { backends: [BACKEND] } }
log: { level: info }
`;

describe('wsgate CLI', () => {
  beforeAll(ensureBuilt, 120_000);

  it('--help and --version', async () => {
    const help = await wsgate(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--config FILE');
    const version = await wsgate(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('--check exits 0 on a valid file and 1 with file:line errors on an invalid one', async () => {
    const ok = await wsgate(['--config', tempConfig(GOOD.replace('BACKEND', 'ws://127.0.0.1:1')), '--check']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('configuration is valid');
    const badFile = tempConfig(GOOD.replace('BACKEND', 'ws://127.0.0.1:1').replace('pool: main }', 'pool: mian }'));
    const bad = await wsgate(['--config', badFile, '--check']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${badFile}:3:`);
    expect(bad.stderr).toContain('routes[0].pool: pool "mian" is not defined');
    // Then the line itself, with a caret under the value.
    const lines = bad.stderr.split('\n');
    const at = lines.findIndex((l) => l.includes('routes[0].pool'));
    expect(lines[at + 2]).toBe(' 3 | routes: [{ name: main, match: { path: / }, pool: mian }]');
    expect(lines[at + 3]?.indexOf('^^^^ ')).toBe(-1);
    expect(lines[at + 3]?.trimEnd().endsWith('^^^^')).toBe(true);
    expect(lines[at + 3]?.indexOf('^')).toBe(lines[at + 2]?.indexOf('mian'));
  });

  it('--help names the commands; connect --help its options', async () => {
    const help = await wsgate(['--help']);
    expect(help.stdout).toContain('wsgate connect URL');
    expect(help.stdout).toContain('wsgate schema');
    const connect = await wsgate(['connect', '--help']);
    expect(connect.code).toBe(0);
    expect(connect.stdout).toContain('--subprotocol NAME');
  });

  it('schema prints the JSON Schema', async () => {
    const r = await wsgate(['schema']);
    expect(r.code).toBe(0);
    const schema = JSON.parse(r.stdout) as { $schema: string; properties: Record<string, unknown> };
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(Object.keys(schema.properties)).toContain('listeners');
  });

  it('npm start -- --check runs the current build, without building', async () => {
    const file = tempConfig(GOOD.replace('BACKEND', 'ws://127.0.0.1:1'));
    const path = (process.env.PATH ?? '').split(':').filter((d) => !d.includes('node_modules'));
    const { stdout, stderr } = await run('npm', ['start', '--silent', '--', '--config', file, '--check'], {
      cwd: join(import.meta.dirname, '..', '..'),
      env: { HOME: process.env.HOME, PATH: path.join(':') },
    });
    expect(stdout).toBe(`${file}: configuration is valid\n`);
    expect(stderr).not.toContain('building');
  });

  it('an unknown flag exits 2 with usage', async () => {
    const r = await wsgate(['--frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage');
  });

  it('runs on --config, logs the bound ports, proxies, and exits 0 on SIGTERM', async () => {
    const backend = await startEchoBackend('cli');
    const child = spawn(process.execPath, [CLI, '--config', tempConfig(GOOD.replace('BACKEND', backend.url))], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        for (const line of out.split('\n')) {
          if (!line.startsWith('{')) continue;
          const entry = JSON.parse(line) as { listener?: string; port?: number };
          if (entry.listener === 'public' && entry.port) resolve(entry.port);
        }
      });
      child.once('exit', (code) => reject(new Error(`exited early with ${code}: ${out}`)));
    });
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const first = await new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
    expect(JSON.parse(first)).toEqual({ backend: 'cli' });
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await closed).toBe(1001);
    expect(await exited).toBe(0);
    await backend.close();
  });
});
