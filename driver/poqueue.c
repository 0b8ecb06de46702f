/*
 * poqueue.c - bounded, never-blocking record queue (see poqueue.h).
 * No kernel headers and no allocation: the includer supplies ring and lock.
 */
#include "poqueue.h"

#include <string.h> /* memcpy, memset: ntoskrnl exports both */

static void po_queue_reset_positions(po_queue *q)
{
    q->head = 0;
    q->tail = 0;
    q->wrap_end = 0;
    q->wrapped = 0;
}

int po_queue_init(po_queue *q, void *ring, po_u32 capacity)
{
    memset(q, 0, sizeof(*q));
    if (ring == NULL || capacity == 0 || capacity % PROCOBSRV_RECORD_ALIGN != 0 ||
        ((size_t)ring % PROCOBSRV_RECORD_ALIGN) != 0)
        return 0;
    q->ring = (po_u8 *)ring;
    q->capacity = capacity;
    return 1;
}

/* Offset for a record of `size` bytes, or -1 when it fits nowhere. */
static long po_queue_reserve(po_queue *q, po_u32 size)
{
    po_u32 at;

    if (q->records == 0)
        po_queue_reset_positions(q); /* empty: start over at 0, no fragmentation */
    if (!q->wrapped) {
        /* Records occupy [head, tail); free space is [tail, capacity) and [0, head). */
        if (size <= q->capacity - q->tail) {
            at = q->tail;
        } else if (size <= q->head) {
            q->wrap_end = q->tail; /* [tail, capacity) is skipped */
            q->wrapped = 1;
            at = 0;
        } else {
            return -1;
        }
    } else {
        /* Records occupy [head, wrap_end) and [0, tail); free space is [tail, head). */
        if (size > q->head - q->tail)
            return -1;
        at = q->tail;
    }
    q->tail = at + size;
    return (long)at;
}

int po_queue_push(po_queue *q, const po_event *ev, po_u64 *sequence)
{
    PROCOBSRV_RECORD rec;
    po_u32 image_chars = ev->image ? ev->image_chars : 0;
    po_u32 command_line_chars = ev->command_line ? ev->command_line_chars : 0;
    po_u32 flags = ev->flags;
    po_u32 size, used;
    po_u8 *dst;
    long at;

    if (image_chars > PROCOBSRV_MAX_IMAGE_CHARS) {
        image_chars = PROCOBSRV_MAX_IMAGE_CHARS;
        flags |= PROCOBSRV_RECORD_IMAGE_TRUNCATED;
    }
    if (command_line_chars > PROCOBSRV_MAX_COMMAND_LINE_CHARS) {
        command_line_chars = PROCOBSRV_MAX_COMMAND_LINE_CHARS;
        flags |= PROCOBSRV_RECORD_COMMAND_LINE_TRUNCATED;
    }
    size = PROCOBSRV_RECORD_SIZE(image_chars, command_line_chars);

    q->notified++;
    if (sequence)
        *sequence = q->notified;

    at = po_queue_reserve(q, size);
    if (at < 0) {
        q->dropped++;
        return PO_PUSH_DROPPED;
    }

    /* Build the header on the stack, fully zeroed, so no stale byte is copied out. */
    memset(&rec, 0, sizeof(rec));
    rec.size = size;
    rec.kind = ev->kind;
    rec.sequence = q->notified;
    rec.timestamp = ev->timestamp;
    rec.pid = ev->pid;
    rec.parent_pid = ev->parent_pid;
    rec.exit_status = ev->exit_status;
    rec.flags = flags;
    rec.image_length = (po_u16)image_chars;
    rec.command_line_length = (po_u16)command_line_chars;

    dst = q->ring + at;
    memcpy(dst, &rec, sizeof(rec));
    used = sizeof(rec);
    if (image_chars) {
        memcpy(dst + used, ev->image, image_chars * PROCOBSRV_WCHAR_BYTES);
        used += image_chars * PROCOBSRV_WCHAR_BYTES;
    }
    if (command_line_chars) {
        memcpy(dst + used, ev->command_line, command_line_chars * PROCOBSRV_WCHAR_BYTES);
        used += command_line_chars * PROCOBSRV_WCHAR_BYTES;
    }
    if (used < size)
        memset(dst + used, 0, size - used); /* padding leaves the kernel too */

    q->records++;
    q->bytes += size;
    if (q->bytes > q->peak_bytes)
        q->peak_bytes = q->bytes;
    return PO_PUSH_QUEUED;
}

po_u32 po_queue_peek_size(const po_queue *q)
{
    po_u32 size;

    if (q->records == 0)
        return 0;
    memcpy(&size, q->ring + q->head, sizeof(size));
    return size;
}

po_u32 po_queue_pop(po_queue *q, void *out, po_u32 out_len, po_u32 *records)
{
    po_u8 *dst = (po_u8 *)out;
    po_u32 written = 0, count = 0, size;

    while (q->records > 0) {
        size = po_queue_peek_size(q);
        if (size > out_len - written)
            break;
        memcpy(dst + written, q->ring + q->head, size);
        written += size;
        count++;
        q->head += size;
        q->records--;
        q->bytes -= size;
        q->delivered++;
        if (q->wrapped && q->head == q->wrap_end) {
            /* Older segment consumed: what is left is [0, tail). */
            q->head = 0;
            q->wrapped = 0;
            q->wrap_end = 0;
        }
    }
    if (q->records == 0)
        po_queue_reset_positions(q);
    if (records)
        *records = count;
    return written;
}

void po_queue_stats(const po_queue *q, PROCOBSRV_STATS *out)
{
    memset(out, 0, sizeof(*out));
    out->size = sizeof(*out);
    out->abi_version = PROCOBSRV_ABI_VERSION;
    out->queued_records = q->records;
    out->queued_bytes = q->bytes;
    out->capacity_bytes = q->capacity;
    out->peak_queued_bytes = q->peak_bytes;
    out->max_record_size = PROCOBSRV_MAX_RECORD_SIZE;
    out->notified = q->notified;
    out->delivered = q->delivered;
    out->dropped = q->dropped;
}
