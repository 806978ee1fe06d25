// A reload that lands while a backend handshake is in flight (issue 7, faults): an unchanged route's handshake
// completes into a working tunnel; a handshake on a route the reload removed ends with 1001 instead of becoming a
// tunnel the drain never saw.

import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { startRawBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { afterHead, closeCodeIn } from '../helpers/frames.js';
import { type ConfigObject, simpleConfig, startGateway } from '../helpers/gateway.js';
import { switchingProtocols } from '../helpers/hostile-backends.js';
import { upgradeInFlight } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

/** A backend that answers each upgrade 300 ms late, so a reload can land in between. */
async function slowBackend() {
  const b = await startRawBackend((req, socket) => {
    setTimeout(() => {
      if (!socket.destroyed) socket.write(switchingProtocols(req));
    }, 300);
    return undefined;
  });
  cleanups.push(() => b.close());
  return b;
}

function withRoutes(base: ConfigObject, routes: unknown[]): ConfigObject {
  return { ...base, routes };
}

describe('reload during a backend handshake', () => {
  it('an unchanged route: the handshake completes into a live tunnel', async () => {
    const b = await slowBackend();
    const base = withRoutes(simpleConfig([b.url]), [{ name: 'main', match: { path: '/' }, pool: 'main' }]);
    const gw = await startGateway(base);
    cleanups.push(() => gw.stop());
    const { socket: s, received } = await upgradeInFlight(gw.port, () => b.connections === 1);
    cleanups.push(async () => s.destroy());
    const added = [
      { name: 'other', match: { path: '/other' }, pool: 'main' },
      { name: 'main', match: { path: '/' }, pool: 'main' },
    ];
    await gw.gateway.reload(parseConfig(stringify(withRoutes(base, added)), '/virtual/reload.yaml'));
    await waitFor(() => received().toString('latin1').startsWith('HTTP/1.1 101'));
    await waitFor(() => gw.gateway.tunnels.size === 1);
    // Still open a while later: nobody drained it.
    await new Promise((r) => setTimeout(r, 200));
    expect(s.destroyed).toBe(false);
    expect(gw.gateway.tunnels.size).toBe(1);
  });

  it('a removed route: the late 101 is followed by close 1001, and nothing is left behind', async () => {
    const b = await slowBackend();
    const base = withRoutes(simpleConfig([b.url]), [
      { name: 'doomed', match: { path: '/doomed' }, pool: 'main' },
      { name: 'main', match: { path: '/' }, pool: 'main' },
    ]);
    const gw = await startGateway(base);
    cleanups.push(() => gw.stop());
    const { socket: s, received } = await upgradeInFlight(gw.port, () => b.connections === 1, { path: '/doomed' });
    cleanups.push(async () => s.destroy());
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    const kept = [{ name: 'main', match: { path: '/' }, pool: 'main' }];
    await gw.gateway.reload(parseConfig(stringify(withRoutes(base, kept)), '/virtual/reload.yaml'));
    await closed;
    const all = received();
    expect(all.toString('latin1').startsWith('HTTP/1.1 101')).toBe(true);
    expect(closeCodeIn(afterHead(all))).toBe(1001);
    await waitFor(() => gw.gateway.tunnels.size === 0 && gw.gateway.admission.active === 0);
  });
});
