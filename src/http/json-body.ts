/**
 * The JSON body parser. fastify's own (secure-json-parse) runs two regular expressions over every body
 * for "__proto__" and "constructor", in any spelling, escapes included; and a publish then had to
 * scan every message for what JSON escapes (PublishItem.jsonSafe). A body with no backslash in it
 * needs neither: no string in it holds an escape, so none can spell those keys in disguise, and every
 * string can go back into JSON as it is (raw control characters are not valid JSON at all). Such a
 * body is parsed with JSON.parse, its parsed objects are checked for those keys by secure-json-parse's
 * `scan` (a walk over a publish's few dozen objects, where two substring searches through 16 KiB of
 * text took 5% of a node's CPU under publish load), and it is marked (`request.jsonWithoutEscapes`).
 * Any other body, and one that `scan` refuses, goes to fastify's parser, which refuses prototype
 * poisoning with its usual 400.
 */
import type { FastifyInstance } from 'fastify';
import { scan } from 'secure-json-parse';

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
    if (text.length > 0 && !text.includes('\\')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
        if (typeof parsed === 'object' && parsed !== null) scan(parsed, { protoAction: 'error', constructorAction: 'error' });
      } catch {
        return strict(request, text, done); // the same 400 as any malformed or poisoned body
      }
      request.jsonWithoutEscapes = true;
      return done(null, parsed);
    }
    return strict(request, text, done);
  });
}
