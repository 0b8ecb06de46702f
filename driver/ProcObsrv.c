/*
 * ProcObsrv.c - legacy (non-PnP) WDM driver that reports process creation and
 * exit to one administrative client.
 *
 * Flow: the client opens \\.\ProcObsrv, sends ACTIVATE, waits on
 * Global\ProcObsrvProcessEvent, and sends GET_EVENTS until it returns 0 bytes.
 * The notify routine appends to a preallocated ring (poqueue.c); when the ring
 * is full the notification is counted as dropped: process creation is never
 * delayed beyond one short mutex hold. The event is set when the queue becomes
 * non-empty and cleared, under the same lock, when GET_EVENTS empties it, so
 * it is signalled exactly while records are queued.
 *
 * Build switch PROCOBSRV_SELFTEST adds IOCTL_PROCOBSRV_INJECT, which feeds
 * synthetic notifications through PoOnCreate/PoOnExit exactly as the notify
 * routines do. The normal build does not contain it.
 */
#include <ntifs.h>

#include "ProcObsrv.h"
#include "poqueue.h"

/* "PoOb" in pool dumps; spelled as a number because multi-character constants warn in gcc. */
#define PO_POOL_TAG 0x624F6F50u

/* Exported by ntoskrnl since Windows 2000 but absent from the public headers. */
NTKERNELAPI NTSTATUS NTAPI PsGetProcessExitStatus(PEPROCESS Process);

/* Registration state, changed only by interlocked compare-exchange so that
 * concurrent ACTIVATE/DEACTIVATE requests cannot both win. */
#define PO_INACTIVE 0
#define PO_BUSY 1 /* a registration change is in progress */
#define PO_ACTIVE_EX 2
#define PO_ACTIVE_CLASSIC 3

typedef struct PO_EXTENSION {
    FAST_MUTEX lock;       /* guards queue and event state; APC_LEVEL so paged strings may be read */
    po_queue queue;
    PVOID ring;            /* non-paged, PROCOBSRV_QUEUE_CAPACITY_BYTES */
    HANDLE event_handle;   /* kernel handle to the named event */
    PKEVENT event;         /* referenced object behind event_handle */
    volatile LONG state;   /* PO_INACTIVE .. PO_ACTIVE_CLASSIC */
    PFILE_OBJECT owner;    /* the one client, or NULL; set by interlocked exchange */
    UNICODE_STRING link_name;
    BOOLEAN link_created;
} PO_EXTENSION;

/* Notify routines have no context argument: the single device's extension. */
static PO_EXTENSION *g_ext;

DRIVER_INITIALIZE DriverEntry;
static DRIVER_UNLOAD PoUnload;
static DRIVER_DISPATCH PoCreate;
static DRIVER_DISPATCH PoCleanup;
static DRIVER_DISPATCH PoClose;
static DRIVER_DISPATCH PoDeviceControl;

/* S-1-5-18 (LocalSystem) and S-1-5-32-544 (BUILTIN\Administrators), laid out as SIDs
 * with room for two sub-authorities. */
#define PO_SID_MAX_SUB_AUTHORITIES 2
typedef struct PO_SID2 {
    UCHAR Revision;
    UCHAR SubAuthorityCount;
    SID_IDENTIFIER_AUTHORITY IdentifierAuthority;
    ULONG SubAuthority[PO_SID_MAX_SUB_AUTHORITIES];
} PO_SID2;
static const PO_SID2 po_system_sid = {SID_REVISION, 1, {SECURITY_NT_AUTHORITY},
                                      {SECURITY_LOCAL_SYSTEM_RID, 0}};
static const PO_SID2 po_admins_sid = {SID_REVISION, 2, {SECURITY_NT_AUTHORITY},
                                      {SECURITY_BUILTIN_DOMAIN_RID, DOMAIN_ALIAS_RID_ADMINS}};
/* The DACL of every object the driver creates: one ACE for each of the two SIDs. */
#define PO_ADMIN_ONLY_ACES 2

/* An absolute security descriptor and the DACL it points to: built by
 * PoBuildAdminOnlySd, released by PoFreeAdminOnlySd, nowhere else. */
typedef struct PO_ADMIN_SD {
    SECURITY_DESCRIPTOR sd;
    PACL dacl; /* paged pool, PO_POOL_TAG; NULL when not built */
} PO_ADMIN_SD;

