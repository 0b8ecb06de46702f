/*
 * queue_harness.c - the queue core (poqueue.c) driven natively, as the driver
 * drives it: one lock around every call, an "event" flag kept in step with
 * the queue exactly as ProcObsrv.c keeps its KEVENT.
 *
 * Built as libpoqueue.so for pytest (ctypes) and, with POQ_HARNESS_MAIN, as a
 * stand-alone program for the AddressSanitizer/UBSan and ThreadSanitizer runs.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poqueue.h"

typedef struct poh {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int signalled;           /* the driver's KEVENT */
    unsigned long violations; /* times signalled != (records > 0) after an operation */
    po_queue q;
    void *ring;
} poh;

static void poh_check(poh *h)
{
    if (h->signalled != (h->q.records > 0))
        h->violations++;
}

poh *poh_new(uint32_t capacity)
{
    poh *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->ring = aligned_alloc(8, capacity ? (capacity + 7u) & ~7u : 8);
    if (h->ring == NULL || !po_queue_init(&h->q, h->ring, capacity)) {
        free(h->ring);
        free(h);
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    return h;
}

void poh_free(poh *h)
{
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h->ring);
    free(h);
}

/* Same steps as PoRecord. Returns PO_PUSH_QUEUED/DROPPED; *seq gets the sequence. */
int poh_push(poh *h, uint32_t kind, uint32_t pid, uint32_t ppid, uint32_t exit_status,
             uint32_t flags, const uint16_t *image, uint32_t image_chars,
             const uint16_t *command_line, uint32_t command_line_chars, uint64_t timestamp,
             uint64_t *seq)
{
    po_event ev;
    int r;

    memset(&ev, 0, sizeof(ev));
    ev.kind = kind;
    ev.pid = pid;
    ev.parent_pid = ppid;
    ev.exit_status = exit_status;
    ev.flags = flags;
    ev.image = image;
    ev.image_chars = image_chars;
    ev.command_line = command_line;
    ev.command_line_chars = command_line_chars;
    ev.timestamp = timestamp;
    pthread_mutex_lock(&h->lock);
    r = po_queue_push(&h->q, &ev, seq);
    if (r == PO_PUSH_QUEUED && h->q.records == 1) {
        h->signalled = 1;
        pthread_cond_broadcast(&h->cond);
    }
    poh_check(h);
    pthread_mutex_unlock(&h->lock);
    return r;
}

/* Same steps as GET_EVENTS. */
uint32_t poh_pop(poh *h, void *out, uint32_t out_len, uint32_t *records)
{
    uint32_t n;

    pthread_mutex_lock(&h->lock);
    n = po_queue_pop(&h->q, out, out_len, records);
    if (h->q.records == 0)
        h->signalled = 0;
    poh_check(h);
    pthread_mutex_unlock(&h->lock);
    return n;
}

void poh_stats(poh *h, PROCOBSRV_STATS *out)
{
    pthread_mutex_lock(&h->lock);
    po_queue_stats(&h->q, out);
    pthread_mutex_unlock(&h->lock);
}

int poh_signalled(poh *h)
{
    int s;

    pthread_mutex_lock(&h->lock);
    s = h->signalled;
    pthread_mutex_unlock(&h->lock);
    return s;
}

unsigned long poh_violations(poh *h)
{
    return h->violations;
}

uint32_t poh_peek_size(poh *h)
{
    uint32_t s;

    pthread_mutex_lock(&h->lock);
    s = po_queue_peek_size(&h->q);
    pthread_mutex_unlock(&h->lock);
    return s;
}

uint32_t poh_record_size(uint32_t image_chars, uint32_t command_line_chars)
{
    return PROCOBSRV_RECORD_SIZE(image_chars, command_line_chars);
}

/* ---- concurrent run ------------------------------------------------------- */

typedef struct poh_run_result {
    uint64_t produced;
    uint64_t delivered;
    uint64_t dropped;        /* producers' own count of PO_PUSH_DROPPED */
    uint64_t stats_dropped;  /* the queue's count */
    uint64_t notified;
    uint64_t missing;        /* sequence numbers neither delivered nor dropped */
    uint64_t duplicates;     /* sequence numbers seen twice (or delivered and dropped) */
    uint64_t order_errors;   /* global sequence or per-producer order broken */
    uint64_t malformed;
    uint64_t empty_wakeups;  /* woke on the event, found nothing */
    uint64_t batches;
    uint64_t violations;     /* event state != (records > 0) */
} poh_run_result;

