// Runs wsgate on a validated config: the data plane (one Gateway here, or cluster workers) and the control plane
// that drives it, with signals; in demo mode the banner comes last, after the start-up log lines.

import type { ChildProcess } from 'node:child_process';
import type { Config } from '../config/types.js';
import { ClusterFleet, resolveWorkers } from '../control/cluster/fleet.js';
import { runWorker } from '../control/cluster/worker.js';
import { ControlPlane } from '../control/control-plane.js';
import type { Fleet } from '../control/fleet.js';
import { InProcessFleet } from '../control/in-process.js';
import { VERSION } from '../control/version.js';
import { Gateway } from '../gateway/gateway.js';
import { createLogger, type Logger, writeAfterLogLines } from '../observe/log.js';
import { demoBackendPorts, demoBanner } from './demo.js';
import { describeBindError, failWith } from './startup-errors.js';

/** A cluster worker: gets the validated config from the primary, not from the file. */
export function runClusterWorker(): void {
  runWorker((level) => createLogger(level).child({ worker: Number(process.env.WSGATE_WORKER_ID) }));
}

export interface RunOptions {
  readonly file: string;
  readonly text: string;
  readonly config: Config;
  readonly watch: boolean;
  readonly demo: boolean;
  readonly demoBackends: ChildProcess | undefined;
}

/**
 * Starts the data plane and the control plane; rejects with a StartFailure when a listener or the admin listener
 * cannot bind.
 */
export async function run(options: RunOptions): Promise<void> {
  const { file, text, config } = options;
  const log = createLogger(config.log.level);
  const workers = resolveWorkers(config.workers);
  const cluster = workers > 1 ? new ClusterFleet({ file, text, config, workers, log }) : undefined;
  const fleet: Promise<Fleet> = cluster
    ? Promise.resolve(cluster)
    : Gateway.start(config, { log })
        .then((gateway) => new InProcessFleet(gateway))
        .catch(failWith((err) => describeBindError(err, config, 'listeners')));
  const control = fleet.then((f) =>
    ControlPlane.start({ fleet: f, config, log, file, watch: options.watch }).catch(
      failWith((err) => describeBindError(err, config, 'admin')),
    ),
  );
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
  let running: ControlPlane;
  try {
    running = await control;
    await cluster?.started().catch(failWith((err) => describeBindError(err, config, 'listeners')));
  } catch (err) {
    cluster?.kill();
    throw err;
  }
  const listeners = await running.fleet.listeners();
  log.info({ config: file, version: VERSION, workers, listeners, adminPort: running.adminPort }, 'wsgate ready');
  if (options.demo) {
    const plain = listeners.find((l) => !l.secure);
    const tls = listeners.find((l) => l.secure);
    const gateway = running.fleet instanceof InProcessFleet ? running.fleet.gateway : undefined;
    const chat = gateway?.runtime.pools.get('chat');
    const picks = ['alice', 'bob', 'carol', 'dave', 'erin'].flatMap((user) => {
      const member = chat?.pick(user);
      return member ? [{ user, port: member.backend.port }] : [];
    });
    // Last, after every start-up line (the logger may still hold some).
    writeAfterLogLines(
      log,
      demoBanner({
        backendPorts: demoBackendPorts(config),
        plainPort: plain?.port,
        tls: tls && { port: tls.port, selfSigned: tls.selfSigned },
        adminPort: running.adminPort,
        picks,
      }),
    );
  }
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
