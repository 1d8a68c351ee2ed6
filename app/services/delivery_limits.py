"""A subscription's ``max_in_flight`` and ``rate_limit_per_s`` held across processes, in Redis.

Live dispatchers, the retry task and replay jobs may all send to one subscription at once, from several
processes. Each process used to apply the limits on its own (the live dispatchers a share by partitions),
so together they could exceed them. With Redis (``REDIS_URL``) every sender of a subscription takes:

- **in-flight slots** from one sorted set per subscription (member: a slot name, score: when its lease
  ends). A process leases slots in bulk, as many as its sends are waiting for, lends them to its sends,
  renews them while it holds them and hands them back once idle for ``IDLE_RELEASE_S``: a batch costs two
  round trips (lease, release), not two per event. A process that dies holding slots loses them when
  their lease ends (``SLOT_TTL_S``).
- **rate tokens** from one GCRA bucket per subscription (the theoretical arrival time in a key), taken
  in bulk as well: as many as the sends waiting, up to what the bucket holds; a token not used within
  ``TOKEN_KEEP_S`` is dropped, so a process cannot save up a burst.

Both scripts read Redis's own clock (``TIME``), so hosts with drifting clocks agree. Written by hand
rather than with the ``limits`` package: its strategies grant all or nothing for a whole-number count per
period, and a sender here wants "as many of these as there are now" at a fractional rate; and nothing
well kept offers an expiring counting semaphore for asyncio.

If Redis fails, sends go ahead under the local limits alone (logged): deliveries are not held hostage by
the limiter, and each process still stays within the subscription's limits on its own.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Any

logger = logging.getLogger(__name__)

KEY_PREFIX = "bus:whlimit:"
SLOT_TTL_S = 10.0  # a dead process's slots come back after this long
RENEW_EVERY_S = SLOT_TTL_S / 3
IDLE_RELEASE_S = 0.05  # slots idle this long go back: back-to-back batches keep theirs
TOKEN_KEEP_S = 1.0
POLL_MIN_S, POLL_MAX_S = 0.005, 0.1  # waiting for another process to free a slot
FAILURE_LOG_EVERY_S = 30.0
REDIS_TIMEOUT_S = 2.0

# KEYS[1] slots; ARGV: max in flight, lease ms, candidate names. Drops lapsed leases, adds as many of the
# candidates as there is room for; returns how many (the first n of the candidates).
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local room = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local n = 0
for i = 3, #ARGV do
  if n >= room then break end
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  n = n + 1
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return n
"""

