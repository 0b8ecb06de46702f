/*
 * pocheck.exe - drives ProcObsrv.sys for real under Wine (or Windows).
 *
 *   pocheck.exe selftest <ProcObsrv.sys>   full run against the self-test build
 *   pocheck.exe normal   <ProcObsrv.sys>   the normal build: it must refuse Wine's opens,
 *                                           which carry no security context
 *
 * Registers and starts the driver through the SCM, opens the device and the
 * named event, runs the checks, then deactivates, stops and deletes the
 * service. Every check prints one JSON line {"check":..,"ok":..,...}; the last
 * line is {"summary":..}. Exit code: number of failed checks (0 = all passed).
 */
#include <windows.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ProcObsrv.h"

#define PRODUCERS 4
#define PER_PRODUCER 25600 /* 4 x 25,600 = 102,400 injected in the flood */
#define BATCH 128
#define EVENTS_BUFFER PROCOBSRV_RECOMMENDED_EVENTS_BUFFER
#define INJECT_MAX_WCHARS 8192 /* image + command line of the longest request sent */

static int g_failures;
static int g_checks;
static HANDLE g_dev = INVALID_HANDLE_VALUE;
static HANDLE g_event;

/* ---- output ------------------------------------------------------------- */

static void check(const char *name, int ok, const char *fmt, ...)
{
    char extra[512] = "";
    va_list ap;

    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(extra, sizeof(extra), fmt, ap);
        va_end(ap);
    }
    g_checks++;
    if (!ok)
        g_failures++;
    printf("{\"check\":\"%s\",\"ok\":%s%s%s}\n", name, ok ? "true" : "false", extra[0] ? "," : "",
           extra);
    fflush(stdout);
}

/* ---- IOCTL helpers ------------------------------------------------------- */

/* Returns the Win32 error (0 on success); *returned gets lpBytesReturned. */
static DWORD ioctl(DWORD code, const void *in, DWORD in_len, void *out, DWORD out_len,
                   DWORD *returned)
{
    DWORD got = 0;
    BOOL ok = DeviceIoControl(g_dev, code, (void *)in, in_len, out, out_len, &got, NULL);
    DWORD err = ok ? 0 : GetLastError();

    if (returned)
        *returned = got;
    return err;
}

/* An error request must fail with `want` and report 0 bytes. */
static void expect_error(const char *name, DWORD code, const void *in, DWORD in_len, void *out,
                         DWORD out_len, DWORD want)
{
    DWORD got, err = ioctl(code, in, in_len, out, out_len, &got);

    check(name, err == want && (err == 0 || got == 0), "\"error\":%lu,\"want\":%lu,\"returned\":%lu",
          (unsigned long)err, (unsigned long)want, (unsigned long)got);
}

static int get_stats(PROCOBSRV_STATS *st)
{
    DWORD got;

    memset(st, 0xA5, sizeof(*st));
    return ioctl(IOCTL_PROCOBSRV_GET_STATS, NULL, 0, st, sizeof(*st), &got) == 0 &&
           got == sizeof(*st);
}

static DWORD activate(DWORD flags)
{
    PROCOBSRV_ACTIVATE_INPUT in = {sizeof(in), PROCOBSRV_ABI_VERSION, flags, 0};

    return ioctl(IOCTL_PROCOBSRV_ACTIVATE, &in, sizeof(in), NULL, 0, NULL);
}

static DWORD inject(DWORD kind, DWORD count, DWORD pid, DWORD ppid, const WCHAR *image,
                    DWORD image_len, const WCHAR *cmd, DWORD cmd_len)
{
    unsigned char buf[sizeof(PROCOBSRV_INJECT_INPUT) + sizeof(WCHAR) * INJECT_MAX_WCHARS];
    PROCOBSRV_INJECT_INPUT *req = (PROCOBSRV_INJECT_INPUT *)buf;
    DWORD len = sizeof(*req) + sizeof(WCHAR) * (image_len + cmd_len);

    memset(req, 0, sizeof(*req));
    req->kind = kind;
    req->count = count;
    req->pid = pid;
    req->parent_pid = ppid;
    req->exit_status = kind == PROCOBSRV_KIND_EXIT ? (DWORD)STATUS_CONTROL_C_EXIT : 0;
    req->image_length = (po_u16)image_len;
    req->command_line_length = (po_u16)cmd_len;
    memcpy(buf + sizeof(*req), image, sizeof(WCHAR) * image_len);
    memcpy(buf + sizeof(*req) + sizeof(WCHAR) * image_len, cmd, sizeof(WCHAR) * cmd_len);
    return ioctl(IOCTL_PROCOBSRV_INJECT, buf, len, NULL, 0, NULL);
}