/* ------------------------------------------------------------------------- */
/* Queue access: the one path every notification takes.                     */
/* ------------------------------------------------------------------------- */

static void PoRecord(PO_EXTENSION *ext, po_event *ev)
{
    ExAcquireFastMutex(&ext->lock);
    /* Interrupt time, not KeQuerySystemTime: the wall clock can be set (backwards too),
     * the interrupt time only ever counts up. Under the lock: stamps follow sequence order. */
    ev->timestamp = (po_u64)KeQueryInterruptTime();
    if (po_queue_push(&ext->queue, ev, NULL) == PO_PUSH_QUEUED && ext->queue.records == 1)
        KeSetEvent(ext->event, IO_NO_INCREMENT, FALSE);
    ExReleaseFastMutex(&ext->lock);
}

static void PoOnCreate(PO_EXTENSION *ext, ULONG pid, ULONG parent_pid, PCUNICODE_STRING image,
                       PCUNICODE_STRING command_line, ULONG flags)
{
    po_event ev;

    RtlZeroMemory(&ev, sizeof(ev));
    ev.kind = PROCOBSRV_KIND_CREATE;
    ev.pid = pid;
    ev.parent_pid = parent_pid;
    ev.flags = flags;
    if (image != NULL && image->Buffer != NULL) {
        ev.image = (const po_u16 *)image->Buffer;
        ev.image_chars = image->Length / sizeof(WCHAR);
    }
    if (command_line != NULL && command_line->Buffer != NULL) {
        ev.command_line = (const po_u16 *)command_line->Buffer;
        ev.command_line_chars = command_line->Length / sizeof(WCHAR);
    }
    PoRecord(ext, &ev);
}

static void PoOnExit(PO_EXTENSION *ext, ULONG pid, ULONG exit_status, ULONG flags)
{
    po_event ev;

    RtlZeroMemory(&ev, sizeof(ev));
    ev.kind = PROCOBSRV_KIND_EXIT;
    ev.pid = pid;
    ev.exit_status = exit_status;
    ev.flags = flags;
    PoRecord(ext, &ev);
}

/* ------------------------------------------------------------------------- */
/* Notify routines.                                                          */
/* ------------------------------------------------------------------------- */

/* Called at PASSIVE_LEVEL in the creating (or exiting) thread. */
static VOID PoNotifyEx(PEPROCESS process, HANDLE process_id, PPS_CREATE_NOTIFY_INFO info)
{
    PO_EXTENSION *ext = g_ext;

    if (info != NULL)
        PoOnCreate(ext, HandleToULong(process_id), HandleToULong(info->ParentProcessId),
                   info->ImageFileName, info->CommandLine, 0);
    else
        PoOnExit(ext, HandleToULong(process_id), (ULONG)PsGetProcessExitStatus(process), 0);
}

/* Fallback when the Ex routine is refused: ids only. */
static VOID PoNotifyClassic(HANDLE parent_id, HANDLE process_id, BOOLEAN create)
{
    PO_EXTENSION *ext = g_ext;

    if (create)
        PoOnCreate(ext, HandleToULong(process_id), HandleToULong(parent_id), NULL, NULL,
                   PROCOBSRV_RECORD_NO_DETAILS);
    else
        PoOnExit(ext, HandleToULong(process_id), 0,
                 PROCOBSRV_RECORD_NO_DETAILS | PROCOBSRV_RECORD_EXIT_STATUS_UNKNOWN);
}

static NTSTATUS PoActivate(PO_EXTENSION *ext, ULONG flags)
{
    NTSTATUS status = STATUS_UNSUCCESSFUL;

    if (InterlockedCompareExchange(&ext->state, PO_BUSY, PO_INACTIVE) != PO_INACTIVE)
        return STATUS_INVALID_DEVICE_STATE;
    if (!(flags & PROCOBSRV_ACTIVATE_CLASSIC_ONLY)) {
        /* Refused with STATUS_ACCESS_DENIED unless the image has FORCE_INTEGRITY and a valid signature. */
        status = PsSetCreateProcessNotifyRoutineEx(PoNotifyEx, FALSE);
        if (NT_SUCCESS(status)) {
            InterlockedExchange(&ext->state, PO_ACTIVE_EX);
            return status;
        }
    }
    status = PsSetCreateProcessNotifyRoutine(PoNotifyClassic, FALSE);
    InterlockedExchange(&ext->state, NT_SUCCESS(status) ? PO_ACTIVE_CLASSIC : PO_INACTIVE);
    return status;
}

