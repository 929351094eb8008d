"""The one pipeline that serves every compute operation, JSON and binary, as plain ASGI.

For each request, in order:

1. the body parser is chosen from the content type (415 before any byte is read);
2. the body is read within the byte limit (413) and the time limits (408:
   ACTIVATION_BODY_TIMEOUT between reads, ACTIVATION_MIN_BODY_RATE for large
   bodies, ACTIVATION_REQUEST_TIMEOUT in all), its memory reserved from the
   budget's body share before its first byte is read (:mod:`service.budget`);
3. a concurrency slot is taken (503 past ACTIVATION_MAX_CONCURRENCY): only now,
   so a slow client never holds one while it sends;
4. the memory that decoding will hold is reserved, the body decoded and the
   work planned (:mod:`service.operations`), then the memory of the
   computation and of the encoded reply is reserved (413 if it could never
   fit, 503 if it does not fit now);
5. the plan is computed and encoded, on the event loop when it is small, in a
   bounded pool of worker threads otherwise, so probes are always answered;
6. the slot is released and the reply sent in pieces; its memory stays
   reserved until the last piece is handed over (or the connection is closed,
   see ACTIVATION_WRITE_TIMEOUT in :mod:`service.lifecycle`).

FastAPI's per-request machinery (routing, dependency solving, the Request
object) costs about as much as a whole /healthz call, so these operations do
not go through it; :mod:`service.routes` sends them here.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from . import activations, decode, encode, inference, observe
from .budget import Budget, Reservation
from .lifecycle import in_daemon_thread
from .operations import Limits, Plan
from .problems import RequestError, from_error, response_for
from .routes import Compute
from .settings import Settings

T = TypeVar("T")

#: Bodies up to this size are decoded on the event loop (unless compressed); larger ones in a worker.
INLINE_BODY_BYTES = 64 * 1024
#: Plans that touch up to this many elements run on the event loop; larger ones in a worker.
INLINE_WORK = 16 * 1024
#: Bytes a number of the input needs in the plainest computation (its result and one temporary).
AHEAD_BYTES_PER_NUMBER = 16
#: Seconds a large body has before ACTIVATION_MIN_BODY_RATE applies.
BODY_RATE_GRACE = 2.0
#: A compressed body is decompressed in pieces of this many bytes.
INFLATE_PIECE = 1 << 20


@dataclass(frozen=True)
class Format:
    """How one request's body is decoded and its reply encoded: the service's own JSON and NumPy
    bodies (:mod:`service.decode`, :mod:`service.encode`), or the Open Inference Protocol's
    (:mod:`service.inference`)."""

    parse: Callable[[bytes | bytearray], Any]
    #: Bytes decoding a body holds at its peak, and the numbers it holds at most.
    cost: Callable[[bytes | bytearray], tuple[int, int]]
    encode: Callable[[dict[str, Any]], encode.Reply]
    #: An upper bound of the reply's size for a number of result elements of a dtype.
    reply_bytes: Callable[[int, str], int]
    #: The cheaper forms to name in a 413 about the body and about the result.
    cheaper_body: str
    cheaper_reply: str
    #: Decoded in a worker thread whatever its size (an archive inflates).
    archive: bool = False


class Pipeline:
    """Serves the compute operations of one process, within its limits and its memory budget."""

    def __init__(self, settings: Settings) -> None:
        self.limits = Limits(settings.max_body_bytes, settings.max_elements, settings.max_jacobian_elements)
        self.budget = Budget(settings.memory_budget_bytes, wait=settings.queue_timeout)
        self.min_body_rate = settings.min_body_rate
        self.max_concurrency = settings.max_concurrency
        self.body_timeout = settings.body_timeout
        self.request_timeout = settings.request_timeout
        self.compute_timeout = settings.compute_timeout
        self.threads = settings.compute_threads
        self.active = 0
        self._pool: asyncio.Semaphore | None = None
        activations.set_threads(settings.compute_threads)

    async def __call__(self, compute: Compute, scope: Scope, receive: Receive, send: Send) -> None:
        info = scope.get("state", {}).get("observe")
        reservation = self.budget.reservation()
        try:
            try:
                reply = await self.handle(compute, scope, receive, reservation, info)
            except asyncio.CancelledError:
                # The drain ran out of time (ACTIVATION_DRAIN_SECONDS) before this request was
                # answered: say so, so that the client retries elsewhere, and end the request here.
                reason = (
                    "the server shut down before finishing this request (ACTIVATION_DRAIN_SECONDS); retry"
                )
                response = from_error(RequestError.retry_later(reason), scope)
            except Exception as exc:
                response = response_for(exc, f"{scope['method']} {scope['path'][:100]}", scope)
            else:
                await send_pieces(send, *reply)
                return
            await response(scope, receive, send)
        finally:
            reservation.release()

    async def handle(
        self,
        compute: Compute,
        scope: Scope,
        receive: Receive,
        reservation: Reservation,
        info: dict[str, Any] | None,
    ) -> encode.Reply:
        """One compute request, from its ASGI ``receive`` to the encoded reply."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        form = self.format_for(compute, scope, headers)
        body: bytes | bytearray = await self.read_body(receive, headers.get("content-length"), reservation)
        if "content-encoding" in headers:
            body = await self.inflate(body, headers["content-encoding"], reservation)
        if self.active >= self.max_concurrency:
            # Shed load rather than queue without bound; the client retries after a second.
            reason = f"busy: {self.active} requests in progress (ACTIVATION_MAX_CONCURRENCY); retry shortly"
            raise RequestError.retry_later(reason)
        self.active += 1
        try:
            plan = await self.admit(compute, form, body, reservation, info)
            if plan.work <= INLINE_WORK:
                return form.encode(plan.run())
            stop = activations.Stop()

            def run() -> encode.Reply:
                with activations.stoppable(stop):
                    return form.encode(plan.run())

            watcher = asyncio.create_task(self.watch(receive, stop))
            try:
                return await self.in_pool(run)
            except activations.Cancelled as exc:
                raise RequestError.retry_later(f"stopped: {exc.reason}; send less work per request") from None
            finally:
                watcher.cancel()
        finally:
            self.active -= 1

    async def watch(self, receive: Receive, stop: activations.Stop) -> None:
        """Stop the computation when its client leaves, or when it runs past ACTIVATION_COMPUTE_TIMEOUT.

        The body has been read: what ``receive`` gives now is the client's disconnect (or, when the
        reply has gone out, nothing that matters: this task is cancelled then)."""
        try:
            async with asyncio.timeout(self.compute_timeout):
                while (await receive())["type"] != "http.disconnect":
                    pass
            stop.set("the client closed the connection")
            observe.STOPPED.labels("disconnect").inc()
        except TimeoutError:
            stop.set(f"the computation ran past {self.compute_timeout:g} s (ACTIVATION_COMPUTE_TIMEOUT)")
            observe.STOPPED.labels("deadline").inc()

    def format_for(self, compute: Compute, scope: Scope, headers: dict[str, str]) -> Format:
        """How this request's body is decoded and its reply encoded (415 before any byte is read)."""
        max_elements = self.limits.max_elements
        if compute.inference:
            name = scope["state"]["path_params"]["name"]
            version = scope["state"]["path_params"].get("version")
            inference.model(name, version)  # 404 before the body is read
            length = headers.get(inference.HEADER_LENGTH)
            return Format(
                parse=lambda body: inference.parse(name, version, body, length, max_elements),
                cost=lambda body: inference.cost(body, length),
                encode=inference.encode,
                reply_bytes=inference.reply_bytes,
                cheaper_body="send the tensors as binary data (the binary tensor data extension)",
                cheaper_reply="ask for the outputs as binary data (binary_data_output)",
            )
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        kind = decode.media_type(headers.get("content-type", decode.JSON_MEDIA_TYPE))
        parse = decode.parser_for(compute.model, kind, query, max_elements, compute.binary)
        npy_out = encode.npy_media_type(headers.get("accept", ""), compute.binary)
        return Format(
            parse=parse,
            cost=lambda body: decode.decode_cost(kind, body, max_elements),
            encode=lambda payload: encode.encode(payload, npy_out),
            reply_bytes=lambda elements, dtype: encode.reply_bytes(elements, dtype, npy_out is not None),
            cheaper_body="send the array as .npy instead of JSON",
            cheaper_reply=""
            if npy_out
            else "ask for the result as .npy (Accept: application/x-npy), 8 bytes a number",
            archive=kind in (decode.NPZ_MEDIA_TYPE, decode.OCTET_MEDIA_TYPE),
        )

    async def admit(
        self,
        compute: Compute,
        form: Format,
        body: bytes | bytearray,
        reservation: Reservation,
        info: dict[str, Any] | None,
    ) -> Plan:
        """Decode and plan the request, its memory reserved before it is held.

        A small body (up to INLINE_BODY_BYTES, not an archive) is decoded on the event
        loop, one at a time, holding at most a few MiB; its whole cost is reserved in
        one step once it is planned.  A larger one reserves what decoding will hold
        (and, in advance, what the plainest computation of that many numbers needs)
        before it is decoded in a worker thread, then the rest of its plan's cost.
        """
        cost, numbers = form.cost(body)
        small = len(body) <= INLINE_BODY_BYTES and not form.archive
        holder = [body]
        del body

        def decode_and_plan() -> Plan:
            # The body leaves the holder as it is parsed, so it can be freed before the work.
            return compute.plan(form.parse(holder.pop()), self.limits, info)

        if small:
            plan = decode_and_plan()
            already = -cost  # nothing is reserved yet: the decoding's cost comes with the rest
        else:
            ahead = AHEAD_BYTES_PER_NUMBER * numbers + form.reply_bytes(numbers, "float64")
            await reservation.grow(
                max(0, cost - reservation.size) + ahead, "body", "decoding it", form.cheaper_body
            )
            # Only now does the body leave the body share: bodies waiting to be worked on hold
            # at most half the budget, so those at work can always finish.
            reservation.body_received()
            plan = await self.in_pool(decode_and_plan)
            already = ahead
        cheaper = [c for c in (plan.cheaper, form.cheaper_reply) if c]
        await reservation.grow(
            max(0, plan.workspace + form.reply_bytes(plan.result_elements, plan.dtype) - already),
            "x",
            "the result",
            "; or ".join(cheaper),
            urgent=not small,  # already holding its input: served before requests yet to start
        )
        return plan

    async def inflate(
        self, body: bytes | bytearray, encoding: str, reservation: Reservation
    ) -> bytes | bytearray:
        """A body sent with Content-Encoding gzip or deflate, decompressed within the byte limit.

        The decompressed body may be no larger than ACTIVATION_MAX_BODY_BYTES (413 as
        soon as it grows past it, whatever the compressed size); its memory is reserved
        piece by piece as it grows, and every piece after the first is inflated in a
        worker thread, so a small body that inflates to a large one never holds the loop.
        """
        token = encoding.strip().lower()
        if token in ("", "identity"):
            return body
        if token not in ("gzip", "x-gzip", "deflate"):
            raise RequestError.one(
                415, "content-encoding", f"{encoding[:40]!r} is not supported; send gzip, deflate or identity"
            )
        limit = self.limits.max_body_bytes
        # deflate is zlib-wrapped (RFC 1950) as HTTP says, or raw (RFC 1951) as some clients send it.
        wrapped = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
        wbits = 31 if "gzip" in token else (15 if wrapped else -15)
        inflater = zlib.decompressobj(wbits)
        # One growing buffer: a large bytearray is extended in place (mremap), so the
        # decompressed body is held once, never as pieces plus their join.
        out = bytearray()
        rest = body
        try:
            while True:
                if out:  # past the first piece: a large body, inflated off the event loop
                    piece = await self.in_pool(partial(inflater.decompress, rest, INFLATE_PIECE))
                else:
                    piece = inflater.decompress(rest, INFLATE_PIECE)
                rest = inflater.unconsumed_tail
                if len(out) + len(piece) > limit:
                    raise RequestError.one(
                        413,
                        "body",
                        f"decompresses to over {limit} bytes, the limit (ACTIVATION_MAX_BODY_BYTES)",
                    )
                await reservation.grow(len(piece), "body", "decompressing it")
                out += piece
                del piece
                if inflater.eof or not rest:
                    break
        except zlib.error as exc:
            raise RequestError.one(400, "body", f"is not valid {token} data: {exc}") from None
        if not inflater.eof:
            raise RequestError.one(400, "body", f"the {token} data is truncated")
        if inflater.unused_data:
            raise RequestError.one(400, "body", f"{len(inflater.unused_data)} bytes follow the {token} data")
        reservation.shrink(len(body), body=True)  # the compressed body goes
        return out

    async def in_pool(self, work: Callable[[], T]) -> T:
        """``work()`` in a worker thread, at most ACTIVATION_COMPUTE_THREADS at a time."""
        if self._pool is None:
            self._pool = asyncio.Semaphore(self.threads)
        async with self._pool:
            return await in_daemon_thread(work)

    async def read_body(
        self, receive: Receive, content_length: str | None, reservation: Reservation
    ) -> bytes:
        """The request body in one buffer, within the byte limit, the time limits and the memory budget.

        A body over INLINE_BODY_BYTES reserves its declared length from the body share
        of the budget before its first byte is read (a chunked one grows as it arrives),
        and must then average ACTIVATION_MIN_BODY_RATE after a grace of BODY_RATE_GRACE
        seconds: a client that declares a large body and trickles it cannot hold the
        memory for long.
        """
        limit = self.limits.max_body_bytes
        declared = int(content_length) if content_length and content_length.isdigit() else None
        if declared is not None and declared > limit:
            raise RequestError.one(
                413, "body", f"is {declared} bytes; the limit is {limit} (ACTIVATION_MAX_BODY_BYTES)"
            )
        large = declared is None or declared > INLINE_BODY_BYTES
        if declared and large:
            # Twice the declared length: the pieces as they arrive, and the buffer they are joined into.
            # (A small body is charged with the rest of its request once it is planned.)
            await reservation.grow(2 * declared, "body", "receiving it", body=True)
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            message = await self._receive(receive, start, size if large else None)
            if message["type"] == "http.disconnect":
                raise RequestError.one(400, "body", "the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError.one(
                    413, "body", f"exceeds the limit of {limit} bytes (ACTIVATION_MAX_BODY_BYTES)"
                )
            if large and size > (declared or 0):  # beyond what was declared: a chunked body
                await reservation.grow(2 * len(chunk), "body", "receiving it", body=True)
            if not message.get("more_body", False):
                break
            chunks.append(chunk)
        if chunks:
            chunks.append(chunk)
            chunk = b"".join(chunks)
            chunks.clear()
        reservation.shrink(size, body=True)  # one copy is left
        return bytes(chunk)  # (no copy: it is bytes already)

    async def _receive(self, receive: Receive, start: float, received: int | None) -> Any:
        """The next ASGI message, or 408 once the client pauses too long, is too slow or too late.

        ``received`` (bytes so far) is given for large bodies, which must keep the minimum rate.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline, which = min((now + self.body_timeout, 0), (start + self.request_timeout, 1))
        if received is not None:
            deadline, which = min(
                (deadline, which), (start + BODY_RATE_GRACE + received / self.min_body_rate, 2)
            )
        if deadline > now:
            try:
                async with asyncio.timeout(deadline - now):
                    return await receive()
            except TimeoutError:
                pass
        reasons = (
            f"paused for over {self.body_timeout:g} s (ACTIVATION_BODY_TIMEOUT)",
            f"did not arrive within {self.request_timeout:g} s (ACTIVATION_REQUEST_TIMEOUT)",
            f"arrived slower than {self.min_body_rate} bytes/s (ACTIVATION_MIN_BODY_RATE)",
        )
        raise RequestError(408, [("body", reasons[which])], {"connection": "close"})


async def send_pieces(
    send: Send, media_type: str, extra: dict[str, str], parts: list[bytes | memoryview]
) -> None:
    """Send a 200 response piece by piece: no joined copy of a large body, and
    uvicorn waits for the socket to drain between pieces instead of buffering."""
    length = sum(len(p) for p in parts)
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(length).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    last = len(parts) - 1
    for i, part in enumerate(parts):
        await send({"type": "http.response.body", "body": part, "more_body": i < last})