static int event_signalled(void)
{
    return WaitForSingleObject(g_event, 0) == WAIT_OBJECT_0;
}

/* ---- record walking ------------------------------------------------------ */

typedef struct tally {
    po_u64 last_seq;     /* last sequence seen (global order) */
    po_u64 delivered;
    po_u64 gaps;         /* sequence numbers skipped = dropped */
    po_u64 bad;          /* malformed records */
    po_u64 order_errors; /* sequence or per-producer order violations */
    po_u32 next_pid[PRODUCERS + 1];
    po_u64 per_producer[PRODUCERS + 1];
} tally;

static void walk(tally *t, const unsigned char *buf, DWORD len)
{
    DWORD off = 0;

    while (off < len) {
        const PROCOBSRV_RECORD *r = (const PROCOBSRV_RECORD *)(buf + off);
        po_u32 strings = 2u * ((po_u32)r->image_length + r->command_line_length);
        po_u32 p = r->pid >> 24, n = r->pid & 0xFFFFFFu; /* producer id, per-producer counter */

        if (len - off < sizeof(*r) || r->size % 8 || r->size > len - off ||
            r->size != PROCOBSRV_RECORD_SIZE(r->image_length, r->command_line_length) ||
            r->reserved != 0 || !(r->flags & PROCOBSRV_RECORD_INJECTED)) {
            t->bad++;
            return;
        }
        for (po_u32 i = sizeof(*r) + strings; i < r->size; i++)
            if (buf[off + i] != 0)
                t->bad++; /* padding must be zero: nothing stale leaves the kernel */
        if (r->sequence <= t->last_seq)
            t->order_errors++;
        else
            t->gaps += r->sequence - t->last_seq - 1;
        t->last_seq = r->sequence;
        t->delivered++;
        if (p >= 1 && p <= PRODUCERS) {
            if (n < t->next_pid[p])
                t->order_errors++;
            t->next_pid[p] = n + 1;
            t->per_producer[p]++;
        }
        off += r->size;
    }
}

/* Drains until GET_EVENTS returns 0 bytes; returns records read. */
static po_u64 drain(tally *t, unsigned char *buf, DWORD buf_len, DWORD *bad_calls)
{
    po_u64 before = t->delivered;
    DWORD got;

    for (;;) {
        DWORD err = ioctl(IOCTL_PROCOBSRV_GET_EVENTS, NULL, 0, buf, buf_len, &got);

        if (err != 0 || got > buf_len || got % 8) {
            (*bad_calls)++;
            break;
        }
        if (got == 0)
            break;
        walk(t, buf, got);
    }
    return t->delivered - before;
}

/* ---- the flood ----------------------------------------------------------- */

typedef struct producer_arg {
    DWORD id;
    DWORD errors;
    LONG done;
} producer_arg;

static volatile LONG g_producers_running;

static DWORD WINAPI producer(void *p)
{
    producer_arg *a = (producer_arg *)p;
    WCHAR image[64], cmd[64];
    int il = swprintf(image, 64, L"C:\\flood\\producer%lu.exe", (unsigned long)a->id);
    int cl = swprintf(cmd, 64, L"producer%lu.exe --flood", (unsigned long)a->id);

    for (DWORD n = 0; n < PER_PRODUCER; n += BATCH) {
        DWORD kind = (n / BATCH) % 2 ? PROCOBSRV_KIND_EXIT : PROCOBSRV_KIND_CREATE;
        DWORD err = kind == PROCOBSRV_KIND_CREATE
                        ? inject(kind, BATCH, a->id << 24 | n, a->id, image, il, cmd, cl)
                        : inject(kind, BATCH, a->id << 24 | n, a->id, NULL, 0, NULL, 0);
        if (err)
            a->errors++;
    }
    InterlockedDecrement(&g_producers_running);
    return 0;
}

typedef struct reader_arg {
    tally t;
    DWORD bad_calls;
    DWORD wakeups;
    DWORD empty_wakeups; /* woke on the event, found nothing: the event lied */
} reader_arg;

static DWORD WINAPI reader(void *p)
{
    reader_arg *a = (reader_arg *)p;
    unsigned char *buf = malloc(EVENTS_BUFFER);
    DWORD got;

    for (;;) {
        DWORD w = WaitForSingleObject(g_event, 200);

        if (w == WAIT_OBJECT_0) {
            a->wakeups++;
            /* We are the only consumer: signalled means records are there now. */
            if (ioctl(IOCTL_PROCOBSRV_GET_EVENTS, NULL, 0, buf, EVENTS_BUFFER, &got) != 0)
                a->bad_calls++;
            else if (got == 0)
                a->empty_wakeups++;
            else
                walk(&a->t, buf, got);
        } else if (g_producers_running == 0) {
            drain(&a->t, buf, EVENTS_BUFFER, &a->bad_calls);
            break;
        }
    }
    free(buf);
    return 0;
}

