/*
 * ProcObsrv.h - the one contract between the ProcObsrv kernel driver and user mode.
 *
 * Everything a client needs is here: names, IOCTL codes, input/output layouts,
 * limits and the errors each request can return. The driver, the Wine test
 * client and the Python ctypes mirror (src/procobsrv/windows/) all follow it.
 *
 * Layout rules, so that 32-bit, 64-bit and ctypes callers agree byte for byte:
 *   - fixed-width little-endian integers only; no HANDLE, pointer, BOOL or enum;
 *   - every struct is naturally aligned with explicit reserved fields, so no
 *     compiler inserts padding; sizes and offsets are asserted below;
 *   - every reserved field is written as zero and must be sent as zero.
 *
 * The header compiles in user mode without any DDK header (it uses <stdint.h>)
 * and in the driver (where it uses the DDK's own fixed-width types).
 */
#ifndef PROCOBSRV_H
#define PROCOBSRV_H

#include <stddef.h> /* offsetof */

#if defined(_WDMDDK_) || defined(_NTDDK_)
/* Kernel build: the DDK types. ULONG is 32 bits on every Windows ABI (LLP64). */
typedef UCHAR po_u8;
typedef USHORT po_u16;
typedef ULONG po_u32;
typedef ULONGLONG po_u64;
#else
#include <stdint.h>
typedef uint8_t po_u8;
typedef uint16_t po_u16;
typedef uint32_t po_u32;
typedef uint64_t po_u64;
#endif

/* Compile-time check usable from C89 (WDK), C11 and C++. */
#define PROCOBSRV_STATIC_ASSERT(name, cond) typedef char procobsrv_static_assert_##name[(cond) ? 1 : -1]

/* ------------------------------------------------------------------------- */
/* ABI version: bumped on any incompatible change to this file.               */
/* ------------------------------------------------------------------------- */
#define PROCOBSRV_ABI_VERSION 2u

/* ------------------------------------------------------------------------- */
/* Names (UTF-16).                                                            */
/* ------------------------------------------------------------------------- */
#define PROCOBSRV_DRIVER_NAME L"ProcObsrv"                  /* SCM service name */
#define PROCOBSRV_DEVICE_NAME L"\\Device\\ProcObsrv"        /* kernel object name */
#define PROCOBSRV_DOS_DEVICE_NAME L"\\DosDevices\\ProcObsrv" /* symbolic link */
#define PROCOBSRV_USER_DEVICE_PATH L"\\\\.\\ProcObsrv"      /* for CreateFileW */
/* Notification event: signalled while at least one record is queued. */
#define PROCOBSRV_EVENT_NAME L"\\BaseNamedObjects\\ProcObsrvProcessEvent" /* kernel */
#define PROCOBSRV_USER_EVENT_NAME L"Global\\ProcObsrvProcessEvent"         /* OpenEventW */

/* ------------------------------------------------------------------------- */
/* IOCTL codes.                                                               */
/*                                                                            */
/* CTL_CODE(type, function, method, access) =                                 */
/*     (type << 16) | (access << 14) | (function << 2) | method               */
/* Device type 0x8022 (customer range 0x8000-0xFFFF), functions 0x800+        */
/* (customer range), all METHOD_BUFFERED (0). Access: FILE_READ_DATA (1) for  */
/* pure queries, FILE_WRITE_DATA (2) for requests that change state, GET_EVENTS */
/* included (it removes the records it returns). The I/O manager checks these */
/* bits against the caller's handle before the driver sees the request. The   */
/* values are spelled out so no <winioctl.h> is needed; PROCOBSRV_CTL_CODE    */
/* reproduces them and the asserts below keep both in step.                   */
/* ------------------------------------------------------------------------- */
#define PROCOBSRV_DEVICE_TYPE 0x8022u
#define PROCOBSRV_METHOD_BUFFERED 0u
#define PROCOBSRV_FILE_READ_DATA 1u
#define PROCOBSRV_FILE_WRITE_DATA 2u
#define PROCOBSRV_CTL_CODE(type, function, method, access) \
    (((po_u32)(type) << 16) | ((po_u32)(access) << 14) | ((po_u32)(function) << 2) | (po_u32)(method))

