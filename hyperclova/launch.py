"""Who am I in this job? Rank, world size, local rank and rendezvous address, from the launcher.

    env = discover()          # before torch.distributed.init_process_group("nccl"/"gloo")

Sources, in order of authority:
- torchrun (or any launcher exporting RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT);
- SLURM tasks started by `srun` (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_JOB_NODELIST),
  unless an MPI launcher counts a different number of ranks (mpirun inside an allocation);
- MPI (`mpiexec`/`mpirun`), through mpi4py: world rank/size, local rank from a shared-memory split,
  rendezvous address and a free port broadcast from rank 0. MPI is imported only when asked for
  (HYPERCLOVA_LAUNCHER=mpi) or when an MPI launcher's variables are present;
- nothing: a single process, world 1, master 127.0.0.1 on a free port.
HYPERCLOVA_LAUNCHER=torchrun|slurm|mpi|single forces a source. For SLURM and MPI the torch env://
variables are exported so that `init_process_group()` needs no arguments.
"""
from __future__ import annotations

import itertools
import os
import re
import socket
from dataclasses import dataclass
from typing import Mapping, MutableMapping

from hyperclova.errors import UserError

SOURCES = ("torchrun", "slurm", "mpi", "single")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Variables set by common MPI launchers: Open MPI, MPICH/Hydra and Intel MPI (PMI), PMIx, MVAPICH.
MPI_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
MPI_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
# Every task of a SLURM job derives the same port from the job id, so no broadcast is needed.
SLURM_PORT_BASE, SLURM_PORT_SPAN = 15000, 20000


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    source: str  # torchrun | slurm | mpi | single

    @property
    def node_rank(self) -> int:
        return self.rank // self.local_world_size

    def torch_env(self) -> dict[str, str]:
        """The variables torch's env:// rendezvous reads."""
        return {"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size),
                "LOCAL_RANK": str(self.local_rank), "LOCAL_WORLD_SIZE": str(self.local_world_size),
                "MASTER_ADDR": self.master_addr, "MASTER_PORT": str(self.master_port)}


def discover(environ: MutableMapping[str, str] | None = None, set_env: bool = True) -> DistEnv:
    """Find this process's place in the job; raise UserError when the sources are incomplete or
    disagree. With set_env, export RANK/WORLD_SIZE/... into `environ` (default os.environ)."""
    environ = os.environ if environ is None else environ
    source = _choose_source(environ)
    if source == "torchrun":
        env = from_torchrun(environ)
    elif source == "slurm":
        env = from_slurm(environ)
    elif source == "mpi":
        env = from_mpi(environ)
    else:
        env = single(environ)
    _check_agreement(env, environ)
    if set_env and source != "torchrun":
        environ.update(env.torch_env())
    return env