typedef struct run_ctx {
    poh *h;
    uint32_t producers;
    uint32_t per_producer;
    uint8_t *seen;            /* per sequence number: 1 delivered, 2 dropped */
    volatile int producers_left;
    uint64_t dropped;
} run_ctx;

typedef struct producer_arg {
    run_ctx *ctx;
    uint32_t id;
} producer_arg;

static void *run_producer(void *p)
{
    producer_arg *a = (producer_arg *)p;
    run_ctx *c = a->ctx;
    uint16_t image[40];
    uint64_t seq, dropped = 0;
    uint32_t image_chars = 5 + a->id % 30;

    for (uint32_t i = 0; i < image_chars; i++)
        image[i] = (uint16_t)('a' + (a->id + i) % 26);
    for (uint32_t n = 0; n < c->per_producer; n++) {
        /* pid carries producer id and per-producer counter so the consumer can check order. */
        int r = poh_push(c->h, n % 3 ? PROCOBSRV_KIND_CREATE : PROCOBSRV_KIND_EXIT,
                         a->id << 24 | n, a->id, 0, 0, image, n % 3 ? image_chars : 0, NULL, 0,
                         n, &seq);
        if (r == PO_PUSH_DROPPED) {
            __atomic_store_n(&c->seen[seq], (uint8_t)2, __ATOMIC_RELAXED);
            dropped++;
        }
    }
    __atomic_fetch_add(&c->dropped, dropped, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&c->producers_left, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&c->h->lock);
    pthread_cond_broadcast(&c->h->cond); /* let the consumer notice the end */
    pthread_mutex_unlock(&c->h->lock);
    return NULL;
}

static void consume(run_ctx *c, const uint8_t *buf, uint32_t len, uint32_t *next, uint64_t *last_seq,
                    poh_run_result *res)
{
    uint32_t off = 0;

    while (off < len) {
        PROCOBSRV_RECORD r;
        memcpy(&r, buf + off, sizeof(r));
        uint32_t id = r.pid >> 24, n = r.pid & 0xFFFFFFu;
        if (r.size < sizeof(r) || r.size % 8 || r.size > len - off || id == 0 ||
            id > c->producers || r.parent_pid != id ||
            r.size != PROCOBSRV_RECORD_SIZE(r.image_length, r.command_line_length)) {
            res->malformed++;
            return;
        }
        if (r.sequence <= *last_seq || n < next[id])
            res->order_errors++;
        *last_seq = r.sequence;
        next[id] = n + 1;
        if (r.sequence <= (uint64_t)c->producers * c->per_producer) {
            if (__atomic_load_n(&c->seen[r.sequence], __ATOMIC_RELAXED) != 0)
                res->duplicates++;
            __atomic_store_n(&c->seen[r.sequence], (uint8_t)1, __ATOMIC_RELAXED);
        } else {
            res->malformed++;
        }
        res->delivered++;
        off += r.size;
    }
}

/* producers threads push per_producer records each while this thread consumes
 * with a buffer of out_len bytes, waiting on the event like the Wine client. */