/*
 * ACTIVATE: register the process notify routine and start queueing.
 *   input:  PROCOBSRV_ACTIVATE_INPUT, exactly sizeof bytes
 *   output: none (output length ignored; 0 bytes returned)
 *   errors: STATUS_INFO_LENGTH_MISMATCH  (Win32 24, ERROR_BAD_LENGTH)   wrong input length
 *           STATUS_INVALID_PARAMETER     (87)  size field, unknown flag or reserved != 0
 *           STATUS_REVISION_MISMATCH     (1306, ERROR_REVISION_MISMATCH) abi_version
 *           STATUS_INVALID_DEVICE_STATE  (22, ERROR_BAD_COMMAND)  already active
 *           any status of PsSetCreateProcessNotifyRoutine[Ex] if both are refused
 */
#define IOCTL_PROCOBSRV_ACTIVATE 0x8022A000u /* function 0x800, FILE_WRITE_DATA */

/*
 * DEACTIVATE: unregister the notify routine. Queued records stay readable.
 *   input:  none (input length must be 0)
 *   output: none (output length ignored; 0 bytes returned)
 *   errors: STATUS_INFO_LENGTH_MISMATCH (24) input given
 *           STATUS_INVALID_DEVICE_STATE (22) not active
 */
#define IOCTL_PROCOBSRV_DEACTIVATE 0x8022A004u /* function 0x801, FILE_WRITE_DATA */

/*
 * GET_EVENTS: move as many whole records as fit from the queue into the
 * output buffer, oldest first. Returns the bytes written (a multiple of 8,
 * 0 if the queue is empty). The named event is cleared when this drains the
 * queue, and only then.
 *   input:  none (input length must be 0)
 *   output: at least PROCOBSRV_MIN_EVENTS_BUFFER bytes (so every call
 *           makes progress); PROCOBSRV_RECOMMENDED_EVENTS_BUFFER is a good size
 *   errors: STATUS_INFO_LENGTH_MISMATCH (24)  input given
 *           STATUS_BUFFER_TOO_SMALL     (122, ERROR_INSUFFICIENT_BUFFER)
 */
#define IOCTL_PROCOBSRV_GET_EVENTS 0x8022A008u /* function 0x802, FILE_WRITE_DATA */

/*
 * GET_STATS: counters and state.
 *   input:  none (input length must be 0)
 *   output: at least sizeof(PROCOBSRV_STATS); exactly sizeof is returned
 *   errors: STATUS_INFO_LENGTH_MISMATCH (24), STATUS_BUFFER_TOO_SMALL (122)
 */
#define IOCTL_PROCOBSRV_GET_STATS 0x8022600Cu /* function 0x803, FILE_READ_DATA */

/*
 * INJECT (self-test build only, PROCOBSRV_SELFTEST): feed `count` synthetic
 * notifications through the same code path as the real notify routine. The
 * normal build does not contain it and fails it like any unknown code with
 * STATUS_INVALID_DEVICE_REQUEST (Win32 1, ERROR_INVALID_FUNCTION).
 *   input:  PROCOBSRV_INJECT_INPUT followed by image_length then
 *           command_line_length WCHARs; input length must equal
 *           sizeof(PROCOBSRV_INJECT_INPUT) +
 *           PROCOBSRV_WCHAR_BYTES * (image_length + command_line_length)
 *   output: none (0 bytes returned)
 *   errors: STATUS_INFO_LENGTH_MISMATCH (24) input length wrong
 *           STATUS_INVALID_PARAMETER    (87) bad kind/count/flags/reserved
 *           STATUS_INVALID_DEVICE_STATE (22) not active
 * Injection into a full queue drops and counts like the real callback.
 */
#define IOCTL_PROCOBSRV_INJECT 0x8022A010u /* function 0x804, FILE_WRITE_DATA */

/* Errors common to every request:
 *   unknown IOCTL code                    STATUS_INVALID_DEVICE_REQUEST (1)
 *   open by a non-administrator          STATUS_ACCESS_DENIED          (5)
 *   open while another client holds it   STATUS_SHARING_VIOLATION      (32)
 *   request on a handle that is not the  STATUS_SHARING_VIOLATION      (32)
 *   owner's (only reachable under Wine, which hands out refused handles)
 */

