/*
 * Exercises the C allocation API as a preloaded malloc must provide it.
 *
 *   cc -O2 -fno-builtin -pthread malloc_test.c -o malloc_test
 *   LD_PRELOAD=target/release/libpoolalloc.so ./malloc_test CASE
 *
 * Cases (each prints "CASE: ok" and exits 0, or names the failed check and
 * exits 1):
 *   api      malloc/free/calloc/realloc/reallocarray/posix_memalign/
 *            aligned_alloc/memalign/valloc/pvalloc/malloc_usable_size: contents,
 *            zeroing, alignment, errno, edge cases
 *   threads  producer/consumer rings: blocks allocated on one thread, checked
 *            and freed on another; plus thread churn (short-lived threads)
 *   fork     forks repeatedly (FORKS, default 30) while other threads
 *            allocate, some sizes taking an arena lock every time; each
 *            child allocates, checks, runs a thread and exits; a child that
 *            hangs (a lock held at fork time) is killed by alarm() and fails
 *            the case. POOLALLOC_ARENAS=1 makes every thread share one lock.
 *   limit    under POOLALLOC_MAX_MEMORY: allocates until NULL (errno ENOMEM),
 *            frees, allocates again
 *   stats    allocates a little and exits normally (run with POOLALLOC_STATS=1)
 *   bench    allocation throughput (BENCH_STEPS, BENCH_THREADS): a working
 *            set of 1,000 blocks, one replaced per step
 *   larson   a Larson-style server simulation (LARSON_LANES, LARSON_ROUNDS,
 *            LARSON_GENERATIONS): threads replace random blocks of a shared
 *            working set, then hand it to a successor thread and exit, so
 *            most frees are of blocks another (often exited) thread allocated
 *   oom      under POOLALLOC_TEST_FAULTS=1: makes the OS refuse every call
 *            (poolalloc_test_fault, found with dlsym): malloc, calloc,
 *            realloc and posix_memalign of new memory fail with ENOMEM and
 *            leave live blocks intact; once allowed again, they succeed
 *   bad-free / double-free / interior-free / realloc-foreign /
 *   realloc-freed / realloc-interior
 *            misuse that must abort with a message
 *   huge     a block of HUGE_MIB MiB (default 8) allocated and freed
 *            HUGE_PAIRS times (default 500), each page written once when
 *            HUGE_TOUCH is 1 (the default), with the time per pair; between
 *            rounds, a calloc of the size after a block of it was dirtied
 *            and freed must read as zero
 *   preloaded
 *            prints "preloaded" if malloc is this library's (usable size of a
 *            1-byte block is 16), "system" otherwise
 *
 * With no case it runs api, threads and fork.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
/* Whether malloc is poolalloc's: checks of behaviour glibc does not share
 * (posix_memalign leaving errno alone, aligned_alloc's EINVAL) need it. */
static int preloaded;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* A byte pattern that depends on the block and the offset. */
static unsigned char pat(uintptr_t seed, size_t i) {
    return (unsigned char)((seed * 2654435761u) >> 7 ^ i * 31 ^ i >> 8);
}

static void fill(void *p, size_t n, uintptr_t seed) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = pat(seed, i);
}

static int check_fill(const void *p, size_t n, uintptr_t seed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(seed, i)) return 0;
    return 1;
}

static int all_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ------------------------------------------------------------------ api -- */