static void flood(void)
{
    HANDLE threads[PRODUCERS + 1];
    producer_arg pa[PRODUCERS];
    reader_arg ra;
    PROCOBSRV_STATS before, after;
    DWORD errors = 0, t0;
    po_u64 injected = (po_u64)PRODUCERS * PER_PRODUCER, dropped;

    memset(&ra, 0, sizeof(ra));
    get_stats(&before);
    ra.t.last_seq = before.notified; /* gaps count from the flood's first sequence number */
    g_producers_running = PRODUCERS;
    t0 = GetTickCount();
    threads[PRODUCERS] = CreateThread(NULL, 0, reader, &ra, 0, NULL);
    for (DWORD i = 0; i < PRODUCERS; i++) {
        pa[i].id = i + 1;
        pa[i].errors = 0;
        threads[i] = CreateThread(NULL, 0, producer, &pa[i], 0, NULL);
    }
    WaitForMultipleObjects(PRODUCERS + 1, threads, TRUE, INFINITE);
    for (DWORD i = 0; i <= PRODUCERS; i++)
        CloseHandle(threads[i]);
    for (DWORD i = 0; i < PRODUCERS; i++)
        errors += pa[i].errors;
    get_stats(&after);

    po_u64 notified = after.notified - before.notified;
    po_u64 delivered = after.delivered - before.delivered;
    dropped = after.dropped - before.dropped;
    check("flood_ran", errors == 0 && ra.bad_calls == 0,
          "\"injected\":%llu,\"ms\":%lu,\"inject_errors\":%lu,\"bad_calls\":%lu",
          (unsigned long long)injected, (unsigned long)(GetTickCount() - t0),
          (unsigned long)errors, (unsigned long)ra.bad_calls);
    check("flood_records_well_formed", ra.t.bad == 0, "\"bad\":%llu", (unsigned long long)ra.t.bad);
    check("flood_sequence_order", ra.t.order_errors == 0, "\"order_errors\":%llu",
          (unsigned long long)ra.t.order_errors);
    check("flood_exactly_once_or_dropped",
          notified == injected && delivered == ra.t.delivered && delivered + dropped == injected &&
              ra.t.last_seq == after.notified &&
              ra.t.gaps == dropped &&
              after.queued_records == 0,
          "\"notified\":%llu,\"delivered\":%llu,\"dropped\":%llu,\"seen\":%llu,\"gaps\":%llu",
          (unsigned long long)notified, (unsigned long long)delivered,
          (unsigned long long)dropped, (unsigned long long)ra.t.delivered,
          (unsigned long long)ra.t.gaps);
    po_u64 per = 0;
    for (DWORD i = 1; i <= PRODUCERS; i++)
        per += ra.t.per_producer[i];
    check("flood_per_producer_order", per == ra.t.delivered && ra.t.order_errors == 0,
          "\"per_producer_total\":%llu", (unsigned long long)per);
    check("flood_event_never_lied", ra.empty_wakeups == 0, "\"wakeups\":%lu,\"empty_wakeups\":%lu",
          (unsigned long)ra.wakeups, (unsigned long)ra.empty_wakeups);
    check("flood_stats_add_up",
          after.notified == after.delivered + after.dropped + after.queued_records &&
              after.peak_queued_bytes <= after.capacity_bytes,
          "\"peak_queued_bytes\":%lu", (unsigned long)after.peak_queued_bytes);
}

/* ---- focused checks -------------------------------------------------------- */

static void event_semantics(unsigned char *buf)
{
    tally t;
    DWORD bad = 0, got;
    static WCHAR img[PROCOBSRV_MAX_IMAGE_CHARS];

    memset(&t, 0, sizeof(t));
    drain(&t, buf, EVENTS_BUFFER, &bad);
    check("event_clear_when_empty", !event_signalled(), NULL);
    for (DWORD i = 0; i < PROCOBSRV_MAX_IMAGE_CHARS; i++)
        img[i] = L'x';
    /* Three records of 2 KiB: a minimum-sized buffer takes two, leaving one. */
    inject(PROCOBSRV_KIND_CREATE, 3, 100, 0, img, PROCOBSRV_MAX_IMAGE_CHARS, NULL, 0);
    /* A pulse would be gone by now; a level stays set however often we look. */
    int s1 = event_signalled(), s2 = event_signalled();
    Sleep(50);
    int s3 = event_signalled();
    check("event_set_while_queued", s1 && s2 && s3, NULL);
    /* A partial drain leaves the event signalled. */
    DWORD err = ioctl(IOCTL_PROCOBSRV_GET_EVENTS, NULL, 0, buf, PROCOBSRV_MIN_EVENTS_BUFFER, &got);
    check("partial_drain_keeps_event", err == 0 && got > 0 && event_signalled(), "\"returned\":%lu",
          (unsigned long)got);
    drain(&t, buf, EVENTS_BUFFER, &bad);
    check("event_cleared_by_drain", !event_signalled() && bad == 0, NULL);
}