/* ------------------------------------------------------------------------- */
/* Limits.                                                                    */
/* ------------------------------------------------------------------------- */
/* Longer strings are cut to these lengths and the record flagged truncated. */
#define PROCOBSRV_MAX_IMAGE_CHARS 1024u        /* WCHARs of image file name */
#define PROCOBSRV_MAX_COMMAND_LINE_CHARS 2048u /* WCHARs of command line */
#define PROCOBSRV_WCHAR_BYTES 2u /* bytes of one WCHAR (a UTF-16 code unit) */
#define PROCOBSRV_RECORD_ALIGN 8u
#define PROCOBSRV_RECORD_HEADER_SIZE 48u /* sizeof(PROCOBSRV_RECORD) */
/* Largest record: header + both strings at their limits, rounded to 8. */
#define PROCOBSRV_MAX_RECORD_SIZE \
    (PROCOBSRV_RECORD_HEADER_SIZE + \
     PROCOBSRV_WCHAR_BYTES * (PROCOBSRV_MAX_IMAGE_CHARS + PROCOBSRV_MAX_COMMAND_LINE_CHARS))
#define PROCOBSRV_MIN_EVENTS_BUFFER PROCOBSRV_MAX_RECORD_SIZE /* 6192 bytes */
#define PROCOBSRV_RECOMMENDED_EVENTS_BUFFER 65536u
/* Kernel queue: one preallocated non-paged ring of this many bytes. */
#define PROCOBSRV_QUEUE_CAPACITY_BYTES (1024u * 1024u)
#define PROCOBSRV_INJECT_MAX_COUNT 4096u /* records per INJECT request */

/* Size of a record with the given string lengths (WCHARs, already truncated). */
#define PROCOBSRV_RECORD_SIZE(image_chars, command_line_chars) \
    ((PROCOBSRV_RECORD_HEADER_SIZE + \
      PROCOBSRV_WCHAR_BYTES * ((po_u32)(image_chars) + (po_u32)(command_line_chars)) + \
      (PROCOBSRV_RECORD_ALIGN - 1u)) & ~(PROCOBSRV_RECORD_ALIGN - 1u))

/* ------------------------------------------------------------------------- */
/* GET_EVENTS output: a packed sequence of variable-length records.           */
/* ------------------------------------------------------------------------- */
#define PROCOBSRV_KIND_CREATE 1u
#define PROCOBSRV_KIND_EXIT 2u

/* PROCOBSRV_RECORD.flags */
#define PROCOBSRV_RECORD_IMAGE_TRUNCATED 0x1u        /* image cut to the limit */
#define PROCOBSRV_RECORD_COMMAND_LINE_TRUNCATED 0x2u /* command line cut to the limit */
#define PROCOBSRV_RECORD_NO_DETAILS 0x4u  /* classic routine: no image/command line */
#define PROCOBSRV_RECORD_EXIT_STATUS_UNKNOWN 0x8u /* exit status unavailable */
#define PROCOBSRV_RECORD_INJECTED 0x80000000u     /* synthetic (self-test build) */

typedef struct PROCOBSRV_RECORD {
    po_u32 size;        /* total bytes of this record incl. strings and zero padding; multiple of 8 */
    po_u32 kind;        /* PROCOBSRV_KIND_CREATE or PROCOBSRV_KIND_EXIT */
    po_u64 sequence;    /* global, starts at 1, +1 per notification; dropped ones use a number too,
                           so a gap in delivered sequence numbers is exactly the records dropped */
    po_u64 timestamp;   /* KeQueryInterruptTime: 100 ns units since boot, monotonic (counts
                           through sleep, never set); user mode reads the same clock with
                           QueryInterruptTime. ABI 1 had the settable wall clock here. */
    po_u32 pid;         /* process id */
    po_u32 parent_pid;  /* parent process id (create); 0 on exit */
    po_u32 exit_status; /* NTSTATUS exit code on exit; 0 on create */
    po_u32 flags;       /* PROCOBSRV_RECORD_* */
    po_u16 image_length;        /* WCHARs of image name that follow, no terminating NUL */
    po_u16 command_line_length; /* WCHARs of command line that follow the image, no NUL */
    po_u32 reserved;            /* 0 */
    /* followed by: WCHAR image[image_length]; WCHAR command_line[command_line_length];
       then zero bytes up to `size`. Both strings are empty on exit records. */
} PROCOBSRV_RECORD;

