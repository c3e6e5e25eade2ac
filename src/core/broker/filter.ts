/**
 * Subscription filters: tags (any listed tag matches) and AMQP-style binding keys over a message's
 * `routingKey` (`*` is exactly one word, `#` zero or more). With both, a message must match both.
 */
import type { FilterConfig } from './types.js';

export interface MessageKeys {
  tags?: string[];
  routingKey?: string;
}

export type CompiledFilter = (message: MessageKeys) => boolean;

const matchAll: CompiledFilter = () => true;

export function compileFilter(filter: FilterConfig | null): CompiledFilter {
  if (!filter) return matchAll;
  const tags = filter.tags && filter.tags.length > 0 ? new Set(filter.tags) : null;
  const patterns = filter.bindingKeys && filter.bindingKeys.length > 0 ? filter.bindingKeys.map((k) => k.split('.')) : null;
  if (!tags && !patterns) return matchAll;
  return (message) => {
    if (tags) {
      if (!message.tags || !message.tags.some((t) => tags.has(t))) return false;
    }
    if (patterns) {
      if (message.routingKey === undefined) return false;
      const words = message.routingKey.split('.');
      if (!patterns.some((p) => bindingKeyMatches(p, words))) return false;
    }
    return true;
  };
}

/** Whether the pattern's words match the routing key's words. Iterative, so no input can blow the stack. */
export function bindingKeyMatches(pattern: readonly string[], words: readonly string[]): boolean {
  // reachable[j]: the pattern prefix seen so far can consume exactly the first j words.
  let reachable = new Array<boolean>(words.length + 1).fill(false);
  reachable[0] = true;
  for (const p of pattern) {
    const next = new Array<boolean>(words.length + 1).fill(false);
    for (let j = 0; j <= words.length; j++) {
      if (!reachable[j]) continue;
      if (p === '#') {
        for (let k = j; k <= words.length; k++) next[k] = true;
        break;
      }
      if (j < words.length && (p === '*' || p === words[j])) next[j + 1] = true;
    }
    reachable = next;
  }
  return reachable[words.length] === true;
}