static NTSTATUS PoDeactivate(PO_EXTENSION *ext)
{
    LONG old = ext->state;
    NTSTATUS status;

    if (old != PO_ACTIVE_EX && old != PO_ACTIVE_CLASSIC)
        return STATUS_INVALID_DEVICE_STATE;
    if (InterlockedCompareExchange(&ext->state, PO_BUSY, old) != old)
        return STATUS_INVALID_DEVICE_STATE;
    /* On success the kernel guarantees no call of the routine is still running. */
    if (old == PO_ACTIVE_EX)
        status = PsSetCreateProcessNotifyRoutineEx(PoNotifyEx, TRUE);
    else
        status = PsSetCreateProcessNotifyRoutine(PoNotifyClassic, TRUE);
    InterlockedExchange(&ext->state, NT_SUCCESS(status) ? PO_INACTIVE : old);
    return status;
}

/* ------------------------------------------------------------------------- */
/* Security.                                                                 */
/* ------------------------------------------------------------------------- */

/* The object the descriptor was applied to keeps its own copy: free ours. */
static void PoFreeAdminOnlySd(PO_ADMIN_SD *admin)
{
    if (admin->dacl != NULL)
        ExFreePoolWithTag(admin->dacl, PO_POOL_TAG);
    admin->dacl = NULL;
}

/* SYSTEM and Administrators get `access`, nobody else anything. On failure nothing
 * is left to free; on success PoFreeAdminOnlySd must follow. */
static NTSTATUS PoBuildAdminOnlySd(PO_ADMIN_SD *admin, ACCESS_MASK access)
{
    ULONG acl_len = sizeof(ACL) +
                    PO_ADMIN_ONLY_ACES * (ULONG)(FIELD_OFFSET(ACCESS_ALLOWED_ACE, SidStart)) +
                    RtlLengthSid((PSID)&po_system_sid) + RtlLengthSid((PSID)&po_admins_sid);
    NTSTATUS status;

    admin->dacl = (PACL)ExAllocatePoolWithTag(PagedPool, acl_len, PO_POOL_TAG);
    if (admin->dacl == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    status = RtlCreateAcl(admin->dacl, acl_len, ACL_REVISION);
    if (NT_SUCCESS(status))
        status = RtlAddAccessAllowedAce(admin->dacl, ACL_REVISION, access, (PSID)&po_system_sid);
    if (NT_SUCCESS(status))
        status = RtlAddAccessAllowedAce(admin->dacl, ACL_REVISION, access, (PSID)&po_admins_sid);
    if (NT_SUCCESS(status))
        status = RtlCreateSecurityDescriptor(&admin->sd, SECURITY_DESCRIPTOR_REVISION);
    if (NT_SUCCESS(status))
        status = RtlSetDaclSecurityDescriptor(&admin->sd, TRUE, admin->dacl, FALSE);
    if (!NT_SUCCESS(status))
        PoFreeAdminOnlySd(admin);
    return status;
}

/* What IoCreateDeviceSecure would do, with routines every toolchain can link:
 * the I/O manager then checks this DACL on every open (FILE_DEVICE_SECURE_OPEN
 * extends it to \Device\ProcObsrv\anything). */
static NTSTATUS PoProtectDevice(PDEVICE_OBJECT device)
{
    PO_ADMIN_SD admin;
    HANDLE handle;
    NTSTATUS status;

    status = PoBuildAdminOnlySd(&admin, FILE_ALL_ACCESS);
    if (!NT_SUCCESS(status))
        return status;
    status = ObOpenObjectByPointer(device, OBJ_KERNEL_HANDLE, NULL, WRITE_DAC, NULL, KernelMode,
                                   &handle);
    if (NT_SUCCESS(status)) {
        status = ZwSetSecurityObject(handle, DACL_SECURITY_INFORMATION, &admin.sd);
        ZwClose(handle);
    }
    PoFreeAdminOnlySd(&admin);
    return status;
}

/* Second line of defence in IRP_MJ_CREATE, behind the device DACL: the
 * opener's effective token must contain BUILTIN\Administrators (SYSTEM's
 * does; a UAC-filtered token does not). */
static BOOLEAN PoCallerIsAdmin(PIRP irp, PIO_STACK_LOCATION sp)
{
    PIO_SECURITY_CONTEXT security = sp->Parameters.Create.SecurityContext;
    PSECURITY_SUBJECT_CONTEXT subject;
    PACCESS_TOKEN token;
    BOOLEAN admin;

    if (irp->RequestorMode == KernelMode)
        return TRUE;
    if (security == NULL || security->AccessState == NULL) {
        /* The Windows I/O manager always supplies an ACCESS_STATE for a user-mode
         * create (it has just checked the DACL with it). Only Wine passes NULL,
         * and it implements neither SeCaptureSubjectContext nor device ACLs. The
         * self-test build, which only ever runs under Wine, admits such opens so
         * the tests can drive it; the normal build never admits a caller it
         * cannot identify. */
#ifdef PROCOBSRV_SELFTEST
        return TRUE;
#else
        return FALSE;
#endif
    }
    subject = &security->AccessState->SubjectSecurityContext;
    SeLockSubjectContext(subject);
    token = subject->ClientToken != NULL ? subject->ClientToken : subject->PrimaryToken;
    admin = token != NULL && SeTokenIsAdmin(token);
    SeUnlockSubjectContext(subject);
    return admin;
}

/* ------------------------------------------------------------------------- */
/* Dispatch routines.                                                        */
/* ------------------------------------------------------------------------- */

static NTSTATUS PoComplete(PIRP irp, NTSTATUS status, ULONG_PTR information)
{
    irp->IoStatus.Status = status;
    irp->IoStatus.Information = information;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    return status;
}

static NTSTATUS PoCreate(PDEVICE_OBJECT device, PIRP irp)
{
    PO_EXTENSION *ext = (PO_EXTENSION *)device->DeviceExtension;
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);

    /* Only the device itself: no \Device\ProcObsrv\something names. */
    if (sp->FileObject != NULL && sp->FileObject->FileName.Length != 0)
        return PoComplete(irp, STATUS_OBJECT_NAME_NOT_FOUND, 0);
    if (!PoCallerIsAdmin(irp, sp))
        return PoComplete(irp, STATUS_ACCESS_DENIED, 0);
    if (InterlockedCompareExchangePointer((PVOID volatile *)&ext->owner, sp->FileObject, NULL) !=
        NULL)
        return PoComplete(irp, STATUS_SHARING_VIOLATION, 0);
    return PoComplete(irp, STATUS_SUCCESS, 0);
}