/* ------------------------------------------------------------------------- */
/* GET_STATS output.                                                          */
/* Invariant under the queue lock: notified == delivered + dropped + queued_records. */
/* ------------------------------------------------------------------------- */
#define PROCOBSRV_STATE_ACTIVE 0x1u      /* notify routine registered */
#define PROCOBSRV_STATE_NOTIFY_EX 0x2u   /* ...and it is the Ex routine (else classic) */
#define PROCOBSRV_STATE_SELFTEST 0x4u    /* self-test build: INJECT available */

typedef struct PROCOBSRV_STATS {
    po_u32 size;            /* sizeof(PROCOBSRV_STATS) */
    po_u32 abi_version;     /* PROCOBSRV_ABI_VERSION of the driver */
    po_u32 state;           /* PROCOBSRV_STATE_* */
    po_u32 queued_records;  /* records waiting in the queue */
    po_u32 queued_bytes;    /* bytes those records take */
    po_u32 capacity_bytes;  /* size of the queue's ring */
    po_u32 peak_queued_bytes; /* high-water mark of queued_bytes since load */
    po_u32 max_record_size; /* PROCOBSRV_MAX_RECORD_SIZE */
    po_u64 notified;        /* notifications seen (= last sequence number assigned) */
    po_u64 delivered;       /* records copied out by GET_EVENTS */
    po_u64 dropped;         /* notifications lost because the queue was full */
} PROCOBSRV_STATS;

/* ------------------------------------------------------------------------- */
/* ACTIVATE input.                                                            */
/* ------------------------------------------------------------------------- */
#define PROCOBSRV_ACTIVATE_CLASSIC_ONLY 0x1u /* skip the Ex routine (testing the fallback) */
#define PROCOBSRV_ACTIVATE_VALID_FLAGS 0x1u

typedef struct PROCOBSRV_ACTIVATE_INPUT {
    po_u32 size;        /* sizeof(PROCOBSRV_ACTIVATE_INPUT) */
    po_u32 abi_version; /* PROCOBSRV_ABI_VERSION the caller was built against */
    po_u32 flags;       /* PROCOBSRV_ACTIVATE_* */
    po_u32 reserved;    /* 0 */
} PROCOBSRV_ACTIVATE_INPUT;

/* ------------------------------------------------------------------------- */
/* INJECT input (self-test build only).                                       */
/* ------------------------------------------------------------------------- */
typedef struct PROCOBSRV_INJECT_INPUT {
    po_u32 kind;        /* PROCOBSRV_KIND_CREATE or PROCOBSRV_KIND_EXIT */
    po_u32 count;       /* 1..PROCOBSRV_INJECT_MAX_COUNT records; record i gets pid + i */
    po_u32 pid;
    po_u32 parent_pid;
    po_u32 exit_status;
    po_u32 reserved;    /* 0 */
    po_u16 image_length;        /* WCHARs that follow; may exceed the limit (tests truncation) */
    po_u16 command_line_length; /* WCHARs that follow the image */
    po_u32 reserved2;           /* 0 */
    /* followed by WCHAR image[image_length]; WCHAR command_line[command_line_length]; */
} PROCOBSRV_INJECT_INPUT;

/* ------------------------------------------------------------------------- */
/* Layout checks.                                                             */
/* ------------------------------------------------------------------------- */
#define PROCOBSRV_CHECK_OFFSET(s, f, off) \
    PROCOBSRV_STATIC_ASSERT(s##_##f, offsetof(s, f) == (off))

PROCOBSRV_STATIC_ASSERT(u16, sizeof(po_u16) == 2);
PROCOBSRV_STATIC_ASSERT(u32, sizeof(po_u32) == 4);
PROCOBSRV_STATIC_ASSERT(u64, sizeof(po_u64) == 8);

PROCOBSRV_STATIC_ASSERT(record_size, sizeof(PROCOBSRV_RECORD) == PROCOBSRV_RECORD_HEADER_SIZE);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, size, 0);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, kind, 4);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, sequence, 8);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, timestamp, 16);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, pid, 24);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, parent_pid, 28);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, exit_status, 32);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, flags, 36);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, image_length, 40);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, command_line_length, 42);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_RECORD, reserved, 44);

