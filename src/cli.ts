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
import { ClusterFleet, resolveWorkers } from './control/cluster/fleet.js';
import { runWorker } from './control/cluster/worker.js';
import { ControlPlane } from './control/control-plane.js';
import type { Fleet } from './control/fleet.js';
import { InProcessFleet } from './control/in-process.js';
import { VERSION } from './control/version.js';
import { demoBackendId } from './demo/names.js';
import { type BoundListener, Gateway } from './gateway/gateway.js';
import { createLogger, type Logger } from './observe/log.js';

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
  const demoBackends = demo ? await startDemoBackends(config) : undefined;
  await run({ file, text, config, log, watch: args.values['no-watch'] !== true, demo, demoBackends });
  return -1;
}

interface RunOptions {
  readonly file: string;
  readonly text: string;
  readonly config: Config;
  readonly log: Logger;
  readonly watch: boolean;
  readonly demo: boolean;
  readonly demoBackends: ChildProcess | undefined;
}

/** Starts the data plane (one Gateway here, or N cluster workers) and the control plane that drives it. */
async function run(options: RunOptions): Promise<void> {
  const { file, text, config, log } = options;
  const workers = resolveWorkers(config.workers);
  const cluster = workers > 1 ? new ClusterFleet({ file, text, config, workers, log }) : undefined;
  const fleet: Promise<Fleet> = cluster
    ? Promise.resolve(cluster)
    : Gateway.start(config, { log }).then((gateway) => new InProcessFleet(gateway));
  const control = fleet.then((f) => ControlPlane.start({ fleet: f, config, log, file, watch: options.watch }));
  // Signals during start-up (a first DNS lookup may take seconds) must not kill the process: they wait for it.
  process.on('SIGHUP', () => void control.then((c) => c.reload('signal')));
  onShutdownSignal(
    log,
    async (signal) => {
      const c = await control;
      log.info(
        { signal, workers, acceptDelayMs: c.config.shutdown.acceptDelayMs, drainMs: c.config.timeouts.drainMs },
        'shutting down: readiness off, draining',
      );
      const destroyed = await c.shutdown();
      options.demoBackends?.kill();
      log.info(destroyed === undefined ? {} : { destroyed }, 'stopped');
    },
    () => cluster?.kill(),
  );
  const running = await control;
  await cluster?.started();
  const listeners = await running.fleet.listeners();
  if (options.demo) printDemoHelp(listeners, running.adminPort, inProcessGateway(running.fleet));
  log.info({ config: file, version: VERSION, workers, listeners, adminPort: running.adminPort }, 'wsgate ready');
}

function inProcessGateway(fleet: Fleet): Gateway | undefined {
  return fleet instanceof InProcessFleet ? fleet.gateway : undefined;
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

function printDemoHelp(listeners: readonly BoundListener[], adminPort: number, gateway: Gateway | undefined): void {
  const plain = listeners.find((l) => !l.secure);
  const tls = listeners.find((l) => l.secure);
  const lines = ['', 'wsgate demo is running (three demo backends on 127.0.0.1:3001-3003).', ''];
  if (plain) lines.push(`  ws://   ws://127.0.0.1:${plain.port}/chat?user=alice`);
  if (tls) {
    lines.push(
      `  wss://  wss://127.0.0.1:${tls.port}/chat?user=alice${tls.selfSigned ? '   (self-signed certificate)' : ''}`,
    );
  }
  lines.push(`  status  http://127.0.0.1:${adminPort}/  (/api/status, /metrics, /healthz, /readyz, POST /reload)`, '');
  if (plain) {
    const url = `ws://127.0.0.1:${plain.port}/chat?user=alice`;
    lines.push('Consistent hashing on ?user= picks these backends (the same user always lands on the same one):');
    const chat = gateway?.runtime.pools.get('chat');
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
