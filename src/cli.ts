#!/usr/bin/env -S node --max-semi-space-size=2
// wsgate command line: flags, demo mode, signals, single process or cluster.
//   wsgate                        demo: config.example.yaml plus built-in demo backends
//   wsgate --config FILE          run on FILE (reloaded on SIGHUP, on change, on POST /reload)
//   wsgate --config FILE --check  validate FILE and exit 0 (valid) or 1 (invalid)

import { type ChildProcess, fork } from 'node:child_process';
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, parseConfig } from './config/load.js';
import type { Config } from './config/types.js';
import { demoBackendId } from './demo/names.js';
import { Gateway } from './gateway.js';
import { createLogger, type Logger } from './observe/log.js';
import { Primary, resolveWorkers, runWorker } from './ops/cluster.js';
import { controlGateway } from './ops/control.js';
import { ReloadController } from './ops/reload.js';
import { VERSION } from './ops/version.js';
import { FileWatcher } from './ops/watch.js';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const HELP = `wsgate: WebSocket reverse proxy and load balancer

Usage: wsgate [--config FILE] [--check] [--no-watch]

  -c, --config FILE   configuration file (YAML). Without it, wsgate runs the demo:
                      config.example.yaml and three demo backends on 127.0.0.1:3001-3003
      --check         validate the configuration and exit (0 valid, 1 invalid)
      --no-watch      do not reload when the config file or its TLS files change
  -h, --help          show this help
  -v, --version       print the version

Reload: SIGHUP, a change of the config file, or POST /reload on the admin listener.
  An invalid file is reported and never replaces the running configuration.
Signals: SIGTERM/SIGINT drain and exit 0 (a second one exits at once).
Docs: README.md, docs/admin-api.md`;

async function main(argv: string[]): Promise<number> {
  if (cluster.isWorker) {
    // Workers get the validated config from the primary, not from the file.
    runWorker((level) => createLogger(level).child({ worker: Number(process.env.WSGATE_WORKER_ID) }));
    return -1;
  }
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
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const demo = args.values.config === undefined;
  const file = resolvePath(args.values.config ?? join(packageRoot, 'config.example.yaml'));

  let text: string;
  let config: Config;
  try {
    text = readFileSync(file, 'utf8');
    config = parseConfig(text, file);
  } catch (err) {
    if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
    else process.stderr.write(`${file}: cannot read config file: ${(err as Error).message}\n`);
    return 1;
  }
  if (args.values.check) {
    process.stdout.write(`${file}: configuration is valid\n`);
    return 0;
  }

  const log = createLogger(config.log.level);
  const watch = args.values['no-watch'] !== true;
  const demoBackends = demo ? await startDemoBackends(config) : undefined;
  const workers = resolveWorkers(config.workers);
  if (workers > 1) await runPrimary({ file, text, config, workers, log, watch, demoBackends });
  else await runSingle({ file, config, log, watch, demo, demoBackends });
  return -1;
}

interface RunOptions {
  readonly file: string;
  readonly config: Config;
  readonly log: Logger;
  readonly watch: boolean;
  readonly demoBackends: ChildProcess | undefined;
}

async function runSingle(options: RunOptions & { demo: boolean }): Promise<void> {
  const { file, log } = options;
  const started = Gateway.start(options.config, { log });
  let control: ReturnType<typeof controlGateway> | undefined;
  // Signals during start-up (a first DNS lookup may take seconds) must not kill the process: they wait for it.
  process.on('SIGHUP', () => void started.then(() => control?.controller.reload('signal')));
  onShutdownSignal(log, async (signal) => {
    const gateway = await started;
    control?.close();
    const { acceptDelayMs } = gateway.config.shutdown;
    log.info(
      { signal, live: gateway.tunnels.size, acceptDelayMs, drainMs: gateway.config.timeouts.drainMs },
      'shutting down: readiness off, draining',
    );
    const destroyed = await gateway.shutdown();
    await gateway.closeAdmin();
    options.demoBackends?.kill();
    log.info({ destroyed }, 'stopped');
  });
  const gateway = await started;
  control = controlGateway(gateway, file, { watch: options.watch });
  if (options.demo) printDemoHelp(gateway);
  log.info(
    { config: file, version: VERSION, workers: 1, listeners: gateway.boundListeners, adminPort: gateway.adminPort },
    'wsgate ready',
  );
}

async function runPrimary(options: RunOptions & { text: string; workers: number }): Promise<void> {
  const { file, log } = options;
  const primary = new Primary({
    file,
    text: options.text,
    config: options.config,
    workers: options.workers,
    log,
  });
  let watcher: FileWatcher | undefined;
  const controller = new ReloadController({
    file,
    config: options.config,
    target: primary,
    ops: primary.ops,
    log,
    onApplied: () => watcher?.watch(controller.watchedFiles()),
  });
  primary.controller = controller;
  // Signals during start-up must not kill the primary before its handlers exist.
  onShutdownSignal(
    log,
    (signal) => {
      watcher?.close();
      log.info({ signal, workers: options.workers }, 'shutting down: readiness off, draining every worker');
      return primary.shutdown().then(() => {
        options.demoBackends?.kill();
        log.info('stopped');
      });
    },
    () => primary.killAll(),
  );
  process.on('SIGHUP', () => void controller.reload('signal'));
  await primary.start();
  if (options.watch) {
    watcher = new FileWatcher(() => void controller.reload('watch'));
    watcher.watch(controller.watchedFiles());
  }
  const { reports } = await primary.workerStatuses();
  log.info(
    {
      config: file,
      version: VERSION,
      workers: options.workers,
      listeners: reports[0]?.listeners ?? [],
      adminPort: primary.adminPort,
    },
    'wsgate ready',
  );
}

/**
 * First SIGTERM/SIGINT: `drain` (exit 0 when it resolves, 1 if it fails). A second one: `now`, then exit 1 at
 * once, without waiting for tunnels.
 */
function onShutdownSignal(log: Logger, drain: (signal: NodeJS.Signals) => Promise<void>, now?: () => void): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      now?.();
      process.exit(1);
    }
    stopping = true;
    drain(signal).then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      check: { type: 'boolean' },
      'no-watch': { type: 'boolean' },
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
  lines.push(
    `  status  http://127.0.0.1:${gateway.adminPort}/  (/api/status, /metrics, /healthz, /readyz, POST /reload)`,
    '',
  );
  if (plain) {
    const url = `ws://127.0.0.1:${plain.port}/chat?user=alice`;
    lines.push('Consistent hashing on ?user= picks these backends (the same user always lands on the same one):');
    const chat = gateway.runtime.pools.get('chat');
    for (const user of ['alice', 'bob', 'carol', 'dave', 'erin']) {
      const member = chat?.pick(user);
      if (member) lines.push(`  ${user.padEnd(6)} → ${demoBackendId(member.backend.port)}`);
    }
    lines.push(
      '',
      'Try it:',
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
