"""A FUSE file system that can hang: the stand-in for an NFS server that
stopped answering. Speaks the kernel's FUSE protocol on /dev/fuse directly
(no libfuse needed). It holds one directory, `dir`, and answers LOOKUP and
GETATTR (nothing is cached, so every stat reaches it) until hang() is
called; from then on requests are read and left unanswered, and the callers
block exactly like on a dead NFS mount. close() answers everything pending
with an error, aborts the connection and unmounts (lazily).

Root only (mount(2)); the mount point lives outside pytest's tmp dirs so no
cleanup walks into it while it hangs."""
import ctypes
import errno
import os
import select
import struct
import tempfile
import threading

FUSE_LOOKUP, FUSE_FORGET, FUSE_GETATTR = 1, 2, 3
FUSE_INIT, FUSE_INTERRUPT, FUSE_BATCH_FORGET = 26, 36, 42
NO_REPLY = {FUSE_FORGET, FUSE_BATCH_FORGET, FUSE_INTERRUPT}
IN_HEADER = struct.Struct("<IIQQIIII")  # len opcode unique nodeid uid gid pid padding
OUT_HEADER = struct.Struct("<IiQ")      # len error unique
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _attr(ino: int) -> bytes:
    # fuse_attr: ino size blocks atime mtime ctime (u64), atimensec mtimensec
    # ctimensec mode nlink uid gid rdev blksize flags (u32)
    return struct.pack("<QQQQQQIIIIIIIIII", ino, 4096, 8, 0, 0, 0, 0, 0, 0, 0o040755, 2, 0, 0, 0, 4096, 0)


class HungFuse:
    def __init__(self):
        self.mountpoint = tempfile.mkdtemp(prefix="kr-hungfuse-", dir="/tmp")
        self.fd = os.open("/dev/fuse", os.O_RDWR)
        opts = f"fd={self.fd},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
        if _libc.mount(b"krhung", self.mountpoint.encode(), b"fuse.krhung", 0, opts) != 0:
            e = ctypes.get_errno()
            os.close(self.fd)
            os.rmdir(self.mountpoint)
            raise OSError(e, f"mount fuse: {os.strerror(e)}")
        self.hanging = False
        self.held: list[int] = []  # uniques of unanswered requests
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def dir(self) -> str:
        return os.path.join(self.mountpoint, "dir")

    def hang(self):
        with self.lock:
            self.hanging = True

    def held_requests(self) -> int:
        with self.lock:
            return len(self.held)

    def _reply(self, unique: int, error: int = 0, payload: bytes = b""):
        try:
            os.write(self.fd, OUT_HEADER.pack(OUT_HEADER.size + len(payload), -error if error else 0, unique) + payload)
        except OSError:
            pass  # the request was interrupted meanwhile

    def _serve(self):
        while not self.stopping:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if not r:
                continue
            try:
                msg = os.read(self.fd, 1 << 20)
            except OSError as e:
                if e.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue
                return  # ENODEV: unmounted
            length, opcode, unique, nodeid, *_ = IN_HEADER.unpack_from(msg)
            body = msg[IN_HEADER.size:length]
            if opcode in NO_REPLY:
                continue
            if opcode == FUSE_INIT:
                major, minor, readahead, flags = struct.unpack_from("<IIII", body)
                # fuse_init_out as of protocol 7.12 (the kernel accepts a
                # shorter reply from an older daemon).
                self._reply(unique, 0, struct.pack("<IIIIHHI", 7, 12, readahead, 0, 16, 12, 65536))
                continue
            with self.lock:
                if self.hanging:
                    self.held.append(unique)
                    continue
            if opcode == FUSE_LOOKUP:
                name = body.split(b"\0", 1)[0]
                if nodeid == 1 and name == b"dir":
                    # fuse_entry_out: nodeid generation entry_valid attr_valid
                    # entry_valid_nsec attr_valid_nsec, attr (never cached)
                    self._reply(unique, 0, struct.pack("<QQQQII", 2, 0, 0, 0, 0, 0) + _attr(2))
                else:
                    self._reply(unique, errno.ENOENT)
            elif opcode == FUSE_GETATTR:
                if nodeid in (1, 2):
                    # fuse_attr_out: attr_valid attr_valid_nsec dummy, attr
                    self._reply(unique, 0, struct.pack("<QII", 0, 0, 0) + _attr(nodeid))
                else:
                    self._reply(unique, errno.ENOENT)
            else:
                self._reply(unique, errno.ENOSYS)

    def close(self):
        with self.lock:
            held, self.held = self.held, []
            self.hanging = False
        for u in held:
            self._reply(u, errno.EIO)
        self.stopping = True
        self.thread.join(5)
        _libc.umount2(self.mountpoint.encode(), MNT_DETACH)
        os.close(self.fd)  # aborts anything still pending
        try:
            os.rmdir(self.mountpoint)
        except OSError:
            pass