PROCOBSRV_STATIC_ASSERT(stats_size, sizeof(PROCOBSRV_STATS) == 56);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, size, 0);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, abi_version, 4);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, state, 8);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, queued_records, 12);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, queued_bytes, 16);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, capacity_bytes, 20);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, peak_queued_bytes, 24);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, max_record_size, 28);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, notified, 32);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, delivered, 40);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_STATS, dropped, 48);

PROCOBSRV_STATIC_ASSERT(activate_size, sizeof(PROCOBSRV_ACTIVATE_INPUT) == 16);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_ACTIVATE_INPUT, size, 0);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_ACTIVATE_INPUT, abi_version, 4);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_ACTIVATE_INPUT, flags, 8);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_ACTIVATE_INPUT, reserved, 12);

PROCOBSRV_STATIC_ASSERT(inject_size, sizeof(PROCOBSRV_INJECT_INPUT) == 32);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_INJECT_INPUT, kind, 0);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_INJECT_INPUT, count, 4);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_INJECT_INPUT, pid, 8);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_INJECT_INPUT, parent_pid, 12);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_INJECT_INPUT, exit_status, 16);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_INJECT_INPUT, reserved, 20);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_INJECT_INPUT, image_length, 24);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_INJECT_INPUT, command_line_length, 26);
PROCOBSRV_CHECK_OFFSET(PROCOBSRV_INJECT_INPUT, reserved2, 28);

PROCOBSRV_STATIC_ASSERT(max_record, PROCOBSRV_MAX_RECORD_SIZE == 6192u);
PROCOBSRV_STATIC_ASSERT(max_record_aligned, PROCOBSRV_MAX_RECORD_SIZE % PROCOBSRV_RECORD_ALIGN == 0);
PROCOBSRV_STATIC_ASSERT(max_image_fits_u16, PROCOBSRV_MAX_IMAGE_CHARS <= 0xFFFFu);
PROCOBSRV_STATIC_ASSERT(capacity_aligned, PROCOBSRV_QUEUE_CAPACITY_BYTES % PROCOBSRV_RECORD_ALIGN == 0);

PROCOBSRV_STATIC_ASSERT(ioctl_activate,
    IOCTL_PROCOBSRV_ACTIVATE == PROCOBSRV_CTL_CODE(PROCOBSRV_DEVICE_TYPE, 0x800, PROCOBSRV_METHOD_BUFFERED, PROCOBSRV_FILE_WRITE_DATA));
PROCOBSRV_STATIC_ASSERT(ioctl_deactivate,
    IOCTL_PROCOBSRV_DEACTIVATE == PROCOBSRV_CTL_CODE(PROCOBSRV_DEVICE_TYPE, 0x801, PROCOBSRV_METHOD_BUFFERED, PROCOBSRV_FILE_WRITE_DATA));
PROCOBSRV_STATIC_ASSERT(ioctl_get_events,
    IOCTL_PROCOBSRV_GET_EVENTS == PROCOBSRV_CTL_CODE(PROCOBSRV_DEVICE_TYPE, 0x802, PROCOBSRV_METHOD_BUFFERED, PROCOBSRV_FILE_WRITE_DATA));
PROCOBSRV_STATIC_ASSERT(ioctl_get_stats,
    IOCTL_PROCOBSRV_GET_STATS == PROCOBSRV_CTL_CODE(PROCOBSRV_DEVICE_TYPE, 0x803, PROCOBSRV_METHOD_BUFFERED, PROCOBSRV_FILE_READ_DATA));
PROCOBSRV_STATIC_ASSERT(ioctl_inject,
    IOCTL_PROCOBSRV_INJECT == PROCOBSRV_CTL_CODE(PROCOBSRV_DEVICE_TYPE, 0x804, PROCOBSRV_METHOD_BUFFERED, PROCOBSRV_FILE_WRITE_DATA));

#endif /* PROCOBSRV_H */
