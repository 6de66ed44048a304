"""OpenTelemetry Python: record the OS thread id on every span, so spanprof matches a span with
the eBPF profiler's samples of exactly that thread (see README.md here).

    provider.add_span_processor(ThreadIdSpanProcessor())
"""
import threading

from opentelemetry.sdk.trace import SpanProcessor


class ThreadIdSpanProcessor(SpanProcessor):
    def on_start(self, span, parent_context=None):
        span.set_attribute("thread.id", threading.get_native_id())  # the kernel's TID
