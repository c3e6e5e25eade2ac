// Goal: Herald's JSON body parser answers every body exactly as fastify's own does (the same value or
// the same 400, prototype poisoning refused in any spelling), and marks a body `jsonWithoutEscapes`
// only when every string in it can be written back into JSON as it is (publishes rely on the mark to
// copy message bytes into deliveries unescaped).
// Method: differential, over fast-check JSON texts and hand-picked hostile ones, against a fastify app
// that keeps its default parser; the mark's oracle is JSON.stringify on every string in the value.
import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { installJsonBodyParser } from '../../src/http/json-body.js';

function echoApp(ours: boolean): FastifyInstance {
  const app = Fastify({ logger: false });
  if (ours) installJsonBodyParser(app);
  app.post('/echo', async (request) => ({ body: request.body, marked: ours ? request.jsonWithoutEscapes : undefined }));
  return app;
}

/** Every string in a parsed value, keys included. */
function strings(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v)) for (const x of v) strings(x, out);
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) (out.push(k), strings(x, out));
  return out;
}

const hostile = [
  '',
  ' ',
  '{',
  '{"a":}',
  'null',
  '"x"',
  '\ufeff{"a":1}',
  '{"a":"\u2028\u00e9😀"}',
  '{"a":"x\\ny"}',
  '{"a":"\\u0022"}',
  '{"__proto__":{"x":1}}',
  '{"a":{"__proto__":{"x":1}}}',
  '{"\\u005f_proto__":{"x":1}}',
  '{"__pro\\u0074o__":{"x":1}}',
  '{"constructor":{"prototype":{"x":1}}}',
  '{"constructor":{"prot\\u006ftype":{"x":1}}}',
  '{"constructor":1}',
  '{"constructor":{"prototype":1}}',
  '[{"__proto__":{}}]',
  '{"messages":[{"data":"x"},{"attributes":{"__proto__":{"x":1}}}]}',
  '{"messages":[{"data":"x","c":[[{"constructor":{"prototype":{"x":1}}}]]}]}',
  '{"__proto__":null}',
  '{"data":"__proto__ constructor"}',
  '{"a":"raw\ttab"}',
  '{"a":"raw\u0001control"}',
];

describe('JSON body parser', () => {
  const theirs = echoApp(false);
  const ours = echoApp(true);
  beforeAll(async () => {
    await theirs.ready();
    await ours.ready();
  });
  afterAll(async () => {
    await theirs.close();
    await ours.close();
  });

  async function both(text: string) {
    const send = (app: FastifyInstance) =>
      app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json; charset=utf-8' }, payload: text });
    const [a, b] = await Promise.all([send(theirs), send(ours)]);
    return { theirs: { status: a.statusCode, body: a.json() }, ours: { status: b.statusCode, body: b.json() } };
  }

  function checkMark(text: string, r: Awaited<ReturnType<typeof both>>): void {
    if (r.ours.status !== 200) return;
    if (r.ours.body.marked) {
      expect(text.includes('\\')).toBe(false);
      for (const s of strings(r.ours.body.body)) expect(JSON.stringify(s)).toBe(`"${s}"`);
    }
  }

  test('hostile bodies: the same status and value as fastify, poisoning refused however spelled', async () => {
    for (const text of hostile) {
      const r = await both(text);
      expect({ text, status: r.ours.status, body: r.ours.body.body ?? r.ours.body.code }).toEqual({
        text,
        status: r.theirs.status,
        body: r.theirs.body.body ?? r.theirs.body.code,
      });
      checkMark(text, r);
    }
    expect((await both('{"\\u005f_proto__":{"x":1}}')).ours.status).toBe(400);
    expect((await both('{"a":{"__proto__":{"x":1}}}')).ours.status).toBe(400);
    const plain = await both('{"a":"x"}');
    expect(plain.ours.body).toEqual({ body: { a: 'x' }, marked: true });
    expect((await both('{"a":"x\\ny"}')).ours.body.marked).toBe(false);
  });

  test('generated JSON: the same value as fastify; marked exactly when no string needs an escape', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 3 }), async (value) => {
        const text = JSON.stringify(value) ?? 'null';
        const r = await both(text);
        expect(r.ours.status).toBe(r.theirs.status);
        expect(r.ours.body.body).toEqual(r.theirs.body.body);
        checkMark(text, r);
        // No backslash, no poisoning key: the fast path must have taken it.
        if (r.ours.status === 200 && !text.includes('\\') && !text.includes('__proto__') && !text.includes('constructor')) {
          expect(r.ours.body.marked).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});