def _choose_source(environ: Mapping[str, str]) -> str:
    forced = environ.get("HYPERCLOVA_LAUNCHER", "").strip().lower()
    if forced and forced != "auto":
        if forced not in SOURCES:
            raise UserError(f"HYPERCLOVA_LAUNCHER={forced!r} is not one of auto, {', '.join(SOURCES)}")
        return forced
    if any(k in environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID")):
        return "torchrun"
    if "SLURM_PROCID" in environ and _slurm_in_step(environ):
        # mpirun inside an allocation starts its daemons with srun, so its ranks inherit SLURM
        # variables that count nodes, not ranks: then the MPI launcher's own count wins.
        mpi_size = next((environ[k] for k in MPI_SIZE_VARS if environ.get(k)), None)
        slurm_size = environ.get("SLURM_NTASKS") or environ.get("SLURM_NPROCS")
        return "mpi" if mpi_size and mpi_size != slurm_size else "slurm"
    if any(k in environ for k in MPI_MARKERS):
        return "mpi"
    return "single"


def _int(environ: Mapping[str, str], key: str, source: str) -> int:
    raw = environ.get(key)
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{source}: environment variable {key}={raw!r} is not an integer") from None


def _port(raw: str, key: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UserError(f"{key}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def _validate(env: DistEnv) -> DistEnv:
    if env.world_size < 1 or not 0 <= env.rank < env.world_size:
        raise UserError(f"{env.source}: rank {env.rank} is outside world size {env.world_size}")
    if env.local_world_size < 1 or not 0 <= env.local_rank < env.local_world_size:
        raise UserError(f"{env.source}: local rank {env.local_rank} is outside local world size "
                        f"{env.local_world_size}")
    return env


# --- torchrun ----------------------------------------------------------------------------------


def from_torchrun(environ: Mapping[str, str]) -> DistEnv:
    missing = [k for k in TORCHRUN_VARS if not environ.get(k)]
    if missing:
        raise UserError(f"torchrun-style launch is incomplete: {', '.join(missing)} not set (found "
                        f"{', '.join(k for k in TORCHRUN_VARS if k not in missing) or 'none'}); "
                        "start with torchrun or set all of " + ", ".join(TORCHRUN_VARS))
    world = _int(environ, "WORLD_SIZE", "torchrun")
    local_world = (_int(environ, "LOCAL_WORLD_SIZE", "torchrun")
                   if environ.get("LOCAL_WORLD_SIZE") else world)
    return _validate(DistEnv(
        rank=_int(environ, "RANK", "torchrun"), world_size=world,
        local_rank=_int(environ, "LOCAL_RANK", "torchrun"), local_world_size=local_world,
        master_addr=environ["MASTER_ADDR"], master_port=_port(environ["MASTER_PORT"], "MASTER_PORT"),
        source="torchrun"))


# --- SLURM -------------------------------------------------------------------------------------


def _slurm_in_step(environ: Mapping[str, str]) -> bool:
    # The batch script itself also sees SLURM_PROCID=0 and SLURM_NTASKS=N; only tasks started by
    # srun carry a step id. Treating the batch shell as rank 0 of N would hang at rendezvous.
    return "SLURM_STEP_ID" in environ or "SLURM_STEPID" in environ


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand SLURM's compressed host list: 'node[01-04,07],gpu-a[1-2]-ib' -> hosts in order.

    Zero padding is kept ('01-04' gives 01, 02, 03, 04); several bracket groups in one name expand
    as a product, as `scontrol show hostnames` does.
    """
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip(), nodelist):
        parts = re.split(r"(\[[^\]]*\])", item)
        choices = [_expand_range(p[1:-1], nodelist) if p.startswith("[") else [p] for p in parts]
        hosts.extend("".join(combo) for combo in itertools.product(*choices))
    if not hosts:
        raise UserError(f"SLURM_JOB_NODELIST={nodelist!r} names no hosts")
    return hosts


def _split_top_level(text: str, whole: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if depth not in (0, 1):
            raise UserError(f"SLURM_JOB_NODELIST={whole!r}: unbalanced brackets")
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise UserError(f"SLURM_JOB_NODELIST={whole!r}: unbalanced brackets")
    items.append(text[start:])
    return [s for s in items if s]


def _expand_range(spec: str, whole: str) -> list[str]:
    out = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise UserError(f"SLURM_JOB_NODELIST={whole!r}: cannot read range {part!r}")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        if int(hi) < int(lo):
            raise UserError(f"SLURM_JOB_NODELIST={whole!r}: range {part!r} runs backwards")
        out.extend(str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1))
    return out


def _slurm_tasks_per_node(environ: Mapping[str, str], world: int) -> int:
    """Tasks on this node: SLURM_NTASKS_PER_NODE, else the first entry of SLURM_TASKS_PER_NODE
    ('8(x4)' or '8,8'), else the whole world when there is one node."""
    if environ.get("SLURM_NTASKS_PER_NODE"):
        return _int(environ, "SLURM_NTASKS_PER_NODE", "slurm")
    spec = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
    if spec:
        per_node = [n for part in spec.split(",") for n in _repeat(part, spec)]
        node_id = int(environ.get("SLURM_NODEID", "0") or 0)
        return per_node[node_id] if node_id < len(per_node) else per_node[0]
    if environ.get("SLURM_NNODES", "1") == "1":
        return world
    raise UserError("slurm: cannot tell the tasks per node: set --ntasks-per-node in the job")


def _repeat(part: str, spec: str) -> list[int]:
    m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
    if not m:
        raise UserError(f"slurm: cannot read SLURM_TASKS_PER_NODE={spec!r}")
    return [int(m.group(1))] * int(m.group(2) or 1)


def from_slurm(environ: Mapping[str, str]) -> DistEnv:
    needed = ("SLURM_PROCID", "SLURM_LOCALID")
    missing = [k for k in needed if not environ.get(k)]
    if not (environ.get("SLURM_NTASKS") or environ.get("SLURM_NPROCS")):
        missing.append("SLURM_NTASKS")
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") \
        or environ.get("SLURM_NODELIST")
    if not nodelist and not environ.get("MASTER_ADDR"):
        missing.append("SLURM_JOB_NODELIST")
    if missing:
        raise UserError(f"slurm launch is incomplete: {', '.join(missing)} not set; start each "
                        "task with srun inside an allocation (see launch/slurm.sbatch)")
    if not _slurm_in_step(environ):
        raise UserError("slurm: this process is the batch script, not an srun task (no "
                        "SLURM_STEP_ID); start the trainer with `srun python -m hyperclova.train ...`")
    world = _int(environ, "SLURM_NTASKS" if environ.get("SLURM_NTASKS") else "SLURM_NPROCS", "slurm")
    if environ.get("MASTER_PORT"):
        port = _port(environ["MASTER_PORT"], "MASTER_PORT")
    else:
        job = _int(environ, "SLURM_JOB_ID", "slurm") if environ.get("SLURM_JOB_ID") else 0
        port = SLURM_PORT_BASE + job % SLURM_PORT_SPAN
    return _validate(DistEnv(
        rank=_int(environ, "SLURM_PROCID", "slurm"), world_size=world,
        local_rank=_int(environ, "SLURM_LOCALID", "slurm"),
        local_world_size=_slurm_tasks_per_node(environ, world),
        master_addr=environ.get("MASTER_ADDR") or expand_nodelist(nodelist)[0],
        master_port=port, source="slurm"))


# --- MPI ---------------------------------------------------------------------------------------


def from_mpi(environ: Mapping[str, str]) -> DistEnv:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise UserError(f"MPI launch needs mpi4py ({e}); install the extra: pip install "
                        "'hyperclova[mpi]'") from None
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)  # the ranks sharing this host's memory
    local_rank, local_world = node.Get_rank(), node.Get_size()
    node.Free()
    addr = port = None
    if rank == 0:
        addr = environ.get("MASTER_ADDR") or ("127.0.0.1" if local_world == world
                                              else socket.gethostname())
        port = _port(environ["MASTER_PORT"], "MASTER_PORT") if environ.get("MASTER_PORT") \
            else free_port()
    addr, port = comm.bcast((addr, port), root=0)
    return _validate(DistEnv(rank=rank, world_size=world, local_rank=local_rank,
                             local_world_size=local_world, master_addr=addr, master_port=port,
                             source="mpi"))


# --- single process ----------------------------------------------------------------------------


def single(environ: Mapping[str, str]) -> DistEnv:
    port = _port(environ["MASTER_PORT"], "MASTER_PORT") if environ.get("MASTER_PORT") else free_port()
    return DistEnv(rank=0, world_size=1, local_rank=0, local_world_size=1,
                   master_addr=environ.get("MASTER_ADDR") or "127.0.0.1", master_port=port,
                   source="single")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# --- cross-checks ------------------------------------------------------------------------------


def _check_agreement(env: DistEnv, environ: Mapping[str, str]) -> None:
    """Other launchers' variables that describe the same processes must tell the same story."""
    checks = []
    if env.source != "torchrun":
        checks += [("RANK", env.rank), ("WORLD_SIZE", env.world_size), ("LOCAL_RANK", env.local_rank)]
    if env.source != "slurm" and _slurm_in_step(environ) and environ.get("SLURM_NTASKS") \
            and environ.get("SLURM_PROCID") and environ["SLURM_NTASKS"] == str(env.world_size):
        # one SLURM task per rank (srun without torchrun): SLURM's numbering must match.
        checks += [("SLURM_PROCID", env.rank)]
    if env.source != "mpi":
        for key, val in (("OMPI_COMM_WORLD_SIZE", env.world_size), ("PMI_SIZE", env.world_size)):
            if environ.get(key) and env.source != "single":
                checks.append((key, val))
    for key, expected in checks:
        raw = environ.get(key)
        if raw is not None and raw != "" and raw != str(expected):
            raise UserError(f"launchers disagree: {env.source} says {key.lower()}={expected} but "
                            f"{key}={raw}; unset the stale variable or set HYPERCLOVA_LAUNCHER")
