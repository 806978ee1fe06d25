// A cluster worker's loop: waits for the primary's validated config, runs a Gateway on it, and answers the
// primary's requests (reload, metrics, status, shutdown). The worker reads no file of its own and serves no admin
// listener: the control plane lives in the primary.

import { parseConfig } from '../../config/load.js';
import type { Config } from '../../config/types.js';
import { controlBackend } from '../../gateway/backend-control.js';
import { listConnections } from '../../gateway/connections.js';
import { Gateway } from '../../gateway/gateway.js';
import type { Logger } from '../../observe/log.js';
import type { ToWorker } from './messages.js';

export function runWorker(makeLog: (level: string) => Logger): void {
  let log = makeLog('info');
  // The primary coordinates: a terminal's Ctrl-C and SIGHUP reach the whole process group, but only the primary
  // acts on them. SIGTERM sent to one worker drains just that worker (the primary then starts a fresh one).
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  let gateway: Gateway | undefined;
  let file = '';
  const started = (): Gateway => {
    if (!gateway) throw new Error('not started');
    return gateway;
  };
  const reply = (id: number, work: () => Promise<unknown>) => {
    work().then(
      (value) => process.send?.({ type: 'wsgate:reply', id, ok: true, value }),
      (err: Error) => process.send?.({ type: 'wsgate:reply', id, ok: false, error: err.message }),
    );
  };
  const failed = (error: string) =>
    process.send?.({ type: 'wsgate:failed', error }, undefined, undefined, () => process.exit(1));
  const drainAndExit = (acceptDelayMs?: number, drainMs?: number) => {
    if (!gateway) process.exit(0);
    gateway.shutdown({ acceptDelayMs, drainMs }).then(
      (destroyed) => {
        log.info({ destroyed }, 'worker drained');
        process.exit(0);
      },
      (err: Error) => {
        log.error({ err }, 'worker drain failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => drainAndExit());
  process.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'wsgate:start': {
        file = message.file;
        let config: Config;
        try {
          config = parseConfig(message.text, file);
        } catch (err) {
          // The primary validated this text; only a TLS file vanishing in between can get here.
          failed((err as Error).message);
          return;
        }
        log = makeLog(config.log.level);
        Gateway.start(config, {
          log,
          generation: message.generation,
          fallbackCert: message.fallbackCert,
          ticketKey: Buffer.from(message.ticketKey, 'base64'),
        }).then(
          (gw) => {
            gateway = gw;
            process.send?.({ type: 'wsgate:ready', generation: gw.generation });
          },
          (err: Error) => {
            log.debug({ err }, 'worker could not start');
            failed(err.message);
          },
        );
        return;
      }
      case 'wsgate:reload':
        return reply(message.id, async () => started().reload(parseConfig(message.text, file), message.generation));
      case 'wsgate:metrics':
        return reply(message.id, async () => started().metrics.registry.getMetricsAsJSON());
      case 'wsgate:status':
        return reply(message.id, async () => started().processStatus());
      case 'wsgate:backend':
        return reply(message.id, async () =>
          controlBackend(started().runtime, message.pool, message.backend, message.change),
        );
      case 'wsgate:connections':
        return reply(message.id, async () => listConnections(started().tunnels, message.filter));
      case 'wsgate:ticketKey':
        gateway?.setTicketKey(Buffer.from(message.key, 'base64'));
        return;
      case 'wsgate:shutdown':
        return drainAndExit(message.acceptDelayMs, message.drainMs);
    }
  });
}
