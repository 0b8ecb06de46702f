/*
 * poqueue.h - the driver's event queue, kept free of kernel headers so the
 * very same code is compiled into ProcObsrv.sys and, natively, into the tests.
 *
 * One preallocated ring of bytes holds PROCOBSRV_RECORDs back to back, in the
 * exact wire format GET_EVENTS returns, so delivery is a copy. A record never
 * straddles the end of the ring: if it does not fit before the end, the ring
 * wraps to offset 0 and the unused tail bytes are skipped. When the record
 * does not fit anywhere, it is dropped and counted; nothing ever waits.
 *
 * Locking is the includer's job: every function here must be called with the
 * includer's lock held (the driver uses a FAST_MUTEX, the tests a mutex). The
 * includer keeps its "records queued" event in step using the return values:
 * set it when a push leaves records == 1, clear it when a pop empties the queue.
 */
#ifndef POQUEUE_H
#define POQUEUE_H

#include "ProcObsrv.h"

typedef struct po_queue {
    po_u8 *ring;       /* capacity bytes, 8-byte aligned, owned by the includer */
    po_u32 capacity;   /* multiple of PROCOBSRV_RECORD_ALIGN */
    po_u32 head;       /* offset of the oldest record */
    po_u32 tail;       /* offset where the next record goes */
    po_u32 wrap_end;   /* when wrapped: end of the older segment [head, wrap_end) */
    po_u32 wrapped;    /* 1: records are in [head, wrap_end) then [0, tail) */
    po_u32 records;    /* records queued */
    po_u32 bytes;      /* sum of queued record sizes (excludes skipped tail bytes) */
    po_u32 peak_bytes; /* high-water mark of bytes */
    po_u64 notified;   /* sequence numbers handed out (queued + dropped) */
    po_u64 delivered;
    po_u64 dropped;
} po_queue;

/* One notification as the notify routine (or the self-test IOCTL) sees it. */
typedef struct po_event {
    po_u32 kind;        /* PROCOBSRV_KIND_* */
    po_u32 pid;
    po_u32 parent_pid;
    po_u32 exit_status;
    po_u32 flags;       /* PROCOBSRV_RECORD_* known to the caller; truncation is added here */
    const po_u16 *image;        /* may be NULL when image_chars == 0 */
    po_u32 image_chars;         /* any length: cut to PROCOBSRV_MAX_IMAGE_CHARS */
    const po_u16 *command_line; /* may be NULL when command_line_chars == 0 */
    po_u32 command_line_chars;  /* any length: cut to PROCOBSRV_MAX_COMMAND_LINE_CHARS */
    po_u64 timestamp;
} po_event;

/* po_queue_push results. */
#define PO_PUSH_QUEUED 1
#define PO_PUSH_DROPPED 2

/* Returns 0 if capacity is not a non-zero multiple of 8 or ring is not 8-aligned. */
int po_queue_init(po_queue *q, void *ring, po_u32 capacity);

/* Appends one record, or counts it dropped when there is no room. Either way
 * it consumes the next sequence number, stored in *sequence if non-NULL. */
int po_queue_push(po_queue *q, const po_event *ev, po_u64 *sequence);

/* Copies as many whole records as fit into out (oldest first) and removes
 * them. Returns the bytes written; *records (if non-NULL) gets their number.
 * Writes nothing beyond the returned length. */
po_u32 po_queue_pop(po_queue *q, void *out, po_u32 out_len, po_u32 *records);

/* Size of the oldest record, 0 when empty. */
po_u32 po_queue_peek_size(const po_queue *q);

/* Fills every counter field of PROCOBSRV_STATS; state is left 0 for the includer. */
void po_queue_stats(const po_queue *q, PROCOBSRV_STATS *out);

#endif /* POQUEUE_H */