# KEYS[1] slots; ARGV: lease ms, held names. Extends the ones still held; returns the names that are gone.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local gone = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  else
    redis.call('ZREM', KEYS[1], ARGV[i])
    gone[#gone + 1] = ARGV[i]
  end
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return gone
"""

# KEYS[1] theoretical arrival time; ARGV: rate/s, burst, wanted. GCRA: up to ``wanted`` tokens if the bucket
# holds them; returns {granted, seconds to wait for the next token (when none was granted)}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = 1 / tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = math.floor((burst * interval - (tat - now)) / interval + 1e-9)
local n = math.min(tonumber(ARGV[3]), room)
if n < 1 then
  return {0, string.format('%.6f', (tat - now) - (burst - 1) * interval)}
end
tat = tat + n * interval
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
return {n, '0'}
"""


class SharedLimiter:
    """The Redis side: lease/renew/release slots and take tokens (one client per event loop)."""

    def __init__(self, url: str, prefix: str = KEY_PREFIX) -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        # Bounded waits: a Redis that hangs must not hold deliveries (a timeout falls back to local limits).
        self._client: Any = aioredis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                                    socket_connect_timeout=REDIS_TIMEOUT_S)
        self._lease = self._client.register_script(_LEASE)
        self._renew = self._client.register_script(_RENEW)
        self._take = self._client.register_script(_TAKE)
        self._last_failure_log = 0.0

    def slots_key(self, sub_id: str) -> str:
        return f"{self.prefix}{sub_id}:slots"

    def rate_key(self, sub_id: str) -> str:
        return f"{self.prefix}{sub_id}:rate"

    async def lease(self, sub_id: str, max_in_flight: int, names: list[str]) -> int:
        """Lease up to ``len(names)`` slots; how many were free (the first n names are now held)."""
        return int(await self._lease(keys=[self.slots_key(sub_id)],
                                     args=[max_in_flight, int(SLOT_TTL_S * 1000), *names]))

    async def renew(self, sub_id: str, names: list[str]) -> set[str]:
        """Extend the leases of ``names``; the ones that had lapsed (no longer ours)."""
        gone = await self._renew(keys=[self.slots_key(sub_id)], args=[int(SLOT_TTL_S * 1000), *names])
        return {g.decode() if isinstance(g, bytes) else str(g) for g in gone}

    async def release(self, sub_id: str, names: list[str]) -> None:
        """Hand slots back."""
        await self._client.zrem(self.slots_key(sub_id), *names)

    async def take(self, sub_id: str, rate: float, burst: float, wanted: int) -> tuple[int, float]:
        """Up to ``wanted`` rate tokens: (granted, seconds until one is free when none was)."""
        granted, wait = await self._take(keys=[self.rate_key(sub_id)], args=[repr(rate), repr(burst), wanted])
        return int(granted), float(wait)

    def failed(self, what: str, exc: BaseException) -> None:
        """Log a Redis failure, at most every ``FAILURE_LOG_EVERY_S`` (sends go on under local limits)."""
        now = time.monotonic()
        if now - self._last_failure_log >= FAILURE_LOG_EVERY_S:
            self._last_failure_log = now
            logger.warning("shared delivery limits: %s failed (%s); sending under this process's limits", what, exc)

    async def aclose(self) -> None:
        await self._client.aclose()


