"""Answering within Slack's deadline: ack with the reply when it is quick, else ack now and respond later."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from slack_bolt import Respond

from bot.daemon_pool import DaemonThreadPool
from bot.errors import BotError
from bot.ports import NO_METRICS, Metrics
from bot.slack.chatops import Reply

log = logging.getLogger(__name__)

# Slack drops a command not acked within 3 s; what is not done by then is answered later.
ACK_BUDGET_SECONDS = 2.0
WORKING_TEXT = "⏳ Working on it…"
FAULT_TEXT = "Something went wrong inside the robot; the details are in its log."

Work = Callable[[], Reply]
AckFn = Callable[..., object]
"""Bolt's ack, or anything called like it."""


class Answerer:
    """Runs each command's or click's work on a small pool and answers through Bolt's ack / respond.

    A BotError raised by the work (or given to ``refuse``) is the user's answer, not a fault.
    """

    def __init__(self, workers: int = 2, metrics: Metrics = NO_METRICS) -> None:
        self._metrics = metrics
        # Daemon threads: work still waiting on GitHub at shutdown must not hold the exit.
        self._executor = DaemonThreadPool(workers, "answer")
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._owed = 0  # commands and clicks taken whose answer is not sent yet
        self._settled = threading.Condition()

    def settle(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every command and click taken has had its answer
        sent; True if so. At shutdown: a user who was told "working on it" hears the rest."""
        with self._settled:
            return self._settled.wait_for(lambda: self._owed == 0, timeout)

    def _owe(self) -> None:
        with self._settled:
            self._owed += 1

    def _paid(self) -> None:
        with self._settled:
            self._owed -= 1
            self._settled.notify_all()

    def _respond_later(self, respond: Respond) -> Callable[[Future[Reply]], None]:
        """The done-callback that sends a late answer, and then counts it sent."""

        def answer(done: Future[Reply]) -> None:
            try:
                _respond_later(done, respond)
            finally:
                self._paid()

        return answer

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def refuse(self, error: BotError, ack: AckFn) -> None:
        """Ack with the error at once (a command Slack's text could not even be parsed into)."""
        received = time.monotonic()
        ack(**Reply.error(error).as_kwargs())
        self._metrics.ack_sent(time.monotonic() - received)

    def command(self, work: Work, ack: AckFn, respond: Respond, budget: float = ACK_BUDGET_SECONDS) -> None:
        """Ack with the reply if it is ready within ``budget``, else ack now and respond later.

        While other commands are in flight the ack goes at once: under a burst, waiting for each
        answer would make every ack queue behind the others' work (one GIL), and an ack is what
        Slack times.
        """
        received = time.monotonic()
        with self._in_flight_lock:
            busy = self._in_flight > 0
            self._in_flight += 1
        self._owe()
        future = self._executor.submit(_safely, work)
        future.add_done_callback(self._done)
        try:
            reply = future.result(timeout=0 if busy else budget)
        except FutureTimeout:
            try:
                ack(text=WORKING_TEXT, response_type="ephemeral")
            finally:
                future.add_done_callback(self._respond_later(respond))
            self._metrics.ack_sent(time.monotonic() - received)
            return
        except Exception:
            # Not a BotError: a robot bug, logged in full. The user still gets an ack (else Slack
            # shows its own error), saying honestly that something went wrong.
            log.exception("command failed")
            reply = Reply.error(FAULT_TEXT)
        try:
            ack(**reply.as_kwargs())
        finally:
            self._paid()
        self._metrics.ack_sent(time.monotonic() - received)

    def later(self, work: Work, ack: AckFn, respond: Respond) -> None:
        """A command known to be slow (it asks GitHub): ack "working" first, then do the work."""
        received = time.monotonic()
        ack(text=WORKING_TEXT, response_type="ephemeral")
        self._metrics.ack_sent(time.monotonic() - received)
        self._owe()
        future = self._executor.submit(_safely, work)
        future.add_done_callback(self._respond_later(respond))

    def click(self, work: Work, ack: AckFn, respond: Respond) -> None:
        """Buttons are acked empty at once; the answer follows as an ephemeral message."""
        received = time.monotonic()
        ack()
        self._metrics.ack_sent(time.monotonic() - received)
        self._owe()
        future = self._executor.submit(_safely, work)
        future.add_done_callback(self._respond_later(respond))

    def _done(self, future: Future[Reply]) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1


def _safely(work: Work) -> Reply:
    try:
        return work()
    except BotError as exc:
        return Reply.error(exc)


def _respond_later(done: Future[Reply], respond: Respond) -> None:
    error = done.exception()
    if error is not None:
        # Not a BotError: a robot bug. Log it in full; tell the user honestly and briefly.
        log.error("command failed", exc_info=error)
        reply = Reply.error(FAULT_TEXT)
    else:
        reply = done.result()
    # A payload without a response_url gets a Bolt Respond that can only raise: nobody to
    # answer, and no robot fault either.
    if respond.response_url is None:
        log.warning("no response_url to answer on; the answer is dropped")
        return
    try:
        sent = respond(replace_original=False, **reply.as_kwargs())
    except Exception:  # the answer path itself failed (Slack down): nothing more to tell anyone
        log.exception("could not answer through response_url")
        return
    if sent.status_code != 200:
        # Slack refused the post (used or expired url): nobody else will ever say so.
        log.warning("Slack refused the answer on response_url: %s %s", sent.status_code, sent.body)