/* The owner's last handle is gone: stop monitoring so a crashed client does
 * not leave the callback running. Queued records stay for the next client. */
static NTSTATUS PoCleanup(PDEVICE_OBJECT device, PIRP irp)
{
    PO_EXTENSION *ext = (PO_EXTENSION *)device->DeviceExtension;
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);

    if (sp->FileObject == ext->owner)
        (void)PoDeactivate(ext); /* STATUS_INVALID_DEVICE_STATE when already inactive */
    return PoComplete(irp, STATUS_SUCCESS, 0);
}

static NTSTATUS PoClose(PDEVICE_OBJECT device, PIRP irp)
{
    PO_EXTENSION *ext = (PO_EXTENSION *)device->DeviceExtension;
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);

    if (sp->FileObject == ext->owner) {
        (void)PoDeactivate(ext); /* in case no IRP_MJ_CLEANUP was seen */
        InterlockedExchangePointer((PVOID volatile *)&ext->owner, NULL);
    }
    return PoComplete(irp, STATUS_SUCCESS, 0);
}

/* ------------------------------------------------------------------------- */
/* IOCTLs: one routine each. Each checks its own lengths against ProcObsrv.h,  */
/* does the work and, when it returns data, sets *written to the bytes it      */
/* wrote into the METHOD_BUFFERED system buffer (in and out share it). None    */
/* completes the IRP: PoDeviceControl does, in one place.                      */
/* ------------------------------------------------------------------------- */

static NTSTATUS PoIoctlActivate(PO_EXTENSION *ext, const void *buffer, ULONG in_len)
{
    const PROCOBSRV_ACTIVATE_INPUT *req = (const PROCOBSRV_ACTIVATE_INPUT *)buffer;

    if (in_len != sizeof(*req) || req == NULL)
        return STATUS_INFO_LENGTH_MISMATCH;
    if (req->size != sizeof(*req) || req->reserved != 0 ||
        (req->flags & ~PROCOBSRV_ACTIVATE_VALID_FLAGS) != 0)
        return STATUS_INVALID_PARAMETER;
    if (req->abi_version != PROCOBSRV_ABI_VERSION)
        return STATUS_REVISION_MISMATCH;
    return PoActivate(ext, req->flags);
}

