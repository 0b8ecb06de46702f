"""The C library's functions procobsrv calls through ctypes, each declared once with its
prototype (``<sys/socket.h>``, ``<sys/mman.h>``, ``<stdio.h>``, ``<stdlib.h>``,
``<fcntl.h>``).

Every one is loaded with ``use_errno``: after a failure, ``ctypes.get_errno()`` holds why.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from .connector_abi import mmsghdr

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)

#: int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags,
#:              struct timespec *timeout)
recvmmsg = _libc.recvmmsg
recvmmsg.argtypes = (
    ctypes.c_int,
    ctypes.POINTER(mmsghdr),
    ctypes.c_uint,
    ctypes.c_int,
    ctypes.c_void_p,
)
recvmmsg.restype = ctypes.c_int

#: void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
mmap = _libc.mmap
mmap.argtypes = (
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int32,
    ctypes.c_int32,
    ctypes.c_int32,
    ctypes.c_int64,
)
mmap.restype = ctypes.c_void_p
#: What mmap returns on failure: (void *) -1.
MAP_FAILED = ctypes.c_void_p(-1).value

#: int munmap(void *addr, size_t length)
munmap = _libc.munmap
munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
munmap.restype = ctypes.c_int32

#: int vasprintf(char **strp, const char *fmt, va_list ap): sizes its buffer itself.
vasprintf = _libc.vasprintf
vasprintf.argtypes = (ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_void_p)
vasprintf.restype = ctypes.c_int


class kernfs_handle(ctypes.Structure):
    """``struct file_handle`` of a kernfs (cgroup) node: its 8-byte id as the handle."""

    _fields_ = (
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_uint64),
    )


#: file_handle.handle_type of kernfs nodes (<linux/exportfs.h>)
FILEID_KERNFS = 0xFE

#: int open_by_handle_at(int mount_fd, struct file_handle *handle, int flags)
#: (needs CAP_DAC_READ_SEARCH)
open_by_handle_at = _libc.open_by_handle_at
open_by_handle_at.argtypes = (ctypes.c_int, ctypes.POINTER(kernfs_handle), ctypes.c_int)
open_by_handle_at.restype = ctypes.c_int

#: void free(void *ptr)
free = _libc.free
free.argtypes = (ctypes.c_void_p,)
free.restype = None
