"""Run a command with every filesystem read-only, as in a container with a read-only root.

    unshare --mount --propagation private python tests/readonly_root.py [--tmpfs DIR] CMD...

Inside the private mount namespace ``unshare`` gives it (root only), every
mount but /proc, /sys and /dev (whose /dev/shm a container keeps writable) is
remounted read-only; ``--tmpfs DIR`` mounts an in-memory filesystem at DIR,
like a Kubernetes emptyDir.  It checks that the working directory, /tmp and the
Python prefix refuse writes, then replaces itself with CMD (same PID, so signals
reach it).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

KEEP = ("/proc", "/sys", "/dev")


def mount_points() -> list[str]:
    points: list[str] = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point = line.split()[1].encode().decode("unicode_escape")  # spaces come as \040
            if not any(point == k or point.startswith(k + "/") for k in KEEP) and point not in points:
                points.append(point)
    return points


def main(argv: list[str]) -> None:
    tmpfs = None
    if argv[:1] == ["--tmpfs"]:
        tmpfs, argv = argv[1], argv[2:]
    for point in mount_points():
        subprocess.run(["mount", "-o", "remount,bind,ro", point], check=True)
    if tmpfs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", tmpfs], check=True)
    for directory in (os.getcwd(), "/tmp", sys.prefix):
        try:
            os.close(os.open(os.path.join(directory, ".write-probe"), os.O_CREAT | os.O_WRONLY))
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
        else:
            sys.exit(f"{directory} is still writable: not a read-only root")
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
