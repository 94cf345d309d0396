"""Is a path on a network filesystem? (SQLite must not be shared across machines.)

SQLite's locking (and WAL's shared memory) works between the processes of one
machine only; on NFS, CIFS/SMB, sshfs and the like, two machines "sharing" a
breaker file can both write OPEN, both probe, or corrupt the file — and each
uses its own clock. So the SQLite store refuses such a path with one line that
names Redis, the store for several machines (decision of issue 14).

:func:`filesystem_type` is a pure function over a mounts table (``/proc/mounts``
format), so it is tested without mounting anything.
"""

from __future__ import annotations

import os

NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "beegfs", "ocfs2", "gfs2", "davfs", "fuse.sshfs", "fuse.rclone", "fuse.s3fs",
    "fuse.gcsfuse", "fuse.glusterfs", "fuse.cephfs", "fuse.davfs2", "fuse.juicefs", "fuse.goofys",
})


def _unescape(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal (\040 ...)
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_type(path: str, mounts: str) -> str | None:
    """The type of the filesystem ``path`` (absolute, resolved) lives on, from a mounts table."""
    best, best_type = "", None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point, fstype = _unescape(parts[1]), parts[2]
        prefix = point.rstrip("/") + "/"
        if (path == point or path.startswith(prefix) or point == "/") and len(point) >= len(best):
            best, best_type = point, fstype
    return best_type


def is_network_fs(fstype: str | None) -> bool:
    return fstype is not None and (fstype in NETWORK_FS or fstype.split(".")[0] in NETWORK_FS)


def network_fs_of(path: str, mounts_file: str = "/proc/mounts") -> str | None:
    """The network filesystem type ``path`` is on, or None (local, or no mounts table to read)."""
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as fh:
            mounts = fh.read()
    except OSError:
        return None
    # the deepest existing ancestor: the file (or its folder) may not exist yet
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    fstype = filesystem_type(os.path.realpath(probe), mounts)
    return fstype if is_network_fs(fstype) else None
