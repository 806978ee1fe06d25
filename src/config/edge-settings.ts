// Normalisation of the edge controls' keys (edge-schema.ts): the raw values turned into the runtime types, with
// the defaults that depend on other keys (perIpBurst) filled in.

import type { RawConfig } from './schema.js';
import type { ClientCertMode, ConnectionRateConfig, RedactConfig } from './types.js';

type RawTls = NonNullable<RawConfig['listeners'][number]['tls']>;

/** listeners[].tls.clientCa and .clientCert: a mode that asks for certificates needs the CAs to check them with. */
export function clientCertSettings(
  tls: RawTls,
  readCa: (file: string) => string | undefined,
  report: (message: string) => void,
): { clientCa: string | undefined; clientCert: ClientCertMode } {
  if (tls.clientCert !== 'none' && tls.clientCa === undefined) {
    report(`clientCert "${tls.clientCert}" needs clientCa: the CAs client certificates are checked against`);
  }
  return { clientCa: tls.clientCa === undefined ? undefined : readCa(tls.clientCa), clientCert: tls.clientCert };
}

export function connectionRate(raw: RawConfig['limits']['connectionRate']): ConnectionRateConfig | undefined {
  if (raw === undefined) return undefined;
  const perIp = raw.perIpPerSecond ?? Number.POSITIVE_INFINITY;
  return {
    perSecond: raw.perSecond ?? Number.POSITIVE_INFINITY,
    perIpPerSecond: perIp,
    perIpBurst:
      raw.perIpBurst ?? (Number.isFinite(perIp) ? Math.max(1, Math.ceil(perIp * 2)) : Number.POSITIVE_INFINITY),
  };
}

export function redactSettings(raw: RawConfig['log']['redact']): RedactConfig {
  return {
    query: raw.includes('query'),
    cookie: raw.includes('cookie'),
    authorization: raw.includes('authorization'),
  };
}
