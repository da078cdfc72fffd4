// Netty's pooled allocator (PooledByteBufAllocator, direct buffers) on the
// patterns of the std shell's peer bench (benches/src/lib.rs, shell.rs):
// alloc+release pairs, the batch of 10,000 random sizes freed in a random
// order, one and two threads of pairs, producer/consumer through a ring.
// Same sizes and orders: the same SplitMix64 and seeds as the Rust benches.
// Run by ci/netty-bench.sh; prints a markdown table of medians.

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import java.util.Arrays;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicLong;

public final class NettyBench {
    static final long SEED = 0x05EED0FB10C5L;
    static final PooledByteBufAllocator ALLOC = new PooledByteBufAllocator(true);
    static volatile Object sink;

    /** SplitMix64, as benches/src/lib.rs's Rng. */
    static final class Rng {
        long s;
        Rng(long seed) { s = seed; }
        long next() {
            s += 0x9E3779B97F4A7C15L;
            long z = s;
            z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
            z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
            return z ^ (z >>> 31);
        }
        int range(int lo, int hi) {
            return lo + (int) Long.remainderUnsigned(next(), hi - lo + 1);
        }
    }

    static int[] sizes(long seed, int n, int lo, int hi) {
        Rng r = new Rng(seed);
        int[] out = new int[n];
        for (int i = 0; i < n; i++) out[i] = r.range(lo, hi);
        return out;
    }

    static void pair(int size) {
        ByteBuf b = ALLOC.directBuffer(size, size);
        b.writeByte(1);
        b.release();
    }

    /** Median of `samples` timings of `body`, in ns per operation. */
    interface Body { long run(); } // returns operations done
    static double median(int samples, Body body) {
        double[] t = new double[samples];
        for (int i = 0; i < samples; i++) {
            long t0 = System.nanoTime();
            long ops = body.run();
            t[i] = (System.nanoTime() - t0) / (double) ops;
        }
        Arrays.sort(t);
        return t[samples / 2];
    }

    static double pairs(int size) {
        for (int i = 0; i < 2_000_000; i++) pair(size); // JIT warm-up
        return median(7, () -> {
            int n = size >= (1 << 20) ? 200_000 : 2_000_000;
            for (int i = 0; i < n; i++) pair(size);
            return n;
        });
    }

    static double batch() {
        Rng r = new Rng(SEED);
        int n = 10_000;
        int[] sz = new int[n];
        for (int i = 0; i < n; i++) sz[i] = r.range(16, 32 << 10);
        int[] order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        for (int i = n - 1; i >= 1; i--) {
            int j = r.range(0, i);
            int t = order[i]; order[i] = order[j]; order[j] = t;
        }
        ByteBuf[] bufs = new ByteBuf[n];
        Body once = () -> {
            for (int i = 0; i < n; i++) bufs[i] = ALLOC.directBuffer(sz[i], sz[i]);
            for (int i = 0; i < n; i++) { bufs[order[i]].release(); bufs[order[i]] = null; }
            return n;
        };
        for (int i = 0; i < 200; i++) once.run(); // warm-up
        return median(15, () -> {
            long ops = 0;
            for (int k = 0; k < 20; k++) ops += once.run();
            return ops;
        });
    }

    /** Total M pairs/s of `threads` threads cycling through `cycle`. */
    static double threads(int threads, int[] cycle, long iters) throws Exception {
        double[] best = new double[5];
        for (int rep = 0; rep < best.length; rep++) {
            CyclicBarrier go = new CyclicBarrier(threads);
            AtomicLong first = new AtomicLong(Long.MAX_VALUE), last = new AtomicLong();
            Thread[] ts = new Thread[threads];
            for (int t = 0; t < threads; t++) {
                final int off = t * cycle.length / threads;
                ts[t] = new Thread(() -> {
                    try { go.await(); } catch (Exception e) { throw new RuntimeException(e); }
                    long s = System.nanoTime();
                    first.accumulateAndGet(s, Math::min);
                    int k = off;
                    for (long i = 0; i < iters; i++) {
                        pair(cycle[k]);
                        if (++k == cycle.length) k = 0;
                    }
                    last.accumulateAndGet(System.nanoTime(), Math::max);
                });
                ts[t].start();
            }
            for (Thread t : ts) t.join();
            best[rep] = threads * iters / ((last.get() - first.get()) / 1e3);
        }
        Arrays.sort(best);
        return best[best.length / 2];
    }

    /** M blocks/s through a single-producer single-consumer ring of 256. */
    static double handoff(int[] cycle, long blocks) throws Exception {
        double[] res = new double[5];
        for (int rep = 0; rep < res.length; rep++) {
            final ByteBuf[] ring = new ByteBuf[256];
            final AtomicLong head = new AtomicLong(), tail = new AtomicLong();
            CyclicBarrier go = new CyclicBarrier(2);
            long[] span = new long[2];
            Thread p = new Thread(() -> {
                try { go.await(); } catch (Exception e) { throw new RuntimeException(e); }
                span[0] = System.nanoTime();
                for (long i = 0; i < blocks; i++) {
                    int size = cycle[(int) (i % cycle.length)];
                    ByteBuf b = ALLOC.directBuffer(size, size);
                    b.writeLong(i);
                    while (head.get() - tail.get() == ring.length) Thread.onSpinWait();
                    ring[(int) (head.get() % ring.length)] = b;
                    head.lazySet(head.get() + 1);
                }
            });
            Thread c = new Thread(() -> {
                try { go.await(); } catch (Exception e) { throw new RuntimeException(e); }
                for (long i = 0; i < blocks; i++) {
                    while (tail.get() == head.get()) Thread.onSpinWait();
                    ByteBuf b = ring[(int) (tail.get() % ring.length)];
                    if (b.getLong(0) != i) throw new IllegalStateException("ring order");
                    b.release();
                    tail.lazySet(tail.get() + 1);
                }
                span[1] = System.nanoTime();
            });
            p.start(); c.start(); p.join(); c.join();
            res[rep] = blocks / ((span[1] - span[0]) / 1e3);
        }
        Arrays.sort(res);
        return res[res.length / 2];
    }

    public static void main(String[] args) throws Exception {
        System.out.println("| workload | Netty " + io.netty.util.Version.identify().values().iterator().next().artifactVersion()
                + " (PooledByteBufAllocator, direct) |");
        System.out.println("|---|---|");
        for (int size : new int[] {64, 1 << 10, 8 << 10, 64 << 10, 1 << 20}) {
            System.out.printf("| pair %d B (ns) | %.1f |%n", size, pairs(size));
        }
        System.out.printf("| batch (ns per block) | %.1f |%n", batch());
        int[] mixed = sizes(SEED ^ 1, 1024, 16, 32 << 10);
        for (Object[] w : new Object[][] {{"64 B", new int[] {64}}, {"1 KiB", new int[] {1024}}, {"mixed 16 B-32 KiB", mixed}}) {
            int[] cycle = (int[]) w[1];
            threads(1, cycle, 2_000_000); // warm-up
            double one = threads(1, cycle, 5_000_000), two = threads(2, cycle, 5_000_000);
            System.out.printf("| %s, 1 thread / 2 threads (M pairs/s) | %.1f / %.1f (%.2fx) |%n", w[0], one, two, two / one);
        }
        int[] handoff = sizes(SEED ^ 2, 1024, 64, 4096);
        handoff(handoff, 1_000_000); // warm-up
        System.out.printf("| producer/consumer (M blocks/s) | %.1f |%n", handoff(handoff, 2_000_000));
    }
}
