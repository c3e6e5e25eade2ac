/**
 * Goal: the core stays pure and deterministic (DESIGN.md layer 1, STYLE.md layout): no file under
 * src/core imports node:*, fs, net, http, lmdb, ws, undici, fastify or prom-client, or anything outside
 * src/core, and none reads the clock, draws random numbers, sets timers or touches `process`.
 * Method: read every src/core/**\/*.ts, strip comments (so prose may mention the words), and scan the
 * code for forbidden import specifiers and calls. A self-check makes sure the scanner still catches them.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const coreDir = join(root, 'src/core');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** Removes // and /* *\/ comments, keeping strings (import specifiers live in strings). */
function stripComments(source: string): string {
  let out = '';
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === '/' && next === '/') {
      while (i < source.length && source[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      i += 2;
      while (i < source.length && !(source[i] === '*' && source[i + 1] === '/')) i++;
      i += 2;
    } else if (c === '"' || c === "'" || c === '`') {
      const quote = c;
      out += c;
      i++;
      while (i < source.length && source[i] !== quote) {
        if (source[i] === '\\') out += source[i++];
        out += source[i++];
      }
      out += source[i++] ?? '';
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Empties string literals, so calls are looked for in code only. */
function blankStrings(code: string): string {
  return code.replace(/(['"`])(?:\\.|(?!\1)[^\\])*\1/g, '$1$1');
}

const forbiddenModules = /^(node:.*|fs|fs\/.*|net|http|https|http2|tls|dgram|child_process|worker_threads|os|crypto|timers|timers\/.*|lmdb|ws|undici|fastify|fastify\/.*|@fastify\/.*|prom-client)$/;

const forbiddenCalls: [RegExp, string][] = [
  [/\bDate\s*\.\s*now\s*\(/, 'Date.now('],
  [/\bnew\s+Date\s*\(\s*\)/, 'new Date()'],
  [/\bperformance\s*\.\s*now\s*\(/, 'performance.now('],
  [/\bMath\s*\.\s*random\s*\(/, 'Math.random('],
  [/\bcrypto\s*\.\s*(getRandomValues|randomUUID|randomBytes)\b/, 'crypto randomness'],
  [/\b(setTimeout|setInterval|setImmediate|queueMicrotask)\s*\(/, 'timer'],
  [/\bprocess\s*\./, 'process.'],
  [/\brequire\s*\(/, 'require('],
];

/** Every module specifier a file imports or re-exports, statically or dynamically. */
function specifiers(code: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\bimport\s+(?:type\s+)?[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bexport\s+(?:type\s+)?[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"`]([^'"`]+)['"`]\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) found.push(m[1]!);
  return found;
}

function violations(path: string, source: string): string[] {
  const code = stripComments(source);
  const out: string[] = [];
  for (const spec of specifiers(code)) {
    if (forbiddenModules.test(spec)) out.push(`imports ${spec}`);
    else if (spec.startsWith('.')) {
      const target = resolve(dirname(path), spec);
      if (relative(coreDir, target).startsWith('..')) out.push(`imports ${spec} from outside src/core`);
    } else out.push(`imports package ${spec} (core imports only core)`);
  }
  // import('./x.js').T in a type is fine (its specifier is checked above); a computed one is not.
  if (/\bimport\s*\(\s*[^'"`\s]/.test(code)) out.push('import() of a computed specifier');
  const bare = blankStrings(code);
  for (const [re, name] of forbiddenCalls) if (re.test(bare)) out.push(`uses ${name}`);
  return out;
}

describe('core purity', () => {
  const files = tsFiles(coreDir);

  it('finds the core files', () => {
    const names = files.map((f) => relative(coreDir, f));
    expect(names).toEqual(expect.arrayContaining(['broker/machine.ts', 'broker/backoff.ts', 'heap.ts', 'raft/raft-core.ts']));
  });

  it.each(files.map((f) => [relative(root, f), f]))('%s is pure', (_name, path) => {
    expect(violations(path, readFileSync(path, 'utf8'))).toEqual([]);
  });

  it('the scanner catches what it must (self-check)', () => {
    const p = join(coreDir, 'broker/x.ts');
    const bad = [
      "import { readFileSync } from 'node:fs';",
      "import fs from 'fs';",
      "import type { Socket } from 'net';",
      "import * as http from 'http';",
      "import { open } from 'lmdb';",
      "import WebSocket from 'ws';",
      "import { request } from 'undici';",
      "import Fastify from 'fastify';",
      "import client from 'prom-client';",
      "export { x } from 'node:path';",
      "const m = await import('node:os');",
      "import '../../runtime/herald-node.js';",
      "const f = (name: string) => import(name);",
      'const t = Date.now();',
      'const r = Math.random();',
      'setTimeout(() => {}, 1);',
      'setInterval(f, 1);',
      'setImmediate(f);',
      'const e = process.env.X;',
    ];
    for (const line of bad) expect(violations(p, line), line).not.toEqual([]);
    const fine = [
      "import { assert } from '../assert.js';",
      "import type { Entry } from './types.js';",
      '// Date.now() is not used here, nor Math.random() or process.env',
      '/* setTimeout( */ const x = 1;',
      "const s = 'a string about process.exit';",
      'const nowMs = stamped.nowMs; const processed = 1;',
      "type M = import('./messages.js').Message;",
    ];
    for (const line of fine) expect(violations(p, line), line).toEqual([]);
  });
});
