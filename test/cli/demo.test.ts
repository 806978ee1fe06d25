// The demo as a new user meets it: `wsgate --demo` on the example config (moved to free ports), the banner after
// the start-up lines, and the banner's client lines run exactly as printed from a stock shell: PATH without the
// project's node_modules/.bin, so `node` is the system's (v20 on this machine) and `npm` is the system npm.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const CLI = join(ROOT, 'dist', 'src', 'cli.js');
const cleanups = cleanupAfterEach();

/** A port nothing listens on now (the demo backends need numbers in the config before they start). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** config.example.yaml with every port moved: listeners and admin to 0, the demo backends to free ports. */
async function exampleOnFreePorts(): Promise<{ file: string; backendPorts: number[] }> {
  let text = readFileSync(join(ROOT, 'config.example.yaml'), 'utf8');
  for (const fixed of ['port: 8080', 'port: 8443', 'port: 8077']) {
    expect(text).toContain(fixed);
    text = text.replace(fixed, 'port: 0');
  }
  const backendPorts: number[] = [];
  for (const fixed of [3001, 3002, 3003]) {
    const port = await freePort();
    backendPorts.push(port);
    text = text.replaceAll(`127.0.0.1:${fixed}`, `127.0.0.1:${port}`);
  }
  const file = join(mkdtempSync(join(tmpdir(), 'wsgate-demo-')), 'config.yaml');
  writeFileSync(file, text);
  return { file, backendPorts };
}

interface Running {
  readonly child: ChildProcess;
  /** stdout and stderr as they arrived, interleaved. */
  readonly output: () => string;
  readonly stdout: () => string;
}

function watch(child: ChildProcess): Running {
  let output = '';
  let stdout = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  return { child, output: () => output, stdout: () => stdout };
}

/** The environment of a fresh shell on this machine: the system PATH, no npm or project variables. */
function stockShellEnv(): NodeJS.ProcessEnv {
  const path = (process.env.PATH ?? '')
    .split(':')
    .filter((dir) => dir !== '' && !dir.includes('node_modules'))
    .join(':');
  return { HOME: process.env.HOME ?? tmpdir(), PATH: path, LANG: 'C.UTF-8' };
}

/** The banner's client lines, as printed: the indented lines after "Try it". */
function bannerCommands(output: string): string[] {
  const lines = output.split('\n');
  const start = lines.findIndex((l) => l.startsWith('Try it'));
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end).map((l) => l.trim());
}

describe('the demo', () => {
  it('prints the banner after the start-up lines, and its client lines work as printed on the system Node', async () => {
    const { file, backendPorts } = await exampleOnFreePorts();
    const demo = watch(spawn(NODE_BIN, [CLI, '--demo', '--config', file], { cwd: ROOT, stdio: 'pipe' }));
    cleanups.push(() => demo.child.kill('SIGKILL'));
    await waitFor(() => demo.output().includes('Stop with Ctrl-C.'), 20_000, `the banner (output: ${demo.output()})`);

    // Not a terminal: the start-up lines are pino JSON, unchanged, and the banner comes after all of them.
    const lines = demo.output().split('\n');
    const bannerStart = lines.findIndex((l) => l.startsWith('wsgate demo is running'));
    const before = lines.slice(0, bannerStart).filter((l) => l !== '');
    expect(before.length).toBeGreaterThan(3);
    const logs = before.map((l) => JSON.parse(l) as { msg: string });
    expect(logs.at(-1)?.msg).toBe('wsgate ready');
    expect(demo.output()).toContain(`Demo backends on 127.0.0.1:${backendPorts.join(', ')}`);

    const commands = bannerCommands(demo.output());
    expect(commands).toHaveLength(3);
    expect(commands[0]).toMatch(/^npm run connect -- 'ws:\/\/127\.0\.0\.1:\d+\/chat\?user=alice'$/);
    expect(commands[1]).toMatch(/^npm run connect -- --insecure 'wss:\/\/127\.0\.0\.1:\d+\/chat\?user=alice'$/);
    expect(commands[2]).toMatch(/^curl 'http:\/\/127\.0\.0\.1:\d+\/chat\?user=alice'$/);
    const alice = /alice {2}→ (backend-\d+)/.exec(demo.output())?.[1];
    expect(alice).toBeDefined();

    const env = stockShellEnv();
    for (const command of commands.slice(0, 2)) {
      const shell = watch(spawn('bash', ['-c', command], { cwd: ROOT, env, stdio: 'pipe' }));
      cleanups.push(() => shell.child.kill('SIGKILL'));
      const exited = new Promise<number | null>((resolve) => shell.child.once('exit', (code) => resolve(code)));
      await waitFor(
        () => shell.output().includes('"event":"welcome"'),
        30_000,
        `${command} connects: ${shell.output()}`,
      );
      expect(shell.output()).toContain(`{"backend":"${alice}","event":"welcome"`);
      shell.child.stdin?.write('hello from the banner\n');
      await waitFor(
        () => shell.output().includes('"event":"echo","text":"hello from the banner"'),
        10_000,
        `${command} echoes: ${shell.output()}`,
      );
      shell.child.stdin?.end();
      expect(await exited, shell.output()).toBe(0);
      expect(shell.output()).toMatch(/\* closed 1000 \(normal closure\)/);
    }
    const curl = watch(spawn('bash', ['-c', commands[2] as string], { cwd: ROOT, env, stdio: 'pipe' }));
    const curlExit = await new Promise<number | null>((resolve) => curl.child.once('exit', (code) => resolve(code)));
    expect(curlExit, curl.output()).toBe(0);
    expect(curl.stdout()).toBe(`hello from ${alice} (plain HTTP GET /chat?user=alice)\n`);
  }, 120_000);

  it('in a terminal, each start-up line is one line, and the banner still comes last', async () => {
    const { file } = await exampleOnFreePorts();
    // script(1) gives the demo a pseudo-terminal as stdout, as a user's terminal would.
    const command = `'${NODE_BIN}' '${CLI}' --demo --config '${file}'`;
    const tty = watch(spawn('script', ['-qfec', command, '/dev/null'], { cwd: ROOT, stdio: 'pipe', detached: true }));
    cleanups.push(() => {
      try {
        process.kill(-(tty.child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    });
    await waitFor(() => tty.output().includes('Stop with Ctrl-C.'), 20_000, `the banner (output: ${tty.output()})`);
    const text = stripVTControlCharacters(tty.output()).replaceAll('\r', '');
    const lines = text.split('\n');
    const bannerStart = lines.findIndex((l) => l.startsWith('wsgate demo is running'));
    const before = lines.slice(0, bannerStart).filter((l) => l !== '');
    expect(before.length).toBeGreaterThan(3);
    for (const line of before) expect(line).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(wsgate\/\d+\): /);
    expect(before.at(-1)).toContain('wsgate ready');
  });
});
