#!/usr/bin/env node
// wsgate command line: flags, demo mode, signals.
//   wsgate                      demo: config.example.yaml plus built-in demo backends
//   wsgate --config FILE        run on FILE
//   wsgate --config FILE --check  validate FILE and exit 0 (valid) or 1 (invalid)

import { type ChildProcess, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/types.js';
import { Gateway } from './gateway.js';
import { createLogger } from './observe/log.js';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const HELP = `wsgate: WebSocket reverse proxy and load balancer

Usage: wsgate [--config FILE] [--check]

  -c, --config FILE   configuration file (YAML). Without it, wsgate runs the demo:
                      config.example.yaml and three demo backends on 127.0.0.1:3001-3003
      --check         validate the configuration and exit (0 valid, 1 invalid)
  -h, --help          show this help
  -v, --version       print the version

Signals: SIGTERM/SIGINT drain and exit (a second one exits at once).
Docs: README.md`;

function version(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (err) {
    process.stderr.write(`wsgate: ${(err as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (args.values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (args.values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const demo = args.values.config === undefined;
  const file = args.values.config ?? join(packageRoot, 'config.example.yaml');

  let config: Config;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
  if (args.values.check) {
    process.stdout.write(`${file}: configuration is valid\n`);
    return 0;
  }

  const log = createLogger(config.log.level);
  const demoBackends = demo ? await startDemoBackends(config) : undefined;
  const gateway = await Gateway.start(config, { log });
  if (demo) printDemoHelp(gateway);
  else log.info({ config: file, version: version() }, 'wsgate ready');

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, live: gateway.tunnels.size, drainMs: config.timeouts.drainMs }, 'draining');
    gateway
      .stop()
      .then((destroyed) => {
        log.info({ destroyed }, 'stopped');
        demoBackends?.kill();
        process.exit(0);
      })
      .catch((err: Error) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return -1;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      check: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
    strict: true,
    allowPositionals: false,
  });
}

/** Forks the demo backends on the loopback ports the example pools point at; they exit with us. */
function startDemoBackends(config: Config): Promise<ChildProcess> {
  const ports = new Set<number>();
  for (const pool of config.pools.values()) {
    for (const b of pool.backends) if (b.host === '127.0.0.1' || b.host === 'localhost') ports.add(b.port);
  }
  const child = fork(join(packageRoot, 'dist', 'src', 'demo', 'backends.js'), [...ports].map(String), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (msg: { ready?: unknown; error?: string }) => {
      if (msg.error) reject(new Error(`demo backends failed: ${msg.error}`));
      else resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`demo backends exited with ${code}`)));
  });
}

function printDemoHelp(gateway: Gateway): void {
  const plain = gateway.boundListeners.find((l) => !l.secure);
  const tls = gateway.boundListeners.find((l) => l.secure);
  const lines = ['', 'wsgate demo is running (three demo backends on 127.0.0.1:3001-3003).', ''];
  if (plain) lines.push(`  ws://   ws://127.0.0.1:${plain.port}/chat?user=alice`);
  if (tls) {
    lines.push(
      `  wss://  wss://127.0.0.1:${tls.port}/chat?user=alice${tls.selfSigned ? '   (self-signed certificate)' : ''}`,
    );
  }
  lines.push(`  admin   http://127.0.0.1:${gateway.adminPort}/metrics  (/healthz, /readyz)`, '');
  if (plain) {
    const url = `ws://127.0.0.1:${plain.port}/chat?user=alice`;
    lines.push(
      'Try it (the same user always lands on the same backend):',
      `  npx wscat -c '${url}'`,
      `  node -e "const w=new WebSocket('${url}');w.onmessage=e=>console.log(e.data);w.onopen=()=>w.send('hi')"`,
      `  curl http://127.0.0.1:${plain.port}/chat?user=alice`,
      '',
      'Stop with Ctrl-C.',
      '',
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: Error) => {
    process.stderr.write(`wsgate: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
