"""A real one-node SLURM cluster on this machine, for the tests that run the workflow on it.

Debian's ``slurm-wlm``, ``slurmdbd``, ``munge`` and ``mariadb-server`` are installed with
apt-get when missing. :class:`LocalSlurm` then starts, all on 127.0.0.1 and with every
state, spool, log and database file in one temporary folder:

* ``munged`` with its own key and socket;
* MariaDB and ``slurmdbd`` - the accounting database. ``sacct`` reads jobs from slurmdbd
  only: with ``AccountingStorageType=accounting_storage/none`` Debian's Slurm 22.05
  answers "Slurm accounting storage is disabled", and ``JobCompType=jobcomp/filetxt``
  writes a text file that ``sacct`` does not read (its ``--completion`` option is gone);
* ``slurmctld`` and ``slurmd`` for one node (``slurmd -C``'s CPUs and memory) with
  ``select/cons_tres`` and the partitions asked for, all on that node.

The configuration is written to Slurm's default path, ``/etc/slurm/slurm.conf``, and
removed again at the end: the Snakemake SLURM executor runs each job's command through
``srun`` with every ``SLURM_*`` variable but a few removed (``SLURM_CONF`` among them),
so a configuration anywhere else is not found inside the jobs. A machine that already
has its own ``slurm.conf`` is left alone (the caller skips).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by the vscreen tests (tests/slurm_local.py); removed when they end"
PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server")
COMMANDS = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mariadbd", "mariadb-install-db")
DB_USER, DB_PASSWORD = "slurm", "vscreen-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable_reason() -> str | None:
    """Why a local SLURM cluster cannot be had here (``None``: it can, installing what is missing).

    Raises
    ------
    RuntimeError
        When apt-get is there and running as root, but installing the packages fails.
    """
    if os.geteuid() != 0:
        return "starting slurmd and munged needs root, and this test is not running as root"
    if DEFAULT_CONF.exists() and MARKER not in DEFAULT_CONF.read_text(errors="replace"):
        return f"this machine has its own SLURM configuration ({DEFAULT_CONF}); the test does not replace it"
    if all(shutil.which(c) for c in COMMANDS):
        return None
    if not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install Debian's slurm-wlm and munge"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    missing = [c for c in COMMANDS if not shutil.which(c)]
    if missing:
        raise RuntimeError(f"installed {', '.join(PACKAGES)} but these commands are still missing: {missing}")
    return None


class LocalSlurm:
    """munged, MariaDB, slurmdbd, slurmctld and slurmd for one node, under ``root``.

    Parameters
    ----------
    root
        An empty folder for keys, sockets, state, spool, logs and the database.
    partitions
        Partition names, all on the one node; the first is the default.
    cluster
        ``ClusterName`` (what ``sacct --clusters`` shows).
    """

    def __init__(self, root: Path, partitions: Sequence[str] = ("cpu",), cluster: str = "vscreen"):
        self.root, self.partitions, self.cluster = Path(root), list(dict.fromkeys(partitions)), cluster
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {name: _free_port() for name in ("slurmctld", "slurmd", "slurmdbd", "mariadb")}
        self.node = ""

    # ------------------------------------------------------------------ config

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    def _node_line(self) -> str:
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
        line = out.splitlines()[0].strip()
        self.node = line.split()[0].split("=", 1)[1]
        return f"{line} NodeAddr=127.0.0.1 State=UNKNOWN"

    def slurm_conf(self) -> str:
        """The text of slurm.conf."""
        r, p = self.root, self.ports
        node = self._node_line()
        partitions = [
            f"PartitionName={name} Nodes={self.node} Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE State=UP"
            for i, name in enumerate(self.partitions)
        ]
        return "\n".join(
            [
                MARKER,
                f"ClusterName={self.cluster}",
                f"SlurmctldHost={self.node}(127.0.0.1)",
                f"SlurmctldPort={p['slurmctld']}",
                f"SlurmdPort={p['slurmd']}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={self.munge_socket}",
                f"StateSaveLocation={r}/state",
                f"SlurmdSpoolDir={r}/spool",
                f"SlurmctldPidFile={r}/slurmctld.pid",
                f"SlurmdPidFile={r}/slurmd.pid",
                f"SlurmctldLogFile={r}/log/slurmctld.log",
                f"SlurmdLogFile={r}/log/slurmd.log",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "MpiDefault=none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "DefMemPerCPU=1000",
                "SchedulerType=sched/backfill",
                "ReturnToService=2",
                "MinJobAge=600",
                "JobAcctGatherType=jobacct_gather/linux",
                "JobAcctGatherFrequency=30",
                # sacct reads slurmdbd; the munge socket for that connection is AccountingStoragePass
                "AccountingStorageType=accounting_storage/slurmdbd",
                "AccountingStorageHost=127.0.0.1",
                f"AccountingStoragePort={p['slurmdbd']}",
                f"AccountingStoragePass={self.munge_socket}",
                "AccountingStoreFlags=job_comment",  # the Snakemake executor names the rule in the comment
                node,
                *partitions,
                "",
            ]
        )

    def slurmdbd_conf(self) -> str:
        """The text of slurmdbd.conf."""
        r, p = self.root, self.ports
        return "\n".join(
            [
                "AuthType=auth/munge",
                f"AuthInfo=socket={self.munge_socket}",
                "DbdHost=localhost",
                "DbdAddr=127.0.0.1",
                f"DbdPort={p['slurmdbd']}",
                "SlurmUser=root",
                "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1",
                f"StoragePort={p['mariadb']}",
                f"StorageUser={DB_USER}",
                f"StoragePass={DB_PASSWORD}",
                "StorageLoc=slurm_acct_db",
                f"LogFile={r}/log/slurmdbd.log",
                f"PidFile={r}/slurmdbd.pid",
                "",
            ]
        )

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, cmd: list[str], env: dict | None = None) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(
            ["nice", "-n", "10", *cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.root,
            start_new_session=True,
        )

    def _wait(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ready():
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}\n{self.logs()}")
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}\n{self.logs()}")

    def _run(self, *cmd: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, env=env, cwd=self.root)

    def start(self) -> LocalSlurm:
        """Start every daemon and wait until the node is idle in every partition."""
        r = self.root
        for sub in ("munge", "state", "spool", "log", "db"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        (r / "slurm.conf").write_text(self.slurm_conf())
        (r / "slurmdbd.conf").write_text(self.slurmdbd_conf())
        os.chmod(r / "slurmdbd.conf", 0o600)
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(r / "slurm.conf", DEFAULT_CONF)

        key = r / "munge" / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        os.chmod(key, 0o400)
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={r}/munge/munged.pid",
                f"--log-file={r}/log/munged.log",
                f"--seed-file={r}/munge/munged.seed",
                "--num-threads=4",
            ],
        )
        self._wait("munged", self.munge_socket.exists)

        installed = self._run(
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={r}/db",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        )
        if installed.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{installed.stdout[-2000:]}{installed.stderr[-2000:]}")
        sql_socket = r / "mariadb.sock"
        self._spawn(
            "mariadb",
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={r}/db",
                f"--socket={sql_socket}",
                f"--port={self.ports['mariadb']}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={r}/mariadb.pid",
                f"--log-error={r}/log/mariadb.log",
                "--innodb-buffer-pool-size=64M",
            ],
        )
        self._wait("MariaDB", sql_socket.exists)
        grants = "".join(
            f"CREATE USER '{DB_USER}'@'{h}' IDENTIFIED BY '{DB_PASSWORD}'; "
            f"GRANT ALL ON slurm_acct_db.* TO '{DB_USER}'@'{h}'; "
            for h in ("127.0.0.1", "localhost")
        )
        self._wait(
            "MariaDB accepting SQL",
            lambda: self._run("mariadb", f"--socket={sql_socket}", "-u", "root", "-e", grants).returncode == 0,
        )

        self._spawn("slurmdbd", ["slurmdbd", "-D"], env=dict(os.environ, SLURM_CONF=str(r / "slurm.conf")))
        self._wait("slurmdbd", lambda: self._run("sacctmgr", "-n", "list", "cluster").returncode == 0)
        added = self._run("sacctmgr", "-i", "add", "cluster", self.cluster)
        if added.returncode != 0 and "already exists" not in added.stdout + added.stderr:
            raise RuntimeError(f"sacctmgr add cluster failed: {added.stdout}{added.stderr}")

        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._spawn("slurmd", ["slurmd", "-D"])
        self._wait("the node to be idle", self._idle, timeout=120)
        return self

    def _idle(self) -> bool:
        out = self._run("sinfo", "--noheader", "--format=%P %t").stdout.split()
        return len(out) == 2 * len(self.partitions) and all(s == "idle" for s in out[1::2])

    def stop(self) -> None:
        """Cancel every job, stop the daemons, remove /etc/slurm/slurm.conf and the database."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self._run("scancel", "--user", "root", "--full")
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadb", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if DEFAULT_CONF.exists() and MARKER in DEFAULT_CONF.read_text(errors="replace"):
            DEFAULT_CONF.unlink()
        shutil.rmtree(self.root / "db", ignore_errors=True)

    # ------------------------------------------------------------------ queries

    def sacct(self, *fields: str, since: str = "now-1days") -> list[dict[str, str]]:
        """Every job (allocations only, no steps) since ``since``, as dicts of ``fields``."""
        out = self._run(
            "sacct",
            "--allusers",
            "-X",
            "--parsable2",
            "--noheader",
            f"--starttime={since}",
            "--format=" + ",".join(f"{f}%200" for f in fields),
        )
        if out.returncode != 0:
            raise RuntimeError(f"sacct failed: {out.stderr}")
        return [dict(zip(fields, line.split("|"))) for line in out.stdout.splitlines() if line.strip()]

    def logs(self) -> str:
        """The tail of every daemon log, for failure messages."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)