static void truncation(unsigned char *buf)
{
    static WCHAR longimg[1500], longcmd[3000];
    PROCOBSRV_RECORD *r = (PROCOBSRV_RECORD *)buf;
    DWORD got, err;

    for (int i = 0; i < 1500; i++)
        longimg[i] = (WCHAR)(L'a' + i % 26);
    for (int i = 0; i < 3000; i++)
        longcmd[i] = (WCHAR)(L'A' + i % 26);
    err = inject(PROCOBSRV_KIND_CREATE, 1, 7, 1, longimg, 1500, longcmd, 3000);
    DWORD err2 = ioctl(IOCTL_PROCOBSRV_GET_EVENTS, NULL, 0, buf, EVENTS_BUFFER, &got);
    const WCHAR *s = (const WCHAR *)(r + 1);
    int ok = err == 0 && err2 == 0 && got == PROCOBSRV_MAX_RECORD_SIZE &&
             r->size == PROCOBSRV_MAX_RECORD_SIZE &&
             r->image_length == PROCOBSRV_MAX_IMAGE_CHARS &&
             r->command_line_length == PROCOBSRV_MAX_COMMAND_LINE_CHARS &&
             (r->flags & PROCOBSRV_RECORD_IMAGE_TRUNCATED) &&
             (r->flags & PROCOBSRV_RECORD_COMMAND_LINE_TRUNCATED) &&
             memcmp(s, longimg, 2 * PROCOBSRV_MAX_IMAGE_CHARS) == 0 &&
             memcmp(s + PROCOBSRV_MAX_IMAGE_CHARS, longcmd, 2 * PROCOBSRV_MAX_COMMAND_LINE_CHARS) == 0;
    check("truncation_to_limits", ok, "\"returned\":%lu,\"flags\":%lu", (unsigned long)got,
          (unsigned long)r->flags);
}

/* With no reader, injecting past capacity must drop and count, never block. */
static void overflow(unsigned char *buf)
{
    PROCOBSRV_STATS before, full, after;
    static const WCHAR img[] = L"C:\\overflow\\o.exe";
    DWORD slowest = 0, t0, errors = 0, bad = 0;
    tally t;
    po_u32 rec = PROCOBSRV_RECORD_SIZE(17, 0);
    DWORD total = 2 * (PROCOBSRV_QUEUE_CAPACITY_BYTES / rec);

    get_stats(&before);
    for (DWORD n = 0; n < total; n += 512) {
        t0 = GetTickCount();
        if (inject(PROCOBSRV_KIND_CREATE, 512, n, 0, img, 17, NULL, 0))
            errors++;
        if (GetTickCount() - t0 > slowest)
            slowest = GetTickCount() - t0;
    }
    get_stats(&full);
    po_u64 dropped = full.dropped - before.dropped;
    check("overflow_drops_and_counts",
          errors == 0 && dropped > 0 && full.queued_bytes <= full.capacity_bytes &&
              full.queued_bytes == full.queued_records * rec &&
              full.notified == full.delivered + full.dropped + full.queued_records &&
              full.queued_records + dropped == (total + 511) / 512 * 512,
          "\"injected\":%lu,\"queued\":%lu,\"dropped\":%llu,\"slowest_call_ms\":%lu",
          (unsigned long)((total + 511) / 512 * 512), (unsigned long)full.queued_records,
          (unsigned long long)dropped, (unsigned long)slowest);
    memset(&t, 0, sizeof(t));
    t.last_seq = before.notified;
    drain(&t, buf, EVENTS_BUFFER, &bad);
    get_stats(&after);
    /* Same-sized records: the ring takes the first ones and drops the rest. */
    check("overflow_keeps_oldest",
          bad == 0 && t.bad == 0 && t.gaps == 0 && t.delivered == full.queued_records &&
              after.queued_records == 0 && !event_signalled(),
          "\"delivered\":%llu", (unsigned long long)t.delivered);
}

