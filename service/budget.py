"""The memory budget of one process: requests reserve the bytes they will hold before they hold them.

A body over 64 KiB reserves its declared length when it starts (a chunked
one as its bytes arrive), from the body share: half the budget, so that
bodies still arriving can never take the memory that requests already
received need to finish.  Once received, each request reserves what
decoding, the computation and the encoded reply will need (estimates from
:mod:`service.decode` and :mod:`service.operations`) before that work starts,
and gives it all back once its reply has been sent or abandoned.

A request that could never fit is refused at once (413, naming the setting
and the cheaper form of the request); one that does not fit now waits for
others to finish, up to ACTIVATION_QUEUE_TIMEOUT, then gets 503 with
Retry-After.  A reservation is not an allocation: nothing is allocated from a
declared size.  Every call happens on the event loop, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections import deque
from dataclasses import dataclass

from .problems import RequestError

MIB = 1 << 20


#: Blocks from this size up are mapped on their own, and unmapped when freed (see give_back_freed_memory).
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # (glibc's malloc.h)


def give_back_freed_memory() -> bool:
    """Have glibc return every freed block of MMAP_THRESHOLD or more to the system at once.

    glibc maps a block above its threshold (128 KiB at first) on its own, but freeing one raises
    the threshold to that block's size (up to 32 MiB), and from then on blocks of that size come
    from the threads' heaps, where they stay once freed, unseen by the budget: after two rounds of
    2M-element requests the process kept 26-44 MiB more than it had before them, and its peak was
    175-201 MiB against 158 (with the threshold set: 2 MiB more).  Setting the threshold ends the
    adjustment.  1 MiB keeps the core's per-chunk intermediates (16384 elements, up to 256 KiB)
    in the heaps, where they are reused.  An operator's own MALLOC_MMAP_THRESHOLD_ is left alone,
    and nothing is done off glibc (musl's mallopt does nothing).  Returns whether it was set.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = ctypes.CDLL(None)  # the process's own symbols (find_library would run ldconfig each time)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


#: A request waiting for this little may take room ahead of larger ones waiting before it.
SMALL = 1 << 20


@dataclass(eq=False)
class _Waiter:
    reservation: Reservation
    size: int
    body: bool
    granted: asyncio.Future[None]


def _busy(reason: str) -> RequestError:
    return RequestError.retry_later(f"busy: {reason}; retry shortly")


class Budget:
    """A capacity in bytes, what is reserved of it, and what bodies being received hold of it.

    Requests that must wait are served in order of arrival (one asking for less
    than SMALL may go first when it fits), except that a request already at work
    (its input decoded, asking for the memory of its result) goes before those
    that have not started.  A request waits while holding what it has, so if
    every reserved byte belongs to a waiting request, none can ever be served:
    then the latest to arrive is refused (503) and its memory goes to the others.
    """

    def __init__(self, capacity: int, wait: float = 10.0) -> None:
        self.capacity = capacity
        self.body_capacity = capacity // 2
        self.wait = wait  # seconds a request may wait for room
        self.used = 0
        self.body_used = 0
        self.waiters: deque[_Waiter] = deque()

    def reservation(self) -> Reservation:
        return Reservation(self)

    def _take(self, size: int, body: bool) -> bool:
        if self.used + size > self.capacity or (body and self.body_used + size > self.body_capacity):
            return False
        self.used += size
        self.body_used += size if body else 0
        return True

    def _give(self, size: int, body_size: int = 0) -> None:
        self.used -= size
        self.body_used -= body_size
        self._settle()

    async def _acquire(self, reservation: Reservation, size: int, body: bool, urgent: bool) -> None:
        if (urgent or not self.waiters or size <= SMALL) and self._take(size, body):
            return
        waiter = _Waiter(reservation, size, body, asyncio.get_running_loop().create_future())
        if urgent:
            self.waiters.appendleft(waiter)
        else:
            self.waiters.append(waiter)
        self._settle()
        try:
            async with asyncio.timeout(self.wait):
                await asyncio.shield(waiter.granted)
        except TimeoutError:
            if not _granted(waiter):  # (granted just as the time ran out: keep it)
                raise _busy("the memory budget is taken by other requests") from None
        except BaseException:
            if _granted(waiter):  # cancelled (the drain ran out) after the room was given: give it back
                self._give(size, size if body else 0)
            raise
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
            if not waiter.granted.done():
                waiter.granted.cancel()

    def _settle(self) -> None:
        """Grant what fits, in order; break a standstill of waiters holding everything."""
        passed: set[bool] = set()  # the shares whose first waiter could not be served
        for waiter in list(self.waiters):
            # In order within each share: a body waiting for the body share holds up no one else.
            if (waiter.body not in passed or waiter.size <= SMALL) and self._take(waiter.size, waiter.body):
                self.waiters.remove(waiter)
                waiter.granted.set_result(None)
            else:
                passed.add(waiter.body)
        if self.waiters and sum(w.reservation.size for w in self.waiters) >= self.used:
            # Nobody but the waiters holds memory: none of them can ever be served. Refuse the
            # latest that holds some; it gives it back when its task runs, and this settles again.
            latest = next((w for w in reversed(self.waiters) if w.reservation.size), self.waiters[-1])
            self.waiters.remove(latest)
            latest.granted.set_exception(_busy("the memory budget is held by requests waiting for more"))
            asyncio.get_running_loop().call_soon(self._settle)


def _granted(waiter: _Waiter) -> bool:
    done = waiter.granted.done() and not waiter.granted.cancelled()
    return done and waiter.granted.exception() is None


class Reservation:
    """What one request holds of the budget; grows as the request proceeds, released once."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.size = 0
        self.body_size = 0  # of which the body share

    async def grow(
        self, size: int, field: str, subject: str, cheaper: str = "", body: bool = False, urgent: bool = False
    ) -> None:
        """Reserve ``size`` more bytes: at once, after waiting for room, or a 413/503 that says why.

        ``field`` and ``subject`` name what needs the memory ("x", "the result");
        ``cheaper`` says how to ask for less; ``body`` takes it from the body share;
        ``urgent`` puts the request ahead of those waiting to start.
        """
        budget = self.budget
        limit = budget.body_capacity if body else budget.capacity
        if (self.body_size if body else self.size) + size > limit:
            need = ((self.body_size if body else self.size) + size) // MIB + 1
            share = "bodies being received may hold half of it" if body else "a request may use all of it"
            advice = f": {cheaper}" if cheaper else ""
            raise RequestError.one(
                413,
                field,
                f"{subject} would need about {need} MiB of memory; the budget is {budget.capacity // MIB} MiB "
                f"(ACTIVATION_MEMORY_BUDGET_BYTES) and {share}{advice}",
            )
        await budget._acquire(self, size, body, urgent)
        self.size += size
        self.body_size += size if body else 0

    def body_received(self) -> None:
        """The body has arrived: what it holds leaves the body share (and stays reserved)."""
        if self.body_size:
            self.budget.body_used -= self.body_size
            self.body_size = 0
            self.budget._settle()  # whoever waits for the body share

    def shrink(self, size: int, body: bool = False) -> None:
        """Give back ``size`` bytes that are no longer held (a copy that was freed), of the body share."""
        size = min(size, self.body_size if body else self.size - self.body_size)
        if size > 0:
            self.size -= size
            self.body_size -= size if body else 0
            self.budget._give(size, size if body else 0)

    def release(self) -> None:
        if self.size:
            self.budget._give(self.size, self.body_size)
            self.size = self.body_size = 0