static const size_t sizes[] = {0,      1,       7,        8,        15,
                               16,     17,      24,       100,      255,
                               256,    1000,    4095,     4096,     4097,
                               8192,   12345,   65536,    100000,   1 << 20,
                               3 << 20, 5 << 20, 17 << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void case_api(void) {
    /* malloc: distinct, aligned, writable, contents kept. */
    void *blocks[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        blocks[i] = malloc(sizes[i]);
        CHECK(blocks[i] != NULL);
        CHECK(((uintptr_t)blocks[i] & 15) == 0);
        CHECK(malloc_usable_size(blocks[i]) >= sizes[i]);
        fill(blocks[i], sizes[i], i);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        CHECK(check_fill(blocks[i], sizes[i], i));
        free(blocks[i]);
    }
    /* malloc(0): unique, non-null, freeable. */
    void *z1 = malloc(0), *z2 = malloc(0);
    CHECK(z1 && z2 && z1 != z2);
    free(z1);
    free(z2);
    free(NULL);

    /* The whole usable size is usable. */
    for (size_t i = 1; i < NSIZES; i++) {
        void *p = malloc(sizes[i]);
        size_t u = malloc_usable_size(p);
        memset(p, 0xa5, u);
        free(p);
    }
    CHECK(malloc_usable_size(NULL) == 0);

    /* calloc zeroes recycled blocks: dirty some, free them, calloc again. */
    for (int round = 0; round < 4; round++) {
        void *dirty[64];
        for (int i = 0; i < 64; i++) {
            dirty[i] = malloc(48 + round * 1000);
            memset(dirty[i], 0xff, 48 + round * 1000);
        }
        for (int i = 0; i < 64; i++) free(dirty[i]);
        for (int i = 0; i < 64; i++) {
            dirty[i] = calloc(1, 48 + round * 1000);
            CHECK(dirty[i] && all_zero(dirty[i], 48 + round * 1000));
            memset(dirty[i], 0xee, 48 + round * 1000);
        }
        for (int i = 0; i < 64; i++) free(dirty[i]);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *p = calloc(n ? n : 1, 1);
        CHECK(p && all_zero(p, n));
        fill(p, n, 77);
        free(p);
        p = calloc(1, n);
        CHECK(p && all_zero(p, n));
        free(p);
    }
    /* calloc overflow: NULL and ENOMEM. */
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM);

    /* malloc of absurd sizes: NULL and ENOMEM. */
    errno = 0;
    CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(SIZE_MAX / 2) == NULL && errno == ENOMEM);

    /* realloc keeps contents across every pair of sizes. */
    for (size_t a = 1; a < NSIZES; a++) {
        for (size_t b = 1; b < NSIZES; b += 3) {
            unsigned char *p = malloc(sizes[a]);
            fill(p, sizes[a], a * 100 + b);
            unsigned char *q = realloc(p, sizes[b]);
            CHECK(q != NULL);
            size_t keep = sizes[a] < sizes[b] ? sizes[a] : sizes[b];
            CHECK(check_fill(q, keep, a * 100 + b));
            CHECK(malloc_usable_size(q) >= sizes[b]);
            free(q);
        }
    }
    /* Growing one block step by step (what vectors and strings do). */
    {
        size_t n = 2;
        unsigned char *p = malloc(n);
        p[0] = 42;
        p[1] = 2;
        while (n < (8 << 20)) {
            size_t m = n + n / 2 + 1;
            p = realloc(p, m);
            CHECK(p != NULL);
            CHECK(p[0] == 42 && p[n - 1] == (unsigned char)n);
            p[m - 1] = (unsigned char)m;
            n = m;
        }
        free(p);
    }
    /* realloc(NULL, n) is malloc; realloc(p, 0) frees and returns NULL. */
    void *r = realloc(NULL, 100);
    CHECK(r != NULL);
    CHECK(realloc(r, 0) == NULL);
    /* A failed realloc leaves the block alone. */
    {
        unsigned char *p = malloc(1000);
        fill(p, 1000, 5);
        errno = 0;
        CHECK(realloc(p, SIZE_MAX / 2) == NULL && errno == ENOMEM);
        CHECK(check_fill(p, 1000, 5));
        free(p);
    }
    /* reallocarray: overflow is ENOMEM. */
    {
        int *a = reallocarray(NULL, 10, sizeof(int));
        CHECK(a != NULL);
        for (int i = 0; i < 10; i++) a[i] = i;
        a = reallocarray(a, 1000, sizeof(int));
        CHECK(a && a[9] == 9);
        errno = 0;
        CHECK(reallocarray(a, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
        free(a);
    }

    /* posix_memalign: alignment, errors returned (errno untouched). */
    for (size_t align = sizeof(void *); align <= (4 << 20); align <<= 1) {
        for (int k = 0; k < 3; k++) {
            size_t n = k == 0 ? 1 : k == 1 ? align + 3 : 3 * align / 2 + 100;
            void *p = (void *)1;
            errno = 1234;
            CHECK(posix_memalign(&p, align, n) == 0);
            CHECK(errno == 1234);
            CHECK(p != NULL && ((uintptr_t)p & (align - 1)) == 0);
            CHECK(malloc_usable_size(p) >= n);
            fill(p, n, align + k);
            CHECK(check_fill(p, n, align + k));
            free(p);
        }
    }
    {
        void *p = (void *)1;
        CHECK(posix_memalign(&p, 0, 16) == EINVAL);
        CHECK(posix_memalign(&p, 3, 16) == EINVAL);
        CHECK(posix_memalign(&p, 4, 16) == EINVAL); /* not a multiple of 8 */
        CHECK(posix_memalign(&p, 24, 16) == EINVAL);
        CHECK(p == (void *)1);
        errno = 0;
        CHECK(posix_memalign(&p, 64, SIZE_MAX / 2) == ENOMEM);
        CHECK(p == (void *)1);
        CHECK(errno == 0 || !preloaded);
        CHECK(posix_memalign(&p, 64, 0) == 0 && p != NULL);
        free(p);
    }
    /* aligned_alloc, memalign, valloc, pvalloc. */
    for (size_t align = 1; align <= (1 << 16); align <<= 1) {
        void *p = aligned_alloc(align, 3 * align);
        CHECK(p && ((uintptr_t)p & (align - 1)) == 0);
        fill(p, 3 * align, 9);
        free(p);
        p = memalign(align, 100);
        CHECK(p && ((uintptr_t)p & (align - 1)) == 0);
        free(p);
    }
    if (preloaded) { /* glibc 2.38 and later agree */
        errno = 0;
        CHECK(aligned_alloc(3, 30) == NULL && errno == EINVAL);
    }
    {
        void *p = memalign(48, 100); /* rounded up to 64, as glibc */
        CHECK(p && ((uintptr_t)p & 63) == 0);
        free(p);
    }
    long page = sysconf(_SC_PAGESIZE);
    {
        void *p = valloc(10);
        CHECK(p && ((uintptr_t)p & (page - 1)) == 0);
        free(p);
        p = pvalloc(10);
        CHECK(p && ((uintptr_t)p & (page - 1)) == 0);
        CHECK(malloc_usable_size(p) >= (size_t)page);
        memset(p, 1, page);
        free(p);
    }

    /* A random workload with a model of contents. */
    {
        enum { SLOTS = 2000 };
        static unsigned char *slot[SLOTS];
        static size_t len[SLOTS];
        uint64_t s = rng_state;
        for (int step = 0; step < 200000; step++) {
            int i = rnd(&s) % SLOTS;
            if (slot[i]) {
                if (!check_fill(slot[i], len[i], (uintptr_t)i * 7 + len[i])) {
                    CHECK(!"random workload: contents changed");
                    break;
                }
                if (rnd(&s) % 4 == 0) {
                    size_t n = rnd(&s) % 3000;
                    slot[i] = realloc(slot[i], n ? n : 1);
                    size_t keep = len[i] < n ? len[i] : n;
                    CHECK(check_fill(slot[i], keep, (uintptr_t)i * 7 + len[i]));
                    len[i] = n;
                    fill(slot[i], n, (uintptr_t)i * 7 + n);
                } else {
                    free(slot[i]);
                    slot[i] = NULL;
                }
            } else {
                size_t n = rnd(&s) % 64 == 0 ? rnd(&s) % 300000 : rnd(&s) % 600;
                slot[i] = rnd(&s) % 3 ? malloc(n) : calloc(n, 1);
                CHECK(slot[i] != NULL);
                len[i] = n;
                fill(slot[i], n, (uintptr_t)i * 7 + n);
            }
        }
        for (int i = 0; i < SLOTS; i++) free(slot[i]);
    }
}

/* -------------------------------------------------------------- threads -- */

enum { RING = 256, PER_THREAD = 100000, PAIRS = 3 };

struct ring {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void *items[RING];
    size_t sizes[RING];
    unsigned head, tail;
};

static struct ring rings[PAIRS];

static void *producer(void *arg) {
    struct ring *r = arg;
    uint64_t s = (uintptr_t)arg | 1;
    for (int i = 0; i < PER_THREAD; i++) {
        size_t n = 1 + rnd(&s) % (rnd(&s) % 16 == 0 ? 70000 : 700);
        unsigned char *p = malloc(n);
        fill(p, n, n);
        pthread_mutex_lock(&r->lock);
        while (r->head - r->tail == RING) pthread_cond_wait(&r->cond, &r->lock);
        r->items[r->head % RING] = p;
        r->sizes[r->head % RING] = n;
        r->head++;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
    }
    return NULL;
}

static void *consumer(void *arg) {
    struct ring *r = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        pthread_mutex_lock(&r->lock);
        while (r->head == r->tail) pthread_cond_wait(&r->cond, &r->lock);
        void *p = r->items[r->tail % RING];
        size_t n = r->sizes[r->tail % RING];
        r->tail++;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        if (!check_fill(p, n, n)) {
            fprintf(stderr, "threads: a block changed between threads\n");
            __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
        }
        free(p);
    }
    return NULL;
}

