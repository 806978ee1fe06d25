// routes[].access: which client addresses may use a route. Built once per route per config generation; a check is
// one or two BlockList lookups on the real client address (listeners[].clientAddress), deny first.

import type { AccessConfig } from '../config/types.js';
import { CidrList } from '../net/cidr.js';
import { normaliseIp } from '../routing/hash-key.js';

/** Why an address was refused: the `reason` label of wsgate_access_denied_total. */
export type AddressRefusal = 'denied_address' | 'not_allowed_address';

export class AddressList {
  private readonly allow: CidrList | undefined;
  private readonly deny: CidrList;

  constructor(config: AccessConfig) {
    this.allow = config.allow === undefined ? undefined : new CidrList(config.allow);
    this.deny = new CidrList(config.deny);
  }

  /**
   * Undefined when `address` may pass, else why not. An IPv4-mapped IPv6 address is checked as its IPv4 form, so
   * it meets the IPv4 entries; something that is no address at all is never allowed by an allow list.
   */
  check(address: string): AddressRefusal | undefined {
    const ip = normaliseIp(address);
    if (this.deny.has(ip)) return 'denied_address';
    if (this.allow !== undefined && !this.allow.has(ip)) return 'not_allowed_address';
    return undefined;
  }
}
