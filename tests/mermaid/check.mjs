// tests/mermaid/check.mjs: parses every ```mermaid block of a Markdown file with
// the real Mermaid parser (npm `mermaid`, pinned by scripts/testbed `npm`).
//
//   node tests/mermaid/check.mjs FILE.md
//   stdout: one JSON object {"mermaid": VERSION, "charts": [{"ok": true, "type": "xychart"} |
//           {"ok": false, "error": "..."}]}; exit 0 when every chart parses, 1 otherwise,
//           2 when the file or the packages cannot be read.
// MLCD_TESTBED_NODE_MODULES: the node_modules holding mermaid and jsdom
// (default /var/cache/mlcd-testbed/npm/node_modules).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const modules = process.env.MLCD_TESTBED_NODE_MODULES || '/var/cache/mlcd-testbed/npm/node_modules';
const file = process.argv[2];
if (!file) {
  console.error('usage: node tests/mermaid/check.mjs FILE.md');
  process.exit(2);
}
let require, text;
try {
  require = createRequire(`${modules}/`);
  text = readFileSync(file, 'utf8');
} catch (e) {
  console.error(`check.mjs: ${e.message}`);
  process.exit(2);
}
// Mermaid sanitises with DOMPurify, which needs a DOM.
const { JSDOM } = require('jsdom');
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const version = require('mermaid/package.json').version;
const { default: mermaid } = await import(pathToFileURL(`${modules}/mermaid/dist/mermaid.core.mjs`).href);
mermaid.initialize({ startOnLoad: false });

const blocks = [...text.matchAll(/```mermaid\n([\s\S]*?)\n```/g)].map((m) => m[1]);
const charts = [];
for (const b of blocks) {
  try {
    const r = await mermaid.parse(b);
    charts.push({ ok: true, type: r.diagramType });
  } catch (e) {
    charts.push({ ok: false, error: String(e.message || e).split('\n').slice(0, 4).join('\n') });
  }
}
console.log(JSON.stringify({ mermaid: version, charts }));
process.exit(charts.every((c) => c.ok) ? 0 : 1);