static NTSTATUS PoIoctlDeactivate(PO_EXTENSION *ext, ULONG in_len)
{
    if (in_len != 0)
        return STATUS_INFO_LENGTH_MISMATCH;
    return PoDeactivate(ext);
}

static NTSTATUS PoIoctlGetEvents(PO_EXTENSION *ext, void *buffer, ULONG in_len, ULONG out_len,
                                 ULONG_PTR *written)
{
    po_u32 records;

    if (in_len != 0)
        return STATUS_INFO_LENGTH_MISMATCH;
    if (out_len < PROCOBSRV_MIN_EVENTS_BUFFER || buffer == NULL)
        return STATUS_BUFFER_TOO_SMALL;
    ExAcquireFastMutex(&ext->lock);
    *written = po_queue_pop(&ext->queue, buffer, out_len, &records);
    if (ext->queue.records == 0)
        KeClearEvent(ext->event); /* drained: and only then */
    ExReleaseFastMutex(&ext->lock);
    return STATUS_SUCCESS;
}

static NTSTATUS PoIoctlGetStats(PO_EXTENSION *ext, void *buffer, ULONG in_len, ULONG out_len,
                                ULONG_PTR *written)
{
    PROCOBSRV_STATS stats;
    LONG state = ext->state;

    if (in_len != 0)
        return STATUS_INFO_LENGTH_MISMATCH;
    if (out_len < sizeof(stats) || buffer == NULL)
        return STATUS_BUFFER_TOO_SMALL;
    ExAcquireFastMutex(&ext->lock);
    po_queue_stats(&ext->queue, &stats); /* zero-fills the whole struct first */
    ExReleaseFastMutex(&ext->lock);
    if (state == PO_ACTIVE_EX)
        stats.state |= PROCOBSRV_STATE_ACTIVE | PROCOBSRV_STATE_NOTIFY_EX;
    else if (state == PO_ACTIVE_CLASSIC)
        stats.state |= PROCOBSRV_STATE_ACTIVE;
#ifdef PROCOBSRV_SELFTEST
    stats.state |= PROCOBSRV_STATE_SELFTEST;
#endif
    RtlCopyMemory(buffer, &stats, sizeof(stats));
    *written = sizeof(stats);
    return STATUS_SUCCESS;
}

#ifdef PROCOBSRV_SELFTEST
static NTSTATUS PoIoctlInject(PO_EXTENSION *ext, const void *buffer, ULONG in_len)
{
    const PROCOBSRV_INJECT_INPUT *req = (const PROCOBSRV_INJECT_INPUT *)buffer;
    UNICODE_STRING image, command_line;
    ULONG i, strings;

    if (req == NULL || in_len < sizeof(*req))
        return STATUS_INFO_LENGTH_MISMATCH;
    strings = (ULONG)sizeof(WCHAR) * ((ULONG)req->image_length + (ULONG)req->command_line_length);
    if (in_len != sizeof(*req) + strings)
        return STATUS_INFO_LENGTH_MISMATCH;
    if ((req->kind != PROCOBSRV_KIND_CREATE && req->kind != PROCOBSRV_KIND_EXIT) ||
        req->count == 0 || req->count > PROCOBSRV_INJECT_MAX_COUNT || req->reserved != 0 ||
        req->reserved2 != 0 || req->image_length > MAXUSHORT / sizeof(WCHAR) ||
        req->command_line_length > MAXUSHORT / sizeof(WCHAR) ||
        (req->kind == PROCOBSRV_KIND_EXIT && strings != 0))
        return STATUS_INVALID_PARAMETER;
    if (ext->state != PO_ACTIVE_EX && ext->state != PO_ACTIVE_CLASSIC)
        return STATUS_INVALID_DEVICE_STATE;

    /* The strings point straight into the request, as the kernel's would into its own copy. */
    image.Buffer = (PWCH)(req + 1);
    image.Length = image.MaximumLength = (USHORT)(req->image_length * sizeof(WCHAR));
    command_line.Buffer = image.Buffer + req->image_length;
    command_line.Length = command_line.MaximumLength =
        (USHORT)(req->command_line_length * sizeof(WCHAR));
    for (i = 0; i < req->count; i++) {
        if (req->kind == PROCOBSRV_KIND_CREATE)
            PoOnCreate(ext, req->pid + i, req->parent_pid, &image, &command_line,
                       PROCOBSRV_RECORD_INJECTED);
        else
            PoOnExit(ext, req->pid + i, req->exit_status, PROCOBSRV_RECORD_INJECTED);
    }
    return STATUS_SUCCESS;
}
#endif