static void *short_lived(void *arg) {
    void *keep[20];
    for (int i = 0; i < 20; i++) {
        keep[i] = malloc(16 + i * 100);
        fill(keep[i], 16 + i * 100, i);
    }
    for (int i = 0; i < 20; i++) {
        if (!check_fill(keep[i], 16 + i * 100, i))
            __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
        free(keep[i]);
    }
    /* Hand one block to the joiner: freed on another thread after exit. */
    char *out = malloc(64);
    strcpy(out, "from a thread that exited");
    (void)arg;
    return out;
}

static void case_threads(void) {
    pthread_t t[2 * PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        pthread_mutex_init(&rings[i].lock, NULL);
        pthread_cond_init(&rings[i].cond, NULL);
        CHECK(pthread_create(&t[2 * i], NULL, producer, &rings[i]) == 0);
        CHECK(pthread_create(&t[2 * i + 1], NULL, consumer, &rings[i]) == 0);
    }
    for (int i = 0; i < 2 * PAIRS; i++) pthread_join(t[i], NULL);
    for (int round = 0; round < 50; round++) {
        pthread_t c[8];
        for (int i = 0; i < 8; i++)
            CHECK(pthread_create(&c[i], NULL, short_lived, NULL) == 0);
        for (int i = 0; i < 8; i++) {
            char *s = NULL;
            pthread_join(c[i], (void **)&s);
            CHECK(s && strcmp(s, "from a thread that exited") == 0);
            free(s);
        }
    }
}

