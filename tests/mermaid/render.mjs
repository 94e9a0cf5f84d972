// tests/mermaid/render.mjs: renders every ```mermaid block of a Markdown file in
// headless Chromium (Debian `chromium`, driven by npm `playwright-core`) with the
// pinned npm `mermaid`, and saves a screenshot.
//
//   node tests/mermaid/render.mjs FILE.md OUT.png
//   stdout: {"charts": [{"ok": true, "svg_width": W, "lines": N, "bars": N} | {"ok": false, "error": "..."}]}
//   exit 0 when every chart rendered to an SVG, 1 otherwise, 2 on a setup failure.
// MLCD_TESTBED_NODE_MODULES: node_modules with mermaid and playwright-core;
// MLCD_TESTBED_CHROMIUM: the browser (default /usr/bin/chromium).
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const modules = process.env.MLCD_TESTBED_NODE_MODULES || '/var/cache/mlcd-testbed/npm/node_modules';
const browserPath = process.env.MLCD_TESTBED_CHROMIUM || '/usr/bin/chromium';
const [file, out] = process.argv.slice(2);
if (!file || !out) {
  console.error('usage: node tests/mermaid/render.mjs FILE.md OUT.png');
  process.exit(2);
}
const require = createRequire(`${modules}/`);
const { chromium } = require('playwright-core');
const blocks = [...readFileSync(file, 'utf8').matchAll(/```mermaid\n([\s\S]*?)\n```/g)].map((m) => m[1]);
const profile = mkdtempSync(join(tmpdir(), 'mlcd-chromium-'));
let context;
let code = 2;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: browserPath,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 900, height: 600 },
  });
  const page = context.pages()[0] || (await context.newPage());
  await page.setContent('<!doctype html><html><body style="font-family: sans-serif; background: #fff"><h3>mlcd report charts</h3><div id="charts"></div></body></html>');
  await page.addScriptTag({ path: require.resolve('mermaid/dist/mermaid.min.js') });
  const charts = await page.evaluate(async (blocks) => {
    window.mermaid.initialize({ startOnLoad: false, theme: 'default' });
    const results = [];
    let i = 0;
    for (const b of blocks) {
      try {
        const { svg } = await window.mermaid.render(`chart${i++}`, b);
        const div = document.createElement('div');
        div.style.width = '860px';
        div.innerHTML = svg;
        document.getElementById('charts').appendChild(div);
        const el = div.querySelector('svg');
        results.push({
          ok: true,
          svg_width: Math.round(el.getBoundingClientRect().width),
          lines: div.querySelectorAll('.line-plot-0 path, [class*="line-plot"] path').length,
          bars: div.querySelectorAll('[class*="bar-plot"] rect').length,
        });
      } catch (e) {
        results.push({ ok: false, error: String(e.message || e) });
      }
    }
    return results;
  }, blocks);
  await page.screenshot({ path: out, fullPage: true });
  console.log(JSON.stringify({ charts }));
  code = charts.length > 0 && charts.every((c) => c.ok) ? 0 : 1;
} catch (e) {
  console.error(`render.mjs: ${e.stack || e}`);
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
