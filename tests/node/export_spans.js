// Exports a small trace with the OpenTelemetry JS SDK's OTLP/HTTP exporter
// (@opentelemetry/exporter-trace-otlp-http, JSON: its default) to the URL in argv[2], then prints
// what it sent as one JSON line for tests/e2e/test_otlp_json_node.py to compare with what spanprof
// stored and forwarded. Exit status 1 when the exporter reports a failure.
'use strict';

const api = require('@opentelemetry/api');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');

const url = process.argv[2];
const results = [];
const exporter = new OTLPTraceExporter({ url, headers: { 'X-Scope-OrgID': 'node' } });
const realExport = exporter.export.bind(exporter);
exporter.export = (spans, done) =>
  realExport(spans, (r) => {
    results.push({ code: r.code, error: r.error ? String(r.error) : null });
    done(r);
  });

const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'node-checkout', 'process.pid': process.pid }),
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const tracer = provider.getTracer('spanprof-e2e', '1.0.0');

const ATTRS = {
  'http.route': '/cart/:id',
  'retry.count': 3,
  'ratio': 0.25,
  'cache.hit': true,
  'tags': ['a', 'b'],
  'sizes': [1, 2, 3],
  'weights': [0.5, 1.5],
  'flags': [true, false],
  'thread.id': 77,
  'offset': -5,
  'limit.max': 2 ** 53,
  'note': '',
  'none': [],
};

async function main() {
  const out = { spans: {}, pid: process.pid };
  const other = tracer.startSpan('other-root');
  other.end();
  const root = tracer.startSpan('GET /cart', { kind: api.SpanKind.SERVER, attributes: ATTRS });
  const rootCtx = api.trace.setSpan(api.context.active(), root);
  const child = tracer.startSpan('load-cart', {
    kind: api.SpanKind.INTERNAL,
    attributes: { 'db.rows': 12, 'db.system': 'sqlite' },
    links: [{ context: other.spanContext(), attributes: { 'link.kind': 'follows' } }],
  }, rootCtx);
  child.addEvent('cache-miss', { key: 'cart:42', 'attempt': 2 });
  const grandCtx = api.trace.setSpan(rootCtx, child);
  const grand = tracer.startSpan('decode', { kind: api.SpanKind.CLIENT }, grandCtx);
  grand.setStatus({ code: api.SpanStatusCode.ERROR, message: 'bad row' });
  grand.end();
  child.setStatus({ code: api.SpanStatusCode.OK });
  child.end();
  root.end();
  for (const [name, s] of [['other-root', other], ['GET /cart', root], ['load-cart', child], ['decode', grand]])
    out.spans[name] = { trace_id: s.spanContext().traceId, span_id: s.spanContext().spanId };
  await provider.forceFlush();
  await provider.shutdown();
  out.results = results;
  out.attrs = ATTRS;
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(results.length && results.every((r) => r.code === 0) ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(2);
});