static void bad_inputs(unsigned char *buf, int active)
{
    PROCOBSRV_ACTIVATE_INPUT a = {sizeof(a), PROCOBSRV_ABI_VERSION, 0, 0};
    unsigned char big[64] = {0};
    PROCOBSRV_STATS st;
    DWORD got;

    if (!active) {
        expect_error("activate_no_input", IOCTL_PROCOBSRV_ACTIVATE, NULL, 0, NULL, 0, ERROR_BAD_LENGTH);
        expect_error("activate_short_input", IOCTL_PROCOBSRV_ACTIVATE, &a, 8, NULL, 0, ERROR_BAD_LENGTH);
        memcpy(big, &a, sizeof(a));
        expect_error("activate_long_input", IOCTL_PROCOBSRV_ACTIVATE, big, sizeof(big), NULL, 0,
                     ERROR_BAD_LENGTH);
        a.size = 12;
        expect_error("activate_bad_size_field", IOCTL_PROCOBSRV_ACTIVATE, &a, sizeof(a), NULL, 0,
                     ERROR_INVALID_PARAMETER);
        a.size = sizeof(a);
        a.abi_version = PROCOBSRV_ABI_VERSION + 1;
        expect_error("activate_wrong_abi", IOCTL_PROCOBSRV_ACTIVATE, &a, sizeof(a), NULL, 0,
                     ERROR_REVISION_MISMATCH);
        a.abi_version = PROCOBSRV_ABI_VERSION;
        a.flags = 0x80;
        expect_error("activate_unknown_flag", IOCTL_PROCOBSRV_ACTIVATE, &a, sizeof(a), NULL, 0,
                     ERROR_INVALID_PARAMETER);
        a.flags = 0;
        a.reserved = 1;
        expect_error("activate_reserved_nonzero", IOCTL_PROCOBSRV_ACTIVATE, &a, sizeof(a), NULL, 0,
                     ERROR_INVALID_PARAMETER);
        expect_error("deactivate_when_inactive", IOCTL_PROCOBSRV_DEACTIVATE, NULL, 0, NULL, 0,
                     ERROR_BAD_COMMAND);
        return;
    }
    expect_error("activate_twice", IOCTL_PROCOBSRV_ACTIVATE, &a, sizeof(a), NULL, 0, ERROR_BAD_COMMAND);
    expect_error("deactivate_with_input", IOCTL_PROCOBSRV_DEACTIVATE, big, 4, NULL, 0, ERROR_BAD_LENGTH);
    expect_error("get_events_with_input", IOCTL_PROCOBSRV_GET_EVENTS, big, 4, buf, EVENTS_BUFFER,
                 ERROR_BAD_LENGTH);
    expect_error("get_events_no_buffer", IOCTL_PROCOBSRV_GET_EVENTS, NULL, 0, NULL, 0,
                 ERROR_INSUFFICIENT_BUFFER);
    expect_error("get_events_small_buffer", IOCTL_PROCOBSRV_GET_EVENTS, NULL, 0, buf,
                 PROCOBSRV_MIN_EVENTS_BUFFER - 8, ERROR_INSUFFICIENT_BUFFER);
    expect_error("get_stats_no_buffer", IOCTL_PROCOBSRV_GET_STATS, NULL, 0, NULL, 0,
                 ERROR_INSUFFICIENT_BUFFER);
    expect_error("get_stats_small_buffer", IOCTL_PROCOBSRV_GET_STATS, NULL, 0, &st, sizeof(st) - 4,
                 ERROR_INSUFFICIENT_BUFFER);
    expect_error("get_stats_with_input", IOCTL_PROCOBSRV_GET_STATS, big, 4, &st, sizeof(st),
                 ERROR_BAD_LENGTH);
    /* A larger buffer is fine, and the reply is still exactly the struct. */
    memset(buf, 0xCC, 256);
    DWORD err = ioctl(IOCTL_PROCOBSRV_GET_STATS, NULL, 0, buf, 256, &got);
    check("get_stats_large_buffer_exact_reply", err == 0 && got == sizeof(PROCOBSRV_STATS),
          "\"returned\":%lu", (unsigned long)got);
    expect_error("unknown_function", PROCOBSRV_CTL_CODE(PROCOBSRV_DEVICE_TYPE, 0x805, 0, 2), NULL, 0,
                 NULL, 0, ERROR_INVALID_FUNCTION);
    expect_error("unknown_device_type", PROCOBSRV_CTL_CODE(0x22, 0x803, 0, 1), NULL, 0, &st,
                 sizeof(st), ERROR_INVALID_FUNCTION);
    expect_error("wrong_method", PROCOBSRV_CTL_CODE(PROCOBSRV_DEVICE_TYPE, 0x803, 3, 1), NULL, 0, &st,
                 sizeof(st), ERROR_INVALID_FUNCTION);
    expect_error("wrong_access", PROCOBSRV_CTL_CODE(PROCOBSRV_DEVICE_TYPE, 0x803, 0, 0), NULL, 0, &st,
                 sizeof(st), ERROR_INVALID_FUNCTION);

    /* INJECT, self-test build only. */
    unsigned char raw[sizeof(PROCOBSRV_INJECT_INPUT) + 16] = {0};
    PROCOBSRV_INJECT_INPUT *in = (PROCOBSRV_INJECT_INPUT *)raw;
    expect_error("inject_no_input", IOCTL_PROCOBSRV_INJECT, NULL, 0, NULL, 0, ERROR_BAD_LENGTH);
    expect_error("inject_short_input", IOCTL_PROCOBSRV_INJECT, raw, 16, NULL, 0, ERROR_BAD_LENGTH);
    in->kind = PROCOBSRV_KIND_CREATE;
    in->count = 1;
    in->image_length = 4;
    expect_error("inject_length_mismatch", IOCTL_PROCOBSRV_INJECT, raw, sizeof(*in) + 6, NULL, 0,
                 ERROR_BAD_LENGTH);
    in->image_length = 0;
    in->count = 0;
    expect_error("inject_count_zero", IOCTL_PROCOBSRV_INJECT, raw, sizeof(*in), NULL, 0,
                 ERROR_INVALID_PARAMETER);
    in->count = PROCOBSRV_INJECT_MAX_COUNT + 1;
    expect_error("inject_count_too_big", IOCTL_PROCOBSRV_INJECT, raw, sizeof(*in), NULL, 0,
                 ERROR_INVALID_PARAMETER);
    in->count = 1;
    in->kind = 3;
    expect_error("inject_bad_kind", IOCTL_PROCOBSRV_INJECT, raw, sizeof(*in), NULL, 0,
                 ERROR_INVALID_PARAMETER);
    in->kind = PROCOBSRV_KIND_CREATE;
    in->reserved = 9;
    expect_error("inject_reserved_nonzero", IOCTL_PROCOBSRV_INJECT, raw, sizeof(*in), NULL, 0,
                 ERROR_INVALID_PARAMETER);
    in->reserved = 0;
    in->kind = PROCOBSRV_KIND_EXIT;
    in->image_length = 8;
    expect_error("inject_exit_with_strings", IOCTL_PROCOBSRV_INJECT, raw, sizeof(*in) + 16, NULL, 0,
                 ERROR_INVALID_PARAMETER);
    {
        /* 40,000 WCHARs cannot be a UNICODE_STRING: rejected, not wrapped. */
        DWORD n = 40000, len = sizeof(*in) + 2 * n;
        unsigned char *huge = calloc(1, len);
        PROCOBSRV_INJECT_INPUT *h = (PROCOBSRV_INJECT_INPUT *)huge;
        h->kind = PROCOBSRV_KIND_CREATE;
        h->count = 1;
        h->image_length = 0;
        h->command_line_length = (po_u16)n;
        expect_error("inject_oversized_string", IOCTL_PROCOBSRV_INJECT, huge, len, NULL, 0,
                     ERROR_INVALID_PARAMETER);
        free(huge);
    }
    check("still_working_after_bad_input", get_stats(&st) && st.size == sizeof(st), NULL);
}