/* ----------------------------------------------------------------- fork -- */

static volatile int stop_churn;

static void *churn(void *arg) {
    uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull | 1;
    void *held[512] = {0};
    while (!__atomic_load_n(&stop_churn, __ATOMIC_RELAXED)) {
        int i = rnd(&s) % 512;
        free(held[i]);
        /* A mix that refills caches, moves chunks across bands, and (1-2 MiB:
         * pooled but too big for thread caches) takes an arena lock on every
         * allocation. */
        int kind = rnd(&s) % 16;
        size_t n = kind == 0   ? rnd(&s) % 200000
                   : kind == 1 ? (1 << 20) + rnd(&s) % (1 << 20)
                               : rnd(&s) % 2000;
        held[i] = malloc(n + 1);
        ((unsigned char *)held[i])[n] = 1;
    }
    for (int i = 0; i < 512; i++) free(held[i]);
    return NULL;
}

static void *child_thread(void *arg) {
    void *p = malloc(1000);
    memset(p, 3, 1000);
    free(p);
    return arg;
}

static int child_work(int round) {
    alarm(20); /* a deadlocked child fails the case instead of hanging it */
    uint64_t s = round + 1;
    void *p[1000];
    for (int i = 0; i < 1000; i++) {
        size_t n = i % 50 == 0 ? (1 << 20) + 4096 : rnd(&s) % 5000 + 1;
        p[i] = malloc(n);
        if (!p[i]) return 2;
        fill(p[i], n, n);
        if (!check_fill(p[i], n, n)) return 3;
    }
    for (int i = 0; i < 1000; i++) free(p[i]);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0) return 4;
    pthread_join(t, NULL);
    return 0;
}

