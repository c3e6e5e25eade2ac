/**
 * Which webhook destinations are refused: loopback, private, link-local (cloud metadata lives at
 * 169.254.169.254), unique-local, carrier-grade NAT, multicast, unspecified and reserved addresses,
 * and names that mean this host. Used at create/PATCH for literal addresses and names; the webhook
 * connector checks the resolved address of every connection again (issue 4), so DNS rebinding and
 * redirects cannot slip past.
 */
import ipaddr from 'ipaddr.js';

const blockedHostnames = /^(localhost|localhost\.localdomain|metadata\.google\.internal|metadata)$/i;

/** Whether an IP address (v4 or v6 text) may not be a webhook destination. */
export function isBlockedAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return true;
  let ip = ipaddr.parse(address);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address();
  return ip.range() !== 'unicast';
}

/** Whether a URL's host is refused before any lookup: a blocked literal address or a local name. */
export function isBlockedHost(hostname: string): boolean {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (ipaddr.isValid(host)) return isBlockedAddress(host);
  // Forms like "127.1" or "2130706433" that resolvers read as IPv4 literals.
  if (/^[0-9.]+$/.test(host) || /^0x[0-9a-f]+$/i.test(host)) return true;
  return blockedHostnames.test(host) || /\.localhost\.?$/i.test(host);
}