/* ---- service handling ---------------------------------------------------- */

static SC_HANDLE g_scm, g_svc;

static int service_start(const WCHAR *sys_path)
{
    WCHAR full[MAX_PATH];

    GetFullPathNameW(sys_path, MAX_PATH, full, NULL);
    g_scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_ALL_ACCESS);
    check("scm_open", g_scm != NULL, "\"error\":%lu", (unsigned long)GetLastError());
    if (!g_scm)
        return 0;
    g_svc = CreateServiceW(g_scm, PROCOBSRV_DRIVER_NAME, PROCOBSRV_DRIVER_NAME, SERVICE_ALL_ACCESS,
                           SERVICE_KERNEL_DRIVER, SERVICE_DEMAND_START, SERVICE_ERROR_NORMAL, full,
                           NULL, NULL, NULL, NULL, NULL);
    check("service_create", g_svc != NULL, "\"error\":%lu", (unsigned long)GetLastError());
    if (!g_svc)
        return 0;
    BOOL started = StartServiceW(g_svc, 0, NULL);
    check("service_start", started, "\"error\":%lu", (unsigned long)GetLastError());
    return started;
}

static void service_stop_delete(void)
{
    SERVICE_STATUS ss;

    if (!g_svc)
        return;
    BOOL stopped = ControlService(g_svc, SERVICE_CONTROL_STOP, &ss);
    DWORD err = GetLastError();
    for (int i = 0; i < 50 && QueryServiceStatus(g_svc, &ss) && ss.dwCurrentState != SERVICE_STOPPED; i++)
        Sleep(100);
    check("service_stop_unloads", stopped && ss.dwCurrentState == SERVICE_STOPPED,
          "\"error\":%lu,\"state\":%lu", (unsigned long)(stopped ? 0 : err),
          (unsigned long)ss.dwCurrentState);
    HANDLE h = CreateFileW(PROCOBSRV_USER_DEVICE_PATH, GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL);
    check("device_gone_after_unload", h == INVALID_HANDLE_VALUE, "\"error\":%lu",
          (unsigned long)GetLastError());
    if (h != INVALID_HANDLE_VALUE)
        CloseHandle(h);
    HANDLE e = OpenEventW(SYNCHRONIZE, FALSE, PROCOBSRV_USER_EVENT_NAME);
    check("event_gone_after_unload", e == NULL, NULL);
    if (e)
        CloseHandle(e);
    BOOL deleted = DeleteService(g_svc);
    check("service_delete", deleted, "\"error\":%lu", (unsigned long)(deleted ? 0 : GetLastError()));
    CloseServiceHandle(g_svc);
    SC_HANDLE again = OpenServiceW(g_scm, PROCOBSRV_DRIVER_NAME, SERVICE_QUERY_STATUS);
    check("service_gone", again == NULL, "\"error\":%lu", (unsigned long)GetLastError());
    if (again)
        CloseServiceHandle(again);
    CloseServiceHandle(g_scm);
}

