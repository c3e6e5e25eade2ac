/**
 * API tokens as the replicated state keeps them: an id, a name, the SHA-256 of the secret (never the
 * secret), and scopes. The edge draws ids and secrets and hashes them; this module only stores
 * records and answers what a scope allows. Pure.
 *
 * Scopes: `admin` (everything), `publish:<topic pattern>`, `consume:<subscription pattern>` (pull,
 * ack, nack, modify-ack-deadline, WebSocket consumers, and reading the subscription), `tail:<topic
 * pattern>` (topic tails). A pattern is a name in which `*` stands for any run of characters.
 */

export interface TokenRecord {
  id: string;
  name: string;
  /** Hex SHA-256 of the secret part of the token. */
  secretHash: string;
  scopes: string[];
  createdAtMs: number;
  /** Requests per second this token may make on one node (a token bucket, one second's burst); 0: no limit. */
  rateLimitPerSecond?: number;
  /** WebSockets this token may hold open on one node. */
  webSocketsMax?: number;
}

export type ScopeAction = 'publish' | 'consume' | 'tail';

const patternCache = new Map<string, RegExp>();

function patternRegExp(pattern: string): RegExp {
  let re = patternCache.get(pattern);
  if (!re) {
    // Names are A-Za-z0-9._- (checked at the edge), so only `.` needs escaping besides `*`.
    re = new RegExp(`^${pattern.replace(/\./g, '\\.').replace(/\*/g, '.*')}$`);
    if (patternCache.size > 10_000) patternCache.clear();
    patternCache.set(pattern, re);
  }
  return re;
}

export function isAdmin(scopes: readonly string[]): boolean {
  return scopes.includes('admin');
}

/** Whether `scopes` allow `action` on the topic or subscription `name`. Admin allows everything. */
export function allows(scopes: readonly string[], action: ScopeAction, name: string): boolean {
  for (const scope of scopes) {
    if (scope === 'admin') return true;
    const colon = scope.indexOf(':');
    if (colon < 0 || scope.slice(0, colon) !== action) continue;
    if (patternRegExp(scope.slice(colon + 1)).test(name)) return true;
  }
  return false;
}
