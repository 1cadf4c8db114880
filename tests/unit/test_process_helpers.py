"""The rig's process and lock helpers (psutil, filelock) on real processes: no network, no broker."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cotwatch_local import file_lock, pid_alive, terminate_pid


def test_a_running_process_is_alive_only_under_its_own_command_line() -> None:
    # Given a process in its own session, as the rig starts services
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        # Then it is alive, and a pidfile naming another program does not match it
        assert pid_alive(process.pid)
        assert pid_alive(process.pid, cmdline_marker="time.sleep(60)")
        assert not pid_alive(process.pid, cmdline_marker="kafka.Kafka")
    finally:
        process.kill()
        process.wait()


def test_terminate_stops_the_process_and_reaps_it() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)

    assert terminate_pid(process.pid, timeout=5.0)

    assert not pid_alive(process.pid)


def test_a_process_ignoring_sigterm_is_killed() -> None:
    # Given a process that ignores SIGTERM
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"

    # When it is terminated with a short grace period, Then SIGKILL ends it
    started = time.monotonic()
    assert terminate_pid(process.pid, timeout=0.5, kill_timeout=5.0)
    assert time.monotonic() - started < 5.0
    assert not pid_alive(process.pid)  # killed and reaped long before its sleep(60) ends


def test_an_exited_unreaped_child_is_not_alive() -> None:
    # Given a child that exited and that nobody has waited for (a zombie)
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while pid_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)

    # Then it counts as gone, and terminating it succeeds at once
    assert not pid_alive(process.pid)
    assert terminate_pid(process.pid, timeout=1.0)


def test_the_lock_excludes_another_process(tmp_path: Path) -> None:
    lock = tmp_path / "state" / "service.lock"
    probe = (
        "import sys, filelock\n"
        "try:\n    filelock.FileLock(sys.argv[1]).acquire(timeout=0.2)\n"
        "except filelock.Timeout:\n    sys.exit(3)\n"
    )
    # Given the lock held here
    with file_lock(lock):
        # Then another process cannot take it
        assert subprocess.run([sys.executable, "-c", probe, str(lock)], check=False).returncode == 3
    # And once released it can
    assert subprocess.run([sys.executable, "-c", probe, str(lock)], check=False).returncode == 0
