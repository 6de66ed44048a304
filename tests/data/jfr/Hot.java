// Workload for the JFR parser's test recordings (tests/data/jfr/README.md says how each .jfr was
// made). Threads with one known hot method each, so a test can tell them apart:
//   Hot.fib       burns CPU (recursive fibonacci)
//   Hot.allocate  allocates byte arrays in bursts, small ones in TLABs and 1 MiB ones outside them
//   Hot.contend   three threads fight over one monitor, each holding it 15 ms asleep, so
//                 jdk.JavaMonitorEnter fires; Hot.park parks the thread (jdk.ThreadPark)
// Usage: java Hot [seconds]
import java.util.concurrent.locks.LockSupport;

public class Hot {
    static final Object LOCK = new Object();
    static volatile long sink;

    static long fib(int n) {
        return n < 2 ? n : fib(n - 1) + fib(n - 2);
    }

    static void burn(long until) {
        while (System.nanoTime() < until)
            sink += fib(24);
    }

    static void allocate(long until) {
        while (System.nanoTime() < until) {
            for (int i = 0; i < 256; i++) {
                byte[] small = new byte[256 + (int) (sink & 63)];
                sink += small.length;
            }
            byte[] big = new byte[1 << 20];
            sink += big.length;
            nap(1); // bursts, so the CPU profile stays Hot.fib's
        }
    }

    static void contend(long until) {
        for (int n = 0; System.nanoTime() < until; n++) {
            synchronized (LOCK) {
                nap(15); // hold the monitor 15 ms without burning CPU
            }
            if (n % 2 == 0)
                park(); // and let the others in
            else
                nap(2);
        }
    }

    static void nap(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static void park() {
        LockSupport.parkNanos(25_000_000L);
    }

    public static void main(String[] args) throws Exception {
        double seconds = args.length > 0 ? Double.parseDouble(args[0]) : 3;
        long until = System.nanoTime() + (long) (seconds * 1e9);
        Thread cpu = new Thread(() -> burn(until), "burner");
        Thread alloc = new Thread(() -> allocate(until), "allocator");
        Thread l1 = new Thread(() -> contend(until), "locker-1");
        Thread l2 = new Thread(() -> contend(until), "locker-2");
        Thread l3 = new Thread(() -> contend(until), "locker-3");
        Thread[] all = {cpu, alloc, l1, l2, l3};
        for (Thread t : all)
            t.start();
        for (Thread t : all)
            t.join();
        System.out.println("done " + sink);
    }
}
