/**
 * The JSON body parser. fastify's own (secure-json-parse) runs two regular expressions over every body
 * for "__proto__" and "constructor", in any spelling, escapes included; and a publish then had to
 * scan every message for what JSON escapes (PublishItem.jsonSafe). A body with no backslash in it
 * needs neither: no string in it holds an escape, so none can spell those keys in disguise, and every
 * string can go back into JSON as it is (raw control characters are not valid JSON at all). Such a
 * body is parsed with JSON.parse, its parsed objects are checked for those keys by secure-json-parse's
 * `scan` (a walk over a publish's few dozen objects, where two substring searches through 16 KiB of
 * text took 5% of a node's CPU under publish load), and it is marked (`request.jsonWithoutEscapes`).
 * Any other body is parsed by secure-json-parse with the same rules fastify's parser uses. The same
 * reading serves publishing WebSocket frames (parseCheckedJson); on HTTP, a body it refuses goes to
 * fastify's parser for fastify's usual 400.
 */
import type { FastifyInstance } from 'fastify';
import { parse as secureParse, scan } from 'secure-json-parse';

/** Prototype poisoning is refused, not stripped (fastify's default parser is set up the same way). */
const poisonRules = { protoAction: 'error', constructorAction: 'error' } as const;

/**
 * JSON as Herald reads every body and frame (see the top of the file). `withoutEscapes`: the text has
 * no backslash. Throws on malformed JSON and on a `__proto__` or `constructor` key.
 */
export function parseCheckedJson(text: string): { value: unknown; withoutEscapes: boolean } {
  if (text.includes('\\')) return { value: secureParse(text, undefined, poisonRules), withoutEscapes: false };
  const value: unknown = JSON.parse(text);
  if (typeof value === 'object' && value !== null) scan(value, poisonRules);
  return { value, withoutEscapes: true };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The JSON body had no backslash: no string in it needs escaping to be written back into JSON. */
    jsonWithoutEscapes: boolean;
  }
}

export function installJsonBodyParser(app: FastifyInstance): void {
  const strict = app.getDefaultJsonParser('error', 'error');
  app.decorateRequest('jsonWithoutEscapes', false);
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (text.length === 0) return strict(request, text, done);
    let parsed: ReturnType<typeof parseCheckedJson>;
    try {
      parsed = parseCheckedJson(text);
    } catch {
      return strict(request, text, done); // the same 400 as any malformed or poisoned body
    }
    request.jsonWithoutEscapes = parsed.withoutEscapes;
    return done(null, parsed.value);
  });
}