class SharedSlots:
    """One subscription's in-flight slots as this process holds them: leased in bulk, lent to its sends.

    Taking and giving back a slot held here is plain arithmetic (no lock, no Redis): the hot path of a busy
    subscription. Redis is asked only when sends wait and fewer than ``max`` slots are held here.
    """

    def __init__(self, limiter: SharedLimiter, sub_id: str, max_in_flight: int) -> None:
        self.limiter, self.sub_id, self.max = limiter, sub_id, max_in_flight
        self._tag = uuid.uuid4().hex[:12]
        self._serial = 0
        self._held: list[str] = []  # slot names leased from Redis
        self._local = 0  # slots granted without Redis (it failed): bounded by max like the held ones
        self._in_use = 0
        self._idle_low = 0  # the fewest slots idle since the keeper's last tick: those were not needed
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._leaser: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Slots this process holds (in use or idle)."""
        return len(self._held) + self._local

    async def acquire(self) -> None:
        """Wait for a slot."""
        if self._in_use < self.held and not self._waiters:
            self._take()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._leaser is None or self._leaser.done():
            self._leaser = asyncio.create_task(self._lease_for_waiters())
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back (to a waiting send here first)."""
        self._in_use -= 1
        self._hand_on()

    def _take(self) -> None:
        self._in_use += 1
        self._idle_low = min(self._idle_low, self.held - self._in_use)
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep())

    def _hand_on(self) -> None:
        """Give idle slots to the sends waiting, in arrival order."""
        while self._waiters and self._in_use < self.held:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)

    async def _lease_for_waiters(self) -> None:
        """While sends wait and fewer than ``max`` slots are held here: lease more, polling when none is free."""
        delay = POLL_MIN_S
        while self._waiters:
            want = min(self._in_use + len(self._waiters), self.max) - self.held
            if want <= 0:
                return  # all ``max`` are here and in use: a release hands one on
            names = [self._name() for _ in range(want)]
            try:
                got = await self.limiter.lease(self.sub_id, self.max, names)
            except Exception as exc:  # noqa: BLE001 - Redis away: this process's own cap still holds
                self.limiter.failed("leasing slots", exc)
                self._local += want
                got = want
            else:
                self._held.extend(names[:got])
            self._hand_on()
            if got:
                delay = POLL_MIN_S
                continue
            await asyncio.sleep(delay)  # another process holds them all: ask again (a release here hands on)
            delay = min(delay * 2, POLL_MAX_S)

    def _name(self) -> str:
        self._serial += 1
        return f"{self._tag}:{self._serial}"

    async def _keep(self) -> None:
        """While slots are held: hand back the ones idle for a whole tick (``IDLE_RELEASE_S``), renew the rest."""
        renewed = time.monotonic()
        self._idle_low = self.held - self._in_use
        while self.held:
            await asyncio.sleep(IDLE_RELEASE_S)
            if self._idle_low > 0 and not self._waiters:
                await self._give_back(min(self._idle_low, self.held - self._in_use))
            self._idle_low = self.held - self._in_use
            if self._held and time.monotonic() - renewed >= RENEW_EVERY_S:
                renewed = time.monotonic()
                try:
                    gone = await self.limiter.renew(self.sub_id, list(self._held))
                except Exception as exc:  # noqa: BLE001
                    self.limiter.failed("renewing slots", exc)
                    continue
                if gone:  # lapsed (a stall longer than the lease): someone else may have them now
                    self._held = [n for n in self._held if n not in gone]
                    if self._waiters and (self._leaser is None or self._leaser.done()):
                        self._leaser = asyncio.create_task(self._lease_for_waiters())

    async def _give_back(self, count: int) -> None:
        """Hand back ``count`` idle slots (local ones first: they cost nothing)."""
        local = min(count, self._local)
        self._local -= local
        count -= local
        if count > 0:
            names, self._held = self._held[-count:], self._held[:-count]
            try:
                await self.limiter.release(self.sub_id, names)
            except Exception as exc:  # noqa: BLE001 - their leases end on their own
                self.limiter.failed("releasing slots", exc)

    async def aclose(self) -> None:
        """Hand back every slot held (the process stops sending to this subscription for now)."""
        for task in (self._keeper, self._leaser):
            if task is not None:
                task.cancel()
        self._in_use = 0
        await self._give_back(self.held)


class SharedTokens:
    """One subscription's rate tokens as this process takes them: in bulk, for the sends waiting."""

    def __init__(self, limiter: SharedLimiter, sub_id: str, rate: float) -> None:
        self.limiter, self.sub_id, self.rate = limiter, sub_id, rate
        self.burst = max(1.0, rate)  # as the local TokenBucket
        self._tokens: deque[float] = deque()  # expiry (monotonic) of each token taken and not used yet
        self._waiting = 0
        self._lock = asyncio.Lock()  # FIFO: the first waiter asks Redis for everyone behind it

    async def acquire(self) -> None:
        """Wait for a token and use it."""
        if self._tokens and not self._waiting and self._tokens[0] >= time.monotonic():
            self._tokens.popleft()  # the common case under load: one taken in bulk for us
            return
        self._waiting += 1
        try:
            async with self._lock:
                while True:
                    now = time.monotonic()
                    while self._tokens and self._tokens[0] < now:
                        self._tokens.popleft()  # kept too long: dropped, not saved up into a burst
                    if self._tokens:
                        self._tokens.popleft()
                        return
                    try:
                        got, wait = await self.limiter.take(self.sub_id, self.rate, self.burst,
                                                            max(1, min(self._waiting, int(self.burst))))
                    except Exception as exc:  # noqa: BLE001
                        self.limiter.failed("taking rate tokens", exc)
                        await asyncio.sleep(1.0 / self.rate)  # this process alone at the full rate
                        return
                    until = time.monotonic() + TOKEN_KEEP_S
                    self._tokens.extend([until] * got)
                    if not got:
                        await asyncio.sleep(max(wait, 0.001))
        finally:
            self._waiting -= 1
