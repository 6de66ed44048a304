// A traced request loop for tests/e2e/test_java_agent.py: each "fib-request" span (made with the
// OpenTelemetry API, exported by the OpenTelemetry Java agent) burns CPU in Traced.fib for 300 ms
// on the main thread; the io.pyroscope:otel extension labels the profiler's samples with the
// span. Prints each span id. Usage: java Traced SECONDS
import io.opentelemetry.api.GlobalOpenTelemetry;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Scope;

public class Traced {
    static volatile long sink;
    static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
    public static void main(String[] args) throws Exception {
        Tracer tracer = GlobalOpenTelemetry.getTracer("traced");
        long end = System.nanoTime() + Long.parseLong(args[0]) * 1_000_000_000L;
        while (System.nanoTime() < end) {
            Span span = tracer.spanBuilder("fib-request").startSpan();
            try (Scope s = span.makeCurrent()) {
                long until = System.nanoTime() + 300_000_000L;
                while (System.nanoTime() < until) sink += fib(24);
                System.out.println("span " + span.getSpanContext().getSpanId());
            } finally {
                span.end();
            }
        }
    }
}