/* The normal build admits no caller it cannot identify, and under Wine no open
 * carries a security context: the open fails, or (Wine hands out the handle
 * before the driver answers) every request on the handle does. */
static void normal_build_refuses_unidentified_callers(void)
{
    PROCOBSRV_STATS st;
    HANDLE h = CreateFileW(PROCOBSRV_USER_DEVICE_PATH, GENERIC_READ | GENERIC_WRITE, 0, NULL,
                           OPEN_EXISTING, 0, NULL);
    DWORD open_err = h == INVALID_HANDLE_VALUE ? GetLastError() : 0, ioctl_err = 0;

    if (h != INVALID_HANDLE_VALUE) {
        g_dev = h;
        ioctl_err = ioctl(IOCTL_PROCOBSRV_GET_STATS, NULL, 0, &st, sizeof(st), NULL);
        g_dev = INVALID_HANDLE_VALUE;
        CloseHandle(h);
    }
    check("device_refuses_unidentified_caller",
          open_err == ERROR_ACCESS_DENIED || (open_err == 0 && ioctl_err != 0),
          "\"refused_at\":\"%s\",\"error\":%lu", open_err ? "open" : "ioctl",
          (unsigned long)(open_err ? open_err : ioctl_err));
}

/* Clients get SYNCHRONIZE on the named event and nothing else (normal build; the
 * self-test build must also let Wine's KeSetEvent modify it). */
static void event_grants_synchronize_only(void)
{
    HANDLE modify = OpenEventW(EVENT_MODIFY_STATE, FALSE, PROCOBSRV_USER_EVENT_NAME);
    DWORD err = modify == NULL ? GetLastError() : 0;

    check("event_refuses_modify_state", modify == NULL && err == ERROR_ACCESS_DENIED,
          "\"error\":%lu", (unsigned long)err);
    if (modify != NULL)
        CloseHandle(modify);
}

static int open_device(void)
{
    g_dev = CreateFileW(PROCOBSRV_USER_DEVICE_PATH, GENERIC_READ | GENERIC_WRITE, 0, NULL,
                        OPEN_EXISTING, 0, NULL);
    check("device_open", g_dev != INVALID_HANDLE_VALUE, "\"error\":%lu", (unsigned long)GetLastError());
    return g_dev != INVALID_HANDLE_VALUE;
}

