"""ekmd and ekm as processes, for the Python harnesses (stdlib only). The twin of start_ekmd,
stop_ekmd and the ekm wrapper in tests/integration/lib.sh.

    d = Ekmd(ekmd_binary, data_dir, log_path, args=[...], env={...})   # started, listening
    d.url, d.port, d.pid
    d.kill9()                    # a crash on purpose: no exit status to check
    problems = d.stop()          # SIGTERM, wait, [] when it exited 0 with a clean log
    problems = ekm_problems(subprocess.run([ekm, ...], capture_output=True))

stop() is the check every harness must make at the end: ekmd's exit status after SIGTERM is 0
(not a signal, not a sanitizer's non-zero exit, not a hang) and its log holds no sanitizer
report and no abort or terminate message. Each problem names the process and carries the tail
of its log.
"""

import os
import re
import signal
import subprocess
import time
import urllib.request

# What a process writes when it dies badly: AddressSanitizer, LeakSanitizer, UndefinedBehavior-
# Sanitizer ("runtime error:"), ThreadSanitizer, std::terminate, assert() and glibc's aborts.
CRASH_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                  "WARNING: ThreadSanitizer", "ThreadSanitizer:", "AddressSanitizer:",
                  "terminate called", "Assertion `", "pure virtual method called",
                  "stack smashing detected", "free(): ", "double free or corruption")


def crash_report(text):
    """The first line of `text` that shows a crash or sanitizer report, or None."""
    for line in text.splitlines():
        if any(p in line for p in CRASH_PATTERNS):
            return line
    return None


def ekm_problems(run, what="ekm"):
    """[] unless a finished ekm (a subprocess.CompletedProcess with its stderr captured)
    crashed: killed by a signal (or exited 128+, as a shell reports one) or wrote a sanitizer
    report or abort message, whatever it was expected to answer."""
    problems = []
    if run.returncode < 0 or run.returncode >= 128:
        problems.append("%s: crashed (exit status %d)" % (what, run.returncode))
    err = run.stderr.decode("utf-8", "replace") if isinstance(run.stderr, bytes) else run.stderr
    line = crash_report(err or "")
    if line:
        problems.append("%s: %s\n%s" % (what, line, (err or "")[-3000:]))
    return problems


class Ekmd:
    """One ekmd process on 127.0.0.1, port chosen by the kernel. Raises RuntimeError (with the
    log) when it does not start listening within `start_timeout` seconds."""

    def __init__(self, binary, data_dir, log_path, args=(), env=None, name="ekmd",
                 start_timeout=30, preexec_fn=None):
        self.name = name
        self.data_dir = data_dir
        self.log_path = log_path
        self.problems_seen = []
        self.log = open(log_path, "w")
        argv = [binary, "--data-dir", data_dir, "--listen", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self.port, self.scheme = None, "http"
        deadline = time.time() + start_timeout
        while time.time() < deadline:
            m = re.search(r"listening on (https?)://127\.0\.0\.1:(\d+)", self.log_text())
            if m:
                self.scheme, self.port = m.group(1), int(m.group(2))
                if self.scheme == "https" or self._healthy():
                    break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        else:
            self.port = None
        if self.port is None or self.proc.poll() is not None:
            self.kill9()
            raise RuntimeError("%s did not start:\n%s" % (name, self.log_text()[-3000:]))
        self.url = "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def _healthy(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % self.port,
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def running(self):
        return self.proc.poll() is None

    def kill9(self):
        """kill -9 (a crash on purpose). Its log is still checked for reports made before."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()

    def stop(self, timeout=30):
        """SIGTERM, then wait: the problems found ([] when ekmd exited 0 with a clean log)."""
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("%s: still running %d s after SIGTERM (killed)" %
                                (self.name, timeout))
            rc = self.proc.returncode
            if rc != 0 and not problems:
                how = "killed by signal %d" % -rc if rc < 0 else "exit status %d" % rc
                problems.append("%s: %s after SIGTERM" % (self.name, how))
        else:
            problems.append("%s: was no longer running at the end (exit status %s)" %
                            (self.name, self.proc.returncode))
        self.log.close()
        text = self.log_text()
        line = crash_report(text)
        if line:
            problems.append("%s: its log has a crash report: %s" % (self.name, line))
        if problems:
            problems[-1] += "\n--- %s (%s), last lines ---\n%s" % (
                self.name, self.log_path, "\n".join(text.splitlines()[-40:]))
        return problems

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.kill9()
        return False


def isolated_env(home, **extra):
    """os.environ without AWS_* and EKM_* (nothing may reach a real AWS account or another
    ekm), HOME a temp dir, the instance metadata service off; plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and not k.startswith("EKM_")}
    env.update({"HOME": home, "AWS_EC2_METADATA_DISABLED": "true"})
    env.update(extra)
    return env