int poh_run_concurrent(uint32_t capacity, uint32_t producers, uint32_t per_producer,
                       uint32_t out_len, poh_run_result *res)
{
    run_ctx c;
    pthread_t *threads;
    producer_arg *args;
    uint32_t *next;
    uint8_t *buf;
    uint64_t total = (uint64_t)producers * per_producer, last_seq = 0;
    PROCOBSRV_STATS st;

    memset(res, 0, sizeof(*res));
    memset(&c, 0, sizeof(c));
    if (producers == 0 || producers > 255 || per_producer > 0xFFFFFFu)
        return -1;
    c.h = poh_new(capacity);
    c.producers = producers;
    c.per_producer = per_producer;
    c.seen = calloc(total + 1, 1);
    c.producers_left = (int)producers;
    threads = calloc(producers, sizeof(*threads));
    args = calloc(producers, sizeof(*args));
    next = calloc(producers + 1, sizeof(*next));
    buf = malloc(out_len ? out_len : 1);
    if (!c.h || !c.seen || !threads || !args || !next || !buf)
        return -2;
    for (uint32_t i = 0; i < producers; i++) {
        args[i].ctx = &c;
        args[i].id = i + 1;
        pthread_create(&threads[i], NULL, run_producer, &args[i]);
    }
    for (;;) {
        int left;
        pthread_mutex_lock(&c.h->lock);
        while (!c.h->signalled && (left = __atomic_load_n(&c.producers_left, __ATOMIC_ACQUIRE)) > 0)
            pthread_cond_wait(&c.h->cond, &c.h->lock);
        int woke_signalled = c.h->signalled;
        pthread_mutex_unlock(&c.h->lock);
        left = __atomic_load_n(&c.producers_left, __ATOMIC_ACQUIRE);
        uint32_t got = poh_pop(c.h, buf, out_len, NULL);
        if (got) {
            res->batches++;
            consume(&c, buf, got, next, &last_seq, res);
        } else if (woke_signalled && poh_peek_size(c.h) <= out_len) {
            res->empty_wakeups++; /* single consumer: signalled must mean data */
        }
        if (left == 0 && !poh_signalled(c.h))
            break;
        if (got == 0 && poh_peek_size(c.h) > out_len)
            break; /* buffer too small for the next record: stop instead of spinning */
    }
    for (uint32_t i = 0; i < producers; i++)
        pthread_join(threads[i], NULL);
    poh_stats(c.h, &st);
    res->produced = total;
    res->dropped = c.dropped;
    res->stats_dropped = st.dropped;
    res->notified = st.notified;
    res->violations = poh_violations(c.h);
    for (uint64_t s = 1; s <= total; s++)
        if (c.seen[s] == 0)
            res->missing++;
    poh_free(c.h);
    free(c.seen);
    free(threads);
    free(args);
    free(next);
    free(buf);
    return 0;
}

#ifdef POQ_HARNESS_MAIN
/* Stand-alone run for the sanitizers: deterministic edge cases, then concurrency. */
int main(int argc, char **argv)
{
    uint32_t per = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 200000;
    poh_run_result r;
    int failures = 0;
    static uint16_t text[5000];
    static uint8_t out[PROCOBSRV_MAX_RECORD_SIZE * 3];

    for (uint32_t i = 0; i < 5000; i++)
        text[i] = (uint16_t)('A' + i % 26);
    /* Every string length across truncation limits, into every small capacity. */
    for (uint32_t cap = 8; cap <= 3 * PROCOBSRV_MAX_RECORD_SIZE; cap += 1032) {
        poh *h = poh_new(cap);
        for (uint32_t n = 0; n < 40; n++) {
            uint64_t seq;
            poh_push(h, 1, n, 0, 0, 0, text, (n * 397) % 1300, text, (n * 911) % 2600, n, &seq);
            if (n % 3 == 0)
                poh_pop(h, out, (n * 1237) % sizeof(out), NULL);
        }
        while (poh_pop(h, out, sizeof(out), NULL))
            ;
        PROCOBSRV_STATS st;
        poh_stats(h, &st);
        if (st.notified != st.delivered + st.dropped + st.queued_records || poh_violations(h))
            failures++;
        poh_free(h);
    }
    /* Concurrency: 4 producers, small ring (drops) and large ring. */
    uint32_t caps[2] = {16384, 1u << 20};
    for (int i = 0; i < 2; i++) {
        if (poh_run_concurrent(caps[i], 4, per, 65536, &r) != 0)
            failures++;
        int ok = r.delivered + r.dropped == r.produced && r.missing == 0 && r.duplicates == 0 &&
                 r.order_errors == 0 && r.malformed == 0 && r.violations == 0 &&
                 r.dropped == r.stats_dropped && r.empty_wakeups == 0;
        printf("{\"capacity\":%u,\"produced\":%llu,\"delivered\":%llu,\"dropped\":%llu,\"ok\":%s}\n",
               caps[i], (unsigned long long)r.produced, (unsigned long long)r.delivered,
               (unsigned long long)r.dropped, ok ? "true" : "false");
        failures += !ok;
    }
    printf("{\"failures\":%d}\n", failures);
    return failures != 0;
}
#endif
