// Records Hot's workload with async-profiler, the profiler the Pyroscope Java agent embeds, so the
// tests have the agent's own JFR flavour: profiler.WallClockSample or jdk.ExecutionSample with
// contextId / spanId / spanName fields, jdk.ObjectAllocationInNewTLAB and OutsideTLAB,
// jdk.JavaMonitorEnter, jdk.ThreadPark, jdk.ActiveSetting "event" and "interval".
// The burner thread runs under context id 7, span id 0x1122334455667788 (span name id 3) and
// trace id 0102030405060708090a0b0c0d0e0f10, so a test can check they reach its samples.
// Usage: java -cp agent-2.9.2.jar:. AsyncHot <out.jfr> <seconds> <async-profiler options>
//   e.g. AsyncHot ap-cpu.jfr 2 event=itimer,interval=10ms,alloc=512k,lock=1ms
import io.pyroscope.PyroscopeAsyncProfiler;
import io.pyroscope.vendor.one.profiler.AsyncProfiler;

public class AsyncHot {
    public static void main(String[] args) throws Exception {
        String out = args[0];
        double seconds = Double.parseDouble(args[1]);
        AsyncProfiler ap = PyroscopeAsyncProfiler.getAsyncProfiler();
        ap.execute("start," + args[2] + ",jfr,file=" + out);
        long until = System.nanoTime() + (long) (seconds * 1e9);
        Thread cpu = new Thread(() -> {
            ap.setContextId(7);
            ap.setTracingContext(0x1122334455667788L, 3);
            ap.setTraceId(0x0102030405060708L, 0x090a0b0c0d0e0f10L);
            Hot.burn(until);
        }, "burner");
        Thread alloc = new Thread(() -> Hot.allocate(until), "allocator");
        Thread[] all = {cpu, alloc, new Thread(() -> Hot.contend(until), "locker-1"),
                        new Thread(() -> Hot.contend(until), "locker-2"),
                        new Thread(() -> Hot.contend(until), "locker-3")};
        for (Thread t : all)
            t.start();
        for (Thread t : all)
            t.join();
        ap.execute("stop,file=" + out);
        System.out.println("done " + Hot.sink);
    }
}