int wmain(int argc, WCHAR **argv)
{
    unsigned char *buf = malloc(EVENTS_BUFFER);
    PROCOBSRV_STATS st;
    int selftest;

    if (argc != 3 || (wcscmp(argv[1], L"selftest") && wcscmp(argv[1], L"normal"))) {
        fprintf(stderr, "usage: pocheck.exe selftest|normal <ProcObsrv.sys>\n");
        return 100;
    }
    selftest = wcscmp(argv[1], L"selftest") == 0;
    if (!service_start(argv[2]))
        goto out;
    g_event = OpenEventW(SYNCHRONIZE, FALSE, PROCOBSRV_USER_EVENT_NAME);
    check("event_open_global", g_event != NULL, "\"error\":%lu", (unsigned long)GetLastError());
    if (!selftest) {
        event_grants_synchronize_only();
        normal_build_refuses_unidentified_callers();
        if (g_event)
            CloseHandle(g_event);
        goto stop;
    }
    if (!open_device() || !g_event)
        goto stop;
    {
        /* Windows refuses the open itself; Wine hands out the handle before the
         * driver answers the create, so there every request on it must fail. */
        HANDLE second = CreateFileW(PROCOBSRV_USER_DEVICE_PATH, GENERIC_READ | GENERIC_WRITE, 0,
                                    NULL, OPEN_EXISTING, 0, NULL);
        DWORD open_err = second == INVALID_HANDLE_VALUE ? GetLastError() : 0, ioctl_err = 0;
        if (second != INVALID_HANDLE_VALUE) {
            HANDLE first = g_dev;
            g_dev = second;
            ioctl_err = ioctl(IOCTL_PROCOBSRV_GET_STATS, NULL, 0, &st, sizeof(st), NULL);
            g_dev = first;
            CloseHandle(second);
        }
        check("second_client_refused",
              (open_err == ERROR_SHARING_VIOLATION || ioctl_err == ERROR_SHARING_VIOLATION) &&
                  get_stats(&st),
              "\"refused_at\":\"%s\",\"error\":%lu", open_err ? "open" : "ioctl",
              (unsigned long)(open_err ? open_err : ioctl_err));
    }

    int got_stats = get_stats(&st);
    check("stats_initial",
          got_stats && st.size == sizeof(st) && st.abi_version == PROCOBSRV_ABI_VERSION &&
              st.capacity_bytes == PROCOBSRV_QUEUE_CAPACITY_BYTES &&
              st.max_record_size == PROCOBSRV_MAX_RECORD_SIZE && !(st.state & PROCOBSRV_STATE_ACTIVE) &&
              !!(st.state & PROCOBSRV_STATE_SELFTEST) == selftest && !event_signalled(),
          "\"state\":%lu", (unsigned long)st.state);

    bad_inputs(buf, 0);
    {
        unsigned char raw[sizeof(PROCOBSRV_INJECT_INPUT)] = {0};
        ((PROCOBSRV_INJECT_INPUT *)raw)->kind = PROCOBSRV_KIND_EXIT;
        ((PROCOBSRV_INJECT_INPUT *)raw)->count = 1;
        expect_error("inject_when_inactive", IOCTL_PROCOBSRV_INJECT, raw, sizeof(raw), NULL, 0,
                     ERROR_BAD_COMMAND);
        check("activate", activate(0) == 0, NULL);
        check("stats_active", get_stats(&st) && (st.state & PROCOBSRV_STATE_ACTIVE), "\"state\":%lu",
              (unsigned long)st.state);
        bad_inputs(buf, 1);
        event_semantics(buf);
        truncation(buf);
        overflow(buf);
        flood();
    }
    DWORD err = ioctl(IOCTL_PROCOBSRV_DEACTIVATE, NULL, 0, NULL, 0, NULL);
    check("deactivate", err == 0, "\"error\":%lu", (unsigned long)err);
    expect_error("deactivate_twice", IOCTL_PROCOBSRV_DEACTIVATE, NULL, 0, NULL, 0, ERROR_BAD_COMMAND);
    if (selftest) {
        /* Classic fallback path, chosen explicitly. */
        check("activate_classic", activate(PROCOBSRV_ACTIVATE_CLASSIC_ONLY) == 0 && get_stats(&st) &&
                                      (st.state & PROCOBSRV_STATE_ACTIVE) &&
                                      !(st.state & PROCOBSRV_STATE_NOTIFY_EX),
              "\"state\":%lu", (unsigned long)st.state);
    }
    CloseHandle(g_dev);
    g_dev = CreateFileW(PROCOBSRV_USER_DEVICE_PATH, GENERIC_READ | GENERIC_WRITE, 0, NULL,
                        OPEN_EXISTING, 0, NULL);
    /* Closing while active (the classic activation above) must have deactivated:
     * a crashed client does not leave the notify routine registered. */
    DWORD reopen_err = g_dev == INVALID_HANDLE_VALUE ? GetLastError() : 0;
    int reopened = g_dev != INVALID_HANDLE_VALUE && get_stats(&st);
    check("reopen_after_close", reopened && !(st.state & PROCOBSRV_STATE_ACTIVE),
          "\"error\":%lu,\"state\":%lu", (unsigned long)reopen_err,
          (unsigned long)(reopened ? st.state : 0));
    if (g_dev != INVALID_HANDLE_VALUE)
        CloseHandle(g_dev);
    CloseHandle(g_event);
stop:
    service_stop_delete();
out:
    printf("{\"summary\":{\"mode\":\"%s\",\"checks\":%d,\"failures\":%d}}\n",
           selftest ? "selftest" : "normal", g_checks, g_failures);
    free(buf);
    return g_failures;
}
