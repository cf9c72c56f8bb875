"""SIGTERM and Ctrl-C reach the sweep only where it waits: never in the middle of a storage
call, whose abandoned SQLite cursor would lock every later write."""
import os
import signal

import pytest

from charmlp.sweep.interrupts import SweepInterrupted, handled, shield


def signal_self(sig=signal.SIGTERM):
    os.kill(os.getpid(), sig)
    for _ in range(1000):  # the handler runs between bytecodes, soon after the kill
        pass


def test_a_signal_while_shielded_waits_for_the_next_wait():
    reached = []
    with pytest.raises(SweepInterrupted, match="SIGTERM"):
        with handled():
            signal_self()
            reached.append("after the signal")  # e.g. the rest of a storage write
            with shield(False):  # a wait for a slot
                reached.append("inside the wait")
    assert reached == ["after the signal"]


def test_a_signal_while_waiting_raises_at_once():
    with pytest.raises(KeyboardInterrupt, match="SIGINT") as e:
        with handled():
            with shield(False):
                signal_self(signal.SIGINT)
                pytest.fail("the wait went on after Ctrl-C")
    assert isinstance(e.value, SweepInterrupted)


def test_a_storage_call_inside_a_wait_is_shielded_and_the_signal_raises_after_it():
    steps = []
    with pytest.raises(SweepInterrupted):
        with handled():
            with shield(False):  # an inline trial training
                with shield():  # its pruning report to the storage
                    signal_self()
                    steps.append("report written")
                steps.append("training went on")
    assert steps == ["report written"]


def test_a_signal_noted_at_the_end_still_stops_and_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(SweepInterrupted):
        with handled():
            signal_self()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with handled():  # a new sweep in this process starts with nothing pending
        pass