/* The request's IOCTL routine; STATUS_INVALID_DEVICE_REQUEST for a code it does not know. */
static NTSTATUS PoIoctl(PO_EXTENSION *ext, PIO_STACK_LOCATION sp, void *buffer, ULONG_PTR *written)
{
    ULONG in_len = sp->Parameters.DeviceIoControl.InputBufferLength;
    ULONG out_len = sp->Parameters.DeviceIoControl.OutputBufferLength;

    switch (sp->Parameters.DeviceIoControl.IoControlCode) {
    case IOCTL_PROCOBSRV_ACTIVATE:
        return PoIoctlActivate(ext, buffer, in_len);
    case IOCTL_PROCOBSRV_DEACTIVATE:
        return PoIoctlDeactivate(ext, in_len);
    case IOCTL_PROCOBSRV_GET_EVENTS:
        return PoIoctlGetEvents(ext, buffer, in_len, out_len, written);
    case IOCTL_PROCOBSRV_GET_STATS:
        return PoIoctlGetStats(ext, buffer, in_len, out_len, written);
#ifdef PROCOBSRV_SELFTEST
    case IOCTL_PROCOBSRV_INJECT:
        return PoIoctlInject(ext, buffer, in_len);
#endif
    default:
        return STATUS_INVALID_DEVICE_REQUEST;
    }
}

static NTSTATUS PoDeviceControl(PDEVICE_OBJECT device, PIRP irp)
{
    PO_EXTENSION *ext = (PO_EXTENSION *)device->DeviceExtension;
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);
    ULONG_PTR written = 0;
    NTSTATUS status;

    /* Windows never hands out a handle whose create we refused, but Wine
     * opens it before the create IRP is answered: refuse such handles here too. */
    if (sp->FileObject != ext->owner)
        status = STATUS_SHARING_VIOLATION;
    else
        status = PoIoctl(ext, sp, irp->AssociatedIrp.SystemBuffer, &written);
    /* Information is exactly what was written: nothing else of the buffer is copied out. */
    return PoComplete(irp, status, NT_SUCCESS(status) ? written : 0);
}

/* ------------------------------------------------------------------------- */
/* Load and unload.                                                          */
/* ------------------------------------------------------------------------- */

static NTSTATUS PoCreateEvent(PO_EXTENSION *ext)
{
    UNICODE_STRING name;
    OBJECT_ATTRIBUTES attrs;
    PO_ADMIN_SD admin;
    NTSTATUS status;

    /* Clients may only wait on the event: with EVENT_MODIFY_STATE an administrator's
     * stray SetEvent/ResetEvent would make it lie about the queue. Windows does not
     * check the driver's own kernel-mode KeSetEvent/KeClearEvent against this DACL;
     * Wine does (it reopens the event with winedevice's token), so the self-test
     * build, used only under Wine, grants EVENT_MODIFY_STATE as well. */
#ifdef PROCOBSRV_SELFTEST
    status = PoBuildAdminOnlySd(&admin, SYNCHRONIZE | EVENT_MODIFY_STATE);
#else
    status = PoBuildAdminOnlySd(&admin, SYNCHRONIZE);
#endif
    if (!NT_SUCCESS(status))
        return status;
    RtlInitUnicodeString(&name, PROCOBSRV_EVENT_NAME);
    /* No OBJ_OPENIF: if a user process squatted on the name, refuse to load
     * rather than share an event whose ACL someone else chose. */
    InitializeObjectAttributes(&attrs, &name, OBJ_KERNEL_HANDLE, NULL, &admin.sd);
    status = ZwCreateEvent(&ext->event_handle, EVENT_ALL_ACCESS, &attrs, NotificationEvent, FALSE);
    PoFreeAdminOnlySd(&admin);
    if (!NT_SUCCESS(status)) {
        ext->event_handle = NULL;
        return status;
    }
    /* No object type check: a kernel handle we just created cannot be anything but
     * our event, and mingw's dllimport declaration of ExEventObjectType has one
     * level of indirection fewer than the WDK's, so it cannot be spelled portably. */
    status = ObReferenceObjectByHandle(ext->event_handle, EVENT_MODIFY_STATE, NULL, KernelMode,
                                       (PVOID *)&ext->event, NULL);
    if (!NT_SUCCESS(status)) {
        ZwClose(ext->event_handle);
        ext->event_handle = NULL;
        ext->event = NULL;
    }
    return status;
}

