#!/usr/bin/env node
// Drives spanprof's page (query/page.html) in Debian's chromium through playwright-core and
// prints what it saw as one JSON document on stdout. It judges nothing: the assertions, and the
// expected values they compare with, are in tests/e2e/test_page_browser.py, which runs this.
//
//   node page_driver.js <config.json>
//
// config: { base: "http://127.0.0.1:PORT", mode: "scenario" | "big", out_dir, chromium,
//           service, trace, older_trace, spans: [span ids to open], root_span, search,
//           hover_frame, docs_screenshot (optional path) }         -- mode "scenario"
//         { base, mode: "big", out_dir, chromium, trace, loads, runs }  -- mode "big"
//         { base, mode: "peers", out_dir, chromium, trace, span, hover_frame, short_span }
//                                         -- mode "peers": "Compare with peers" on a span
//
// The canvas cannot be read back, so what a flame graph drew comes from the page's
// window.spanprof.frames(); tooltips, texts, focus and screenshots come from the page itself.
"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const OFF_CPU = "off_cpu:off_cpu:nanoseconds::";
const WAIT = { timeout: 15000 };

async function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const out = { screenshots: {}, console_errors: [], expected_errors: [], steps: [] };
  let expectErrors = false; // while a failure is staged on purpose, errors are reported apart
  const args = process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [];
  const browser = await chromium.launch({ executablePath: cfg.chromium || "/usr/bin/chromium", headless: true, args });
  out.browser_version = browser.version();
  // A page 1280 px wide whose script errors, console errors and failed requests are all recorded.
  const open = async () => {
    const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = () => (expectErrors ? out.expected_errors : out.console_errors);
    p.on("console", (m) => { if (m.type() === "error") errors().push(m.text()); });
    p.on("pageerror", (e) => out.console_errors.push(String(e)));
    p.on("response", (r) => { if (r.status() >= 400) errors().push("HTTP " + r.status() + " " + r.url()); });
    return p;
  };
  let page = await open();
  const shot = async (name, opts, on) => {
    const p = path.join(cfg.out_dir, name + ".png");
    await (on || page).screenshot(Object.assign({ path: p }, opts || {}));
    out.screenshots[name] = p;
  };
  try {
    if (cfg.mode === "big") page = await big(page, cfg, out, shot, open);
    else if (cfg.mode === "peers") await peers(page, cfg, out, shot, (on) => { expectErrors = on; });
    else await scenario(page, cfg, out, shot);
  } catch (e) {
    out.error = String(e && e.stack || e);
    try { await shot("failure", { fullPage: true }); } catch (e2) { /* the page may be gone */ }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

async function focused(page) {
  return page.evaluate(() => {
    const a = document.activeElement;
    return a ? { tag: a.tagName, trace: a.dataset.trace || null, span: a.dataset.span || null, id: a.id || null } : null;
  });
}

async function waterfall(page) {
  return page.$$eval("#wf-body .wf-row", (rows) => rows.map((r) => {
    r.dispatchEvent(new MouseEvent("mouseover", { bubbles: true })); // its tooltip is made on hover
    const name = r.querySelector(".wf-name"), bar = r.querySelector(".bar");
    // the bar's gradient: CPU from 0 to --c, off-CPU for --o after it, the rest after that
    const w = bar.getBoundingClientRect().width, share = (v) => w * (parseFloat(bar.style.getPropertyValue(v)) || 0) / 100;
    const segs = { c: share("--c"), o: share("--o") };
    segs.r = w - segs.c - segs.o;
    const nums = [...r.querySelectorAll(".num")].map((n) => n.textContent);
    const note = getComputedStyle(bar, "::after").content; // a short span's mark is generated content
    return { span: r.dataset.span, name: name.firstChild ? name.firstChild.textContent : "",
             service_tag: name.querySelector("small") ? name.querySelector("small").textContent : null,
             indent: parseFloat(getComputedStyle(name).paddingLeft), short: r.classList.contains("short"),
             bar: { left: bar.getBoundingClientRect().left, width: bar.getBoundingClientRect().width }, segs,
             duration: nums[0], cpu: nums[1], off_cpu: nums[2], note: note && note !== "none" ? JSON.parse(note) : null,
             title: r.getAttribute("title") };
  }));
}

async function waitSpan(page, span, type) {
  await page.waitForSelector(`#span-panel[data-loaded="${span}|${type}"]`, WAIT);
}

async function flameState(page) {
  return page.evaluate(() => ({
    frames: window.spanprof.frames("span"),
    status: document.getElementById("sp-status").textContent,
    facts: document.getElementById("sp-facts").textContent,
    title: document.getElementById("sp-title").textContent,
    pprof: document.getElementById("sp-pprof").getAttribute("href"),
    hash: location.hash,
  }));
}

async function scenario(page, cfg, out, shot) {
  // 1. the trace list: services from api/v1/services, traces of the chosen one
  await page.goto(cfg.base + "/");
  await page.waitForSelector("#svc-pick option", { state: "attached", timeout: WAIT.timeout });
  out.services = await page.$$eval("#svc-pick option", (o) => o.map((x) => x.value));
  await page.selectOption("#svc-pick", cfg.service);
  await page.waitForSelector(`#trace-rows a[data-trace="${cfg.trace}"]`, WAIT);
  out.trace_list = await page.$$eval("#trace-rows tr", (rows) => rows.map((r) => ({
    trace: r.querySelector("a").dataset.trace, cells: [...r.cells].map((c) => c.textContent.trim()) })));
  out.list_hash = await page.evaluate(() => location.hash);
  out.list_scroll_width = await page.evaluate(() => document.documentElement.scrollWidth);
  await shot("trace-list");
  out.steps.push("list");

  // 2. keyboard: Tab to the trace, Enter opens it
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  let tabs = 0;
  for (; tabs < 60; tabs++) {
    const f = await focused(page);
    if (f && f.trace === cfg.trace) break;
    await page.keyboard.press("Tab");
  }
  out.tabs_to_trace = tabs;
  await page.keyboard.press("Enter");
  await page.waitForSelector(`#wf-body[data-loaded="${cfg.trace}"]`, WAIT);
  out.trace_hash = await page.evaluate(() => location.hash);
  out.focus_after_open = await focused(page);
  out.trace_render_ms = await page.evaluate(() => window.spanprof.stats.traceRenderMs);
  out.waterfall = await waterfall(page);
  out.trace_title = await page.textContent("#trace-title");
  out.trace_sub = await page.textContent("#trace-sub");
  out.trace_scroll_width = await page.evaluate(() => document.documentElement.scrollWidth);
  await shot("trace");
  out.steps.push("trace");

  // 3. each span: click its row, CPU flame graph, then the off-CPU toggle
  out.spans = {};
  for (const span of cfg.spans) {
    await page.click(`#wf-body .wf-row[data-span="${span}"] .wf-name`);
    await waitSpan(page, span, CPU);
    const cpu = await flameState(page);
    await page.click('#sp-types label:has(input[value="' + OFF_CPU + '"])');
    await waitSpan(page, span, OFF_CPU);
    const off = await flameState(page);
    if (span === cfg.root_span) await shot("span-offcpu");
    await page.click('#sp-types label:has(input[value="' + CPU + '"])');
    await waitSpan(page, span, CPU);
    out.spans[span] = { cpu, off };
  }
  out.steps.push("spans");

  // 4. the root span's graph: tooltip, zoom, search, pprof link
  const root = cfg.root_span;
  await page.click(`#wf-body .wf-row[data-span="${root}"] .wf-name`);
  await waitSpan(page, root, CPU);
  await shot("span-cpu");
  const canvas = await page.locator("#sp-fg canvas").boundingBox();
  const frames = await page.evaluate(() => window.spanprof.frames("span"));
  const target = frames.drawn.find((b) => b.name === cfg.hover_frame);
  if (!target) throw new Error("frame " + cfg.hover_frame + " was not drawn");
  const cx = canvas.x + target.px + Math.min(target.pw / 2, 40), cy = canvas.y + target.d * 18 + 9;
  await page.mouse.move(cx, cy);
  out.tooltip = await page.textContent("#tip");
  out.tooltip_visible = await page.isVisible("#tip");
  await page.mouse.click(cx, cy);
  const zoomed = await page.evaluate(() => window.spanprof.frames("span"));
  out.zoom = { zoom: zoomed.zoom, frame: zoomed.drawn.find((b) => b.name === cfg.hover_frame && b.d === target.d),
               canvas_width: canvas.width };
  await page.click("#sp-reset");
  out.after_reset = await page.evaluate(() => window.spanprof.frames("span").zoom);
  await page.fill("#sp-search", cfg.search);
  const searched = await page.evaluate(() => window.spanprof.frames("span"));
  out.search = { matched: searched.matched, status: await page.textContent("#sp-status") };
  await shot("span-search");
  await page.fill("#sp-search", "");
  out.pprof = await page.evaluate(async () => {
    const r = await fetch(document.getElementById("sp-pprof").getAttribute("href"));
    const b = new Uint8Array(await r.arrayBuffer());
    return { status: r.status, bytes: b.length, gzip: b[0] === 0x1f && b[1] === 0x8b,
             download: document.getElementById("sp-pprof").getAttribute("download") };
  });
  out.steps.push("flame");

  // 5. keyboard back and forth: Escape closes the span, Down + Enter opens the next, Escape twice
  // returns to the list
  await page.focus(`#wf-body .wf-row[data-span="${root}"]`);
  await page.keyboard.press("Escape");
  await page.waitForSelector("#span-panel", { state: "hidden", timeout: 15000 });
  out.after_escape_1 = { hash: await page.evaluate(() => location.hash), focus: await focused(page) };
  await page.keyboard.press("ArrowDown");
  out.after_down = await focused(page);
  await page.keyboard.press("Enter");
  if (out.after_down && out.after_down.span) await waitSpan(page, out.after_down.span, CPU);
  out.after_enter = { hash: await page.evaluate(() => location.hash), loaded: await page.getAttribute("#span-panel", "data-loaded") };
  await page.keyboard.press("Escape");
  await page.waitForSelector("#span-panel", { state: "hidden", timeout: 15000 });
  await page.keyboard.press("Escape");
  await page.waitForSelector("#v-traces", { state: "visible", timeout: 15000 });
  await page.waitForSelector(`#trace-rows a[data-trace="${cfg.trace}"]`, WAIT);
  out.after_escape_2 = { hash: await page.evaluate(() => location.hash), focus: await focused(page) };
  out.steps.push("keyboard");

  // 6. open by id, and the deep links
  await page.fill("#trace-id", cfg.older_trace);
  await page.press("#trace-id", "Enter");
  await page.waitForSelector(`#wf-body[data-loaded="${cfg.older_trace}"]`, WAIT);
  out.by_id = { hash: await page.evaluate(() => location.hash), rows: (await waterfall(page)).length };
  await page.goto(cfg.base + "/ui/span/" + root);
  await waitSpan(page, root, CPU);
  out.deep_span = await flameState(page);
  out.deep_span.url = page.url();
  await page.goto(cfg.base + "/ui#trace=" + cfg.trace + "&span=" + root + "&type=" + encodeURIComponent(OFF_CPU));
  await waitSpan(page, root, OFF_CPU);
  out.deep_trace = await flameState(page);
  out.deep_trace.rows = (await waterfall(page)).length;
  out.deep_trace.selected = await page.$$eval("#wf-body .wf-row.sel", (r) => r.map((x) => x.dataset.span));
  out.steps.push("links");

  // 7. the service flame graph over a time range, as before
  await page.goto(cfg.base + "/#flamegraph");
  await page.waitForSelector("#fl-fg[data-loaded]", WAIT);
  await page.selectOption("#service", cfg.service);
  await page.waitForSelector(`#fl-fg[data-loaded$='{service_name="${cfg.service}"}']`, WAIT);
  out.service_flame = await page.evaluate(() => ({ frames: window.spanprof.frames("service"),
    status: document.getElementById("fl-status").textContent, type: document.getElementById("type").value }));
  await shot("service-flamegraph");
  out.steps.push("service");

  if (cfg.docs_screenshot) { // the README's picture: a trace with a span's flame graph open
    await page.goto(cfg.base + "/#trace=" + cfg.trace + "&span=" + cfg.docs_span);
    await waitSpan(page, cfg.docs_span, CPU);
    await page.mouse.move(0, 0);
    const panel = await page.locator("#span-panel").boundingBox();
    await page.screenshot({ path: cfg.docs_screenshot, clip: { x: 0, y: 0, width: 1280, height: Math.ceil(panel.y + panel.height + 16) } });
    out.screenshots.docs = cfg.docs_screenshot;
  }
}

async function diffState(page) {
  return page.evaluate(() => {
    const empty = document.querySelector("#sp-diff .fg-empty"), st = document.getElementById("sp-diff-status");
    return {
      frames: window.spanprof.frames("peers"),
      stats: window.spanprof.stats.peers,
      status: st.textContent, status_class: st.className,
      empty: getComputedStyle(empty).display === "none" ? null : empty.textContent,
      legend: [...document.querySelectorAll("#sp-diff-legend > span")].map((x) => x.textContent.trim()),
      shown: !document.getElementById("sp-diff-part").hidden && document.getElementById("sp-fg").hidden,
      pressed: document.getElementById("sp-peers").getAttribute("aria-pressed"),
      hash: location.hash,
    };
  });
}

// "Compare with peers" on a span of the trace: the diff view, a tooltip, Escape back to the span,
// a span with nothing to compare, and a server error (staged with page.route).
async function peers(page, cfg, out, shot, expectErrors) {
  const loaded = (span) => page.waitForSelector(`#sp-diff[data-loaded="${span}|${CPU}"]`, WAIT);
  await page.goto(cfg.base + "/#trace=" + cfg.trace);
  await page.waitForSelector(`#wf-body[data-loaded="${cfg.trace}"]`, WAIT);
  await page.click(`#wf-body .wf-row[data-span="${cfg.span}"] .wf-name`);
  await waitSpan(page, cfg.span, CPU);
  out.button = { text: await page.textContent("#sp-peers"), visible: await page.isVisible("#sp-peers") };
  await page.click("#sp-peers");
  await loaded(cfg.span);
  out.diff = await diffState(page);
  out.steps.push("diff");

  const canvas = await page.locator("#sp-diff canvas").boundingBox();
  const target = out.diff.frames.drawn.find((b) => b.name === cfg.hover_frame);
  if (!target) throw new Error("frame " + cfg.hover_frame + " was not drawn in the diff");
  await page.mouse.move(canvas.x + target.px + Math.min(target.pw / 2, 40), canvas.y + target.d * 18 + 9);
  out.tooltip = { text: await page.textContent("#tip"), visible: await page.isVisible("#tip") };
  await shot("peers");
  await page.mouse.move(0, 0);
  out.steps.push("tooltip");

  await page.keyboard.press("Escape");
  await page.waitForSelector("#sp-fg", { state: "visible", timeout: WAIT.timeout });
  out.after_escape = { hash: await page.evaluate(() => location.hash), pressed: await page.getAttribute("#sp-peers", "aria-pressed"),
                       diff_hidden: await page.isHidden("#sp-diff-part") };
  out.steps.push("escape");

  await page.click(`#wf-body .wf-row[data-span="${cfg.short_span}"] .wf-name`);
  await waitSpan(page, cfg.short_span, CPU);
  await page.click("#sp-peers");
  await loaded(cfg.short_span);
  out.empty = await diffState(page);
  out.steps.push("empty");

  expectErrors(true);
  await page.route("**/querier.v1.QuerierService/Diff", (r) => r.fulfill({
    status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable", message: "store busy" }) }));
  await page.goto(cfg.base + "/#trace=" + cfg.trace + "&span=" + cfg.span + "&peers");
  await loaded(cfg.span);
  out.server_error = await diffState(page);
  expectErrors(false);
  out.steps.push("error");
}

async function big(page, cfg, out, shot, open) {
  // Cold: a fresh page per load, the trace drawn as it arrives (first use of every code path).
  out.cold = [];
  for (let k = 0; k < (cfg.loads || 3); k++) {
    if (k) {
      await page.close();
      page = await open();
    }
    await page.goto(cfg.base + "/#trace=" + cfg.trace);
    await page.waitForSelector(`#wf-body[data-loaded="${cfg.trace}"]`, WAIT);
    out.cold.push(await page.evaluate(() => ({ ms: window.spanprof.stats.traceRenderMs, parts: window.spanprof.stats.traceRenderParts })));
  }
  out.rows = (await waterfall(page)).length;
  out.short_rows = await page.$$eval("#wf-body .wf-row.short", (r) => r.length);
  await shot("big-trace", {}, page);
  // Warm: again from data already fetched, up to the next frame.
  out.runs = await page.evaluate(async ([id, n]) => {
    const doc = await (await fetch("api/v1/traces/" + id)).json();
    const runs = [];
    for (let i = 0; i < n; i++) {
      const copy = JSON.parse(JSON.stringify(doc));
      await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
      const t = performance.now();
      const render = window.spanprof.renderTrace(copy);
      await new Promise((r) => requestAnimationFrame(r));
      runs.push({ render_ms: render, to_frame_ms: performance.now() - t, parts: window.spanprof.stats.traceRenderParts });
    }
    return runs;
  }, [cfg.trace, cfg.runs || 5]);
  out.rows_after = (await waterfall(page)).length;
  return page;
}

main().catch((e) => { process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + "\n"); process.exit(1); });