static void case_fork(void) {
    enum { CHURNERS = 3 };
    const char *env = getenv("FORKS");
    int FORKS = env ? atoi(env) : 30;
    pthread_t t[CHURNERS];
    for (int i = 0; i < CHURNERS; i++)
        CHECK(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)) == 0);
    for (int round = 0; round < FORKS; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            int rc = child_work(round);
            exit(rc); /* exit(), not _exit(): atexit handlers run */
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork round %d: child %s %d\n", round,
                    WIFSIGNALED(status) ? "killed by signal" : "exited with",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            failures++;
        }
        void *p = malloc(100);
        free(p);
    }
    __atomic_store_n(&stop_churn, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < CHURNERS; i++) pthread_join(t[i], NULL);
}

/* ---------------------------------------------------------------- limit -- */

static void case_limit(void) {
    enum { MAX = 4096 };
    static void *held[MAX];
    int n = 0;
    errno = 0;
    while (n < MAX) {
        void *p = malloc(1 << 20);
        if (!p) break;
        memset(p, 1, 1 << 20);
        held[n++] = p;
    }
    CHECK(n < MAX);
    CHECK(errno == ENOMEM);
    printf("limit: %d MiB before ENOMEM\n", n);
    errno = 0;
    CHECK(malloc(1 << 30) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(1 << 20, 1024) == NULL && errno == ENOMEM);
    void *p = NULL;
    CHECK(posix_memalign(&p, 4096, 1 << 30) == ENOMEM);
    for (int i = 0; i < n; i++) free(held[i]);
    /* Memory comes back: the same amount fits again. */
    int again = 0;
    while (again < n) {
        held[again] = malloc(1 << 20);
        if (!held[again]) break;
        again++;
    }
    CHECK(again == n);
    for (int i = 0; i < again; i++) free(held[i]);
}

/* ------------------------------------------------------------------ oom -- */

/* The OS refusing memory, through the library's test-only switch. */
static void case_oom(void) {
    int (*fault)(const char *) =
        (int (*)(const char *))dlsym(RTLD_DEFAULT, "poolalloc_test_fault");
    CHECK(fault != NULL);
    if (!fault) return;
    enum { SMALL = 64, BIG = 64 << 20 };
    unsigned char *live = malloc(SMALL);
    memset(live, 7, SMALL);
    unsigned char *huge = malloc(8 << 20);
    memset(huge, 8, 8 << 20);
    CHECK(fault("bogus") == -1);
    CHECK(fault("any:0:sticky") == 0);
    errno = 0;
    CHECK(malloc(BIG) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(BIG, 2) == NULL && errno == ENOMEM);
    void *p = NULL;
    CHECK(posix_memalign(&p, 1 << 21, BIG) == ENOMEM && p == NULL);
    errno = 0;
    /* A huge block cannot grow (no mremap, no new mapping): NULL, and the
     * block stays valid. */
    CHECK(realloc(huge, 4 * BIG) == NULL && errno == ENOMEM);
    CHECK(huge[0] == 8 && huge[(8 << 20) - 1] == 8);
    /* A free whose unmap is refused is no error to the caller: the block
     * is orphaned, and unmapped by a later reclaim once the OS allows. */
    CHECK(fault("unmap:0:sticky") == 0);
    for (int i = 0; i < 4; i++) {
        unsigned char *q = malloc(BIG);
        CHECK(q != NULL);
        if (q) q[BIG - 1] = 1;
        free(q);
    }
    CHECK(fault("map:0:sticky") == 0);
    int failed = 0;
    for (int i = 0; i < 64; i++) {
        void *q = malloc(BIG);
        if (!q) failed++;
        free(q);
    }
    CHECK(failed == 64);
    CHECK(live[0] == 7 && live[SMALL - 1] == 7);
    /* Served again. */
    CHECK(fault("off") == 0);
    unsigned char *big = malloc(BIG);
    CHECK(big != NULL);
    if (big) {
        memset(big, 9, BIG);
        big = realloc(big, 2 * BIG);
        CHECK(big != NULL && big[BIG - 1] == 9);
        free(big);
    }
    huge = realloc(huge, 4 * BIG);
    CHECK(huge != NULL && huge[0] == 8);
    free(huge);
    free(live);
}

/* ---------------------------------------------------------------- bench -- */

/* Allocation throughput: each thread keeps a working set of 1,000 blocks of
 * 16 B to 4 KiB (one in 64 up to 64 KiB) and replaces a random one per step,
 * touching its first and last byte. BENCH_STEPS steps per thread (default
 * 5,000,000), BENCH_THREADS threads (default 1). */
