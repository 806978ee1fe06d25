// DNS discovery for a pool: resolves A and AAAA records of one name every interval (the Kubernetes headless-
// Service pattern) and hands the resulting backend list to the pool. A failed or empty lookup keeps the last
// good set: a DNS hiccup must not empty a pool (health checks deal with addresses that stopped answering).

import { Resolver } from 'node:dns/promises';
import type { BackendConfig, DiscoveryConfig } from '../config/types.js';
import type { Logger } from '../observe/log.js';

/** The part of node:dns/promises `Resolver` discovery uses; tests inject their own. */
export interface AddressResolver {
  resolve4(hostname: string): Promise<string[]>;
  resolve6(hostname: string): Promise<string[]>;
}

/** Per query attempt; with two tries a dead nameserver costs a lookup about 4 s. */
export const DNS_TIMEOUT_MS = 2000;
const DNS_TRIES = 2;

export function systemResolver(nameservers: readonly string[] | undefined): AddressResolver {
  const resolver = new Resolver({ timeout: DNS_TIMEOUT_MS, tries: DNS_TRIES });
  if (nameservers) resolver.setServers([...nameservers]);
  return resolver;
}

export type LookupResult =
  | { readonly ok: true; readonly addresses: readonly string[] }
  | { readonly ok: false; readonly error: string };

/**
 * Both families, sorted and de-duplicated. "No records of this family" (ENODATA) is an answer; any other error
 * fails the whole lookup, because a partial answer would silently drop the other family's members.
 */
export async function lookupAddresses(resolver: AddressResolver, name: string): Promise<LookupResult> {
  const answers = await Promise.allSettled([
    settled(() => resolver.resolve4(name)),
    settled(() => resolver.resolve6(name)),
  ]);
  const addresses = new Set<string>();
  for (const answer of answers) {
    if (answer.status === 'fulfilled') {
      for (const a of answer.value) addresses.add(a);
      continue;
    }
    const code = (answer.reason as NodeJS.ErrnoException).code;
    if (code !== 'ENODATA') return { ok: false, error: code ?? String(answer.reason) };
  }
  if (addresses.size === 0) return { ok: false, error: 'no addresses' };
  return { ok: true, addresses: [...addresses].sort() };
}

/** Turns a synchronous throw (e.g. a malformed name) into a rejection, so allSettled sees every outcome. */
async function settled<T>(query: () => Promise<T>): Promise<T> {
  return query();
}

/** The backend a discovered address stands for (every discovered backend weighs 1). */
export function backendAt(
  address: string,
  discovery: Pick<DiscoveryConfig, 'port' | 'scheme' | 'tlsOptions' | 'proxyProtocol'>,
): BackendConfig {
  const host = address.includes(':') ? `[${address}]` : address;
  const { port, scheme, tlsOptions, proxyProtocol } = discovery;
  return {
    id: `${scheme}://${host}:${port}`,
    host: address,
    port,
    tls: scheme === 'wss',
    weight: 1,
    ...(tlsOptions === undefined ? {} : { tlsOptions }),
    ...(proxyProtocol === undefined ? {} : { proxyProtocol }),
  };
}

export class DnsDiscovery {
  readonly config: DiscoveryConfig;
  private readonly resolver: AddressResolver;
  private readonly apply: (backends: readonly BackendConfig[]) => void;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Whether the latest lookup failed; failures are logged once per streak, not once per interval. */
  private failing = false;

  constructor(
    config: DiscoveryConfig,
    resolver: AddressResolver,
    apply: (backends: readonly BackendConfig[]) => void,
    log: Logger,
  ) {
    this.config = config;
    this.resolver = resolver;
    this.apply = apply;
    this.log = log;
  }

  /** Resolves once now (so a starting gateway has members) and then every interval. */
  async start(): Promise<void> {
    await this.refresh();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async refresh(): Promise<void> {
    const result = await lookupAddresses(this.resolver, this.config.dns);
    if (this.stopped) return;
    if (result.ok) {
      if (this.failing) this.log.info({ event: 'discovery_recovered', dns: this.config.dns }, 'DNS lookup recovered');
      this.failing = false;
      this.apply(result.addresses.map((a) => backendAt(a, this.config)));
    } else if (!this.failing) {
      this.failing = true;
      this.log.warn(
        { event: 'discovery_failed', dns: this.config.dns, error: result.error },
        'DNS lookup failed; keeping the last good backend set',
      );
    }
    this.timer = setTimeout(() => void this.refresh(), this.config.intervalMs);
    this.timer.unref();
  }
}