/* Undoes DriverEntry's work in reverse; safe on a partly built device. */
static void PoTeardown(PDEVICE_OBJECT device)
{
    PO_EXTENSION *ext = (PO_EXTENSION *)device->DeviceExtension;

    if (ext->link_created)
        IoDeleteSymbolicLink(&ext->link_name);
    if (ext->event != NULL)
        ObDereferenceObject(ext->event);
    if (ext->event_handle != NULL)
        ZwClose(ext->event_handle);
    if (ext->ring != NULL)
        ExFreePoolWithTag(ext->ring, PO_POOL_TAG);
    g_ext = NULL;
    IoDeleteDevice(device);
}

static VOID PoUnload(PDRIVER_OBJECT driver)
{
    PDEVICE_OBJECT device = driver->DeviceObject;
    PO_EXTENSION *ext = (PO_EXTENSION *)device->DeviceExtension;
    LONG state = ext->state;

    if (state == PO_ACTIVE_EX || state == PO_ACTIVE_CLASSIC) {
        NTSTATUS status = PoDeactivate(ext);

        if (!NT_SUCCESS(status)) {
            /* The routine may still be called. Keep the device object, and with
             * it the driver image, the ring and the event, alive for good:
             * a leak is better than a callback into unloaded code. */
            DbgPrint("ProcObsrv: unregister failed 0x%08lx; keeping the driver resident\n",
                     (unsigned long)status);
            return;
        }
    }
    PoTeardown(device);
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    UNICODE_STRING device_name;
    PDEVICE_OBJECT device;
    PO_EXTENSION *ext;
    NTSTATUS status;

    UNREFERENCED_PARAMETER(registry_path);

    RtlInitUnicodeString(&device_name, PROCOBSRV_DEVICE_NAME);
    status = IoCreateDevice(driver, sizeof(PO_EXTENSION), &device_name, PROCOBSRV_DEVICE_TYPE,
                            FILE_DEVICE_SECURE_OPEN, FALSE, &device);
    if (!NT_SUCCESS(status))
        return status;
    ext = (PO_EXTENSION *)device->DeviceExtension;
    RtlZeroMemory(ext, sizeof(*ext));
    ExInitializeFastMutex(&ext->lock);
    ext->state = PO_INACTIVE;

    /* One allocation for the whole ring, made now so a notification never allocates. */
    /* NonPagedPoolNx: data is never executable (mingw-w64 has no ExAllocatePool2). */
    ext->ring = ExAllocatePoolWithTag(NonPagedPoolNx, PROCOBSRV_QUEUE_CAPACITY_BYTES, PO_POOL_TAG);
    if (ext->ring == NULL) {
        status = STATUS_INSUFFICIENT_RESOURCES;
        goto fail;
    }
    if (!po_queue_init(&ext->queue, ext->ring, PROCOBSRV_QUEUE_CAPACITY_BYTES)) {
        status = STATUS_DATATYPE_MISALIGNMENT;
        goto fail;
    }
    status = PoProtectDevice(device);
    if (!NT_SUCCESS(status))
        goto fail;
    status = PoCreateEvent(ext);
    if (!NT_SUCCESS(status))
        goto fail;
    RtlInitUnicodeString(&ext->link_name, PROCOBSRV_DOS_DEVICE_NAME);
    status = IoCreateSymbolicLink(&ext->link_name, &device_name);
    if (!NT_SUCCESS(status))
        goto fail;
    ext->link_created = TRUE;

    g_ext = ext;
    driver->MajorFunction[IRP_MJ_CREATE] = PoCreate;
    driver->MajorFunction[IRP_MJ_CLEANUP] = PoCleanup;
    driver->MajorFunction[IRP_MJ_CLOSE] = PoClose;
    driver->MajorFunction[IRP_MJ_DEVICE_CONTROL] = PoDeviceControl;
    driver->DriverUnload = PoUnload;
    device->Flags |= DO_BUFFERED_IO;
    device->Flags &= ~DO_DEVICE_INITIALIZING;
    return STATUS_SUCCESS;

fail:
    PoTeardown(device);
    return status;
}