static void *bench_thread(void *arg) {
    uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull | 1;
    const char *env = getenv("BENCH_STEPS");
    long steps = env ? atol(env) : 5000000;
    enum { SET = 1000 };
    unsigned char *set[SET] = {0};
    for (long i = 0; i < steps; i++) {
        int k = rnd(&s) % SET;
        free(set[k]);
        uint64_t r = rnd(&s);
        size_t n = 16 + (r % 64 == 0 ? (r >> 8) % 65536 : (r >> 8) % 4096);
        set[k] = malloc(n);
        set[k][0] = 1;
        set[k][n - 1] = 2;
    }
    for (int k = 0; k < SET; k++) free(set[k]);
    return NULL;
}

static void case_bench(void) {
    const char *env = getenv("BENCH_THREADS");
    int n = env ? atoi(env) : 1;
    pthread_t t[64];
    if (n < 1 || n > 64) n = 1;
    for (int i = 0; i < n; i++)
        pthread_create(&t[i], NULL, bench_thread, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
}

/* ----------------------------------------------------------------- huge -- */

static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    return v ? atol(v) : dflt;
}

/* Huge blocks allocated and freed in a loop (an allocator that keeps a
 * freed mapping serves the next one without system calls or fresh pages),
 * and calloc of the size after a dirty free, which must read as zero. */
static void case_huge(void) {
    size_t size = (size_t)env_long("HUGE_MIB", 8) << 20;
    long pairs = env_long("HUGE_PAIRS", 500);
    int touch = (int)env_long("HUGE_TOUCH", 1);
    struct timespec a, b;
    unsigned long sum = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < pairs; i++) {
        unsigned char *p = malloc(size);
        CHECK(p != NULL);
        if (touch)
            for (size_t o = 0; o < size; o += 4096) p[o] = (unsigned char)i;
        else
            p[0] = 1;
        sum += p[size - 1];
        free(p);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    for (int round = 0; round < 3; round++) {
        unsigned char *p = malloc(size);
        CHECK(p != NULL);
        memset(p, 0xab, size);
        free(p);
        unsigned char *z = calloc(1, size);
        CHECK(z != NULL);
        for (size_t o = 0; o < size; o += 512) CHECK(z[o] == 0);
        CHECK(z[size - 1] == 0);
        free(z);
    }
    printf("huge: %zu MiB x %ld: %.2f us per pair (%lu)\n", size >> 20, pairs,
           ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / (pairs ? pairs : 1),
           sum);
}

/* --------------------------------------------------------------- larson -- */

/* After Larson and Krishnan's server benchmark ("Memory allocation for
 * long-running server applications", ISMM 1998): LARSON_LANES lanes (default
 * 4) of 1,000 blocks of 16 B-1 KiB. A lane's thread replaces a random block
 * LARSON_ROUNDS times (default 20,000), checking the block it frees, then
 * starts a successor that inherits the lane and exits; LARSON_GENERATIONS
 * threads per lane (default 50). Each thread frees mostly blocks its
 * predecessors allocated, as a server's worker threads free what others
 * (since gone) received. */
enum { LARSON_SLOTS = 1000 };
struct lane {
    unsigned char *slot[LARSON_SLOTS];
    size_t len[LARSON_SLOTS];
    uint64_t seed;
    long rounds;
    int gen, generations;
};
static pthread_mutex_t larson_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t larson_done = PTHREAD_COND_INITIALIZER;
static int larson_running;

static long env_or(const char *name, long fallback) {
    const char *v = getenv(name);
    return v ? atol(v) : fallback;
}

static void *larson_thread(void *arg) {
    struct lane *l = arg;
    for (long i = 0; i < l->rounds; i++) {
        int k = rnd(&l->seed) % LARSON_SLOTS;
        if (l->slot[k]) {
            size_t n = l->len[k];
            if (l->slot[k][0] != (unsigned char)n || l->slot[k][n - 1] != (unsigned char)k)
                __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
            free(l->slot[k]);
        }
        size_t n = 16 + rnd(&l->seed) % 1009;
        l->slot[k] = malloc(n);
        if (!l->slot[k]) {
            __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
            continue;
        }
        l->len[k] = n;
        l->slot[k][0] = (unsigned char)n;
        l->slot[k][n - 1] = (unsigned char)k;
    }
    pthread_t next;
    if (++l->gen < l->generations) {
        if (pthread_create(&next, NULL, larson_thread, l) == 0) {
            pthread_detach(next);
            return NULL;
        }
        /* The lane ends early: its remaining generations did not run. */
        __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_lock(&larson_lock);
    larson_running--;
    pthread_cond_signal(&larson_done);
    pthread_mutex_unlock(&larson_lock);
    return NULL;
}

static void case_larson(void) {
    int lanes = (int)env_or("LARSON_LANES", 4);
    if (lanes < 1 || lanes > 64) lanes = 4;
    struct lane *l = calloc(lanes, sizeof *l);
    CHECK(l != NULL);
    if (!l) return;
    larson_running = lanes;
    for (int i = 0; i < lanes; i++) {
        l[i].seed = (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull | 1;
        l[i].rounds = env_or("LARSON_ROUNDS", 20000);
        l[i].generations = (int)env_or("LARSON_GENERATIONS", 50);
        pthread_t t;
        if (pthread_create(&t, NULL, larson_thread, &l[i]) == 0) {
            pthread_detach(t);
        } else {
            __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
            pthread_mutex_lock(&larson_lock);
            larson_running--;
            pthread_mutex_unlock(&larson_lock);
        }
    }
    pthread_mutex_lock(&larson_lock);
    while (larson_running > 0) pthread_cond_wait(&larson_done, &larson_lock);
    pthread_mutex_unlock(&larson_lock);
    for (int i = 0; i < lanes; i++)
        for (int k = 0; k < LARSON_SLOTS; k++) free(l[i].slot[k]);
    free(l);
}

/* ---------------------------------------------------------------- misc -- */

static void case_stats(void) {
    void *p[100];
    for (int i = 0; i < 100; i++) p[i] = malloc(100 * i + 1);
    for (int i = 0; i < 100; i += 2) free(p[i]);
    void *big = malloc(10 << 20); /* a huge block, live at exit */
    memset(big, 1, 4096);
}

static int run(const char *name) {
    if (!strcmp(name, "api")) case_api();
    else if (!strcmp(name, "threads")) case_threads();
    else if (!strcmp(name, "fork")) case_fork();
    else if (!strcmp(name, "limit")) case_limit();
    else if (!strcmp(name, "stats")) case_stats();
    else if (!strcmp(name, "bench")) case_bench();
    else if (!strcmp(name, "larson")) case_larson();
    else if (!strcmp(name, "huge")) case_huge();
    else if (!strcmp(name, "oom")) case_oom();
    else if (!strcmp(name, "bad-free")) {
        int x;
        free(&x + 64);
    } else if (!strcmp(name, "double-free")) {
        void *p = malloc(100);
        free(p);
        free(p);
    } else if (!strcmp(name, "interior-free")) {
        char *p = malloc(100);
        free(p + 16);
    } else if (!strcmp(name, "realloc-foreign")) {
        int x[64];
        void *p = realloc(&x[32], 100);
        printf("realloc-foreign: returned %p\n", p);
    } else if (!strcmp(name, "realloc-freed")) {
        /* Freed into the thread's cache, then reallocated: the cached
         * realloc declines it and the full path names it. */
        void *p = malloc(16);
        free(p);
        void *q = realloc(p, 32);
        printf("realloc-freed: returned %p\n", q);
    } else if (!strcmp(name, "realloc-interior")) {
        char *p = malloc(100);
        void *q = realloc(p + 16, 200);
        printf("realloc-interior: returned %p\n", q);
    } else if (!strcmp(name, "preloaded")) {
        puts(preloaded ? "preloaded" : "system");
        return 0;
    } else {
        fprintf(stderr, "unknown case %s\n", name);
        return 2;
    }
    if (failures) {
        printf("%s: FAILED (%d checks)\n", name, failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *probe = malloc(1);
    preloaded = malloc_usable_size(probe) == 16; /* glibc: 24 */
    free(probe);
    if (argc < 2) {
        int rc = 0;
        rc |= run("api");
        rc |= run("threads");
        rc |= run("fork");
        return rc;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) rc |= run(argv[i]);
    return rc;
}
