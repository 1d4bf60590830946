"""Rank discovery from torchrun, SLURM and single-process environments (simulated variables)."""
import pytest

from hyperclova.errors import UserError
from hyperclova.launch import discover, expand_nodelist

TORCHRUN = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x"}
SLURM = {"SLURM_PROCID": "13", "SLURM_NTASKS": "16", "SLURM_LOCALID": "5", "SLURM_NODEID": "1",
         "SLURM_TASKS_PER_NODE": "8(x2)", "SLURM_JOB_NODELIST": "node[01-04,07]",
         "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NNODES": "2"}


@pytest.mark.parametrize("text,hosts", [
    ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
    ("gpu7", ["gpu7"]),
    ("a[1-2],b3,c[009-011]", ["a1", "a2", "b3", "c009", "c010", "c011"]),
    ("dgx-[1,3]-ib", ["dgx-1-ib", "dgx-3-ib"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
])
def test_expand_nodelist(text, hosts):
    assert expand_nodelist(text) == hosts


@pytest.mark.parametrize("bad", ["node[01-04", "node[4-1]", "node[a-b]", ""])
def test_bad_nodelist_is_a_user_error(bad):
    with pytest.raises(UserError, match="SLURM_JOB_NODELIST"):
        expand_nodelist(bad)


def test_torchrun():
    env = dict(TORCHRUN)
    d = discover(env)
    assert (d.rank, d.world_size, d.local_rank, d.local_world_size, d.node_rank) == (3, 8, 1, 2, 1)
    assert (d.master_addr, d.master_port, d.source) == ("10.0.0.1", 29500, "torchrun")
    assert env == TORCHRUN  # torchrun's own variables are left alone


def test_torchrun_incomplete_names_missing_vars():
    env = {"RANK": "0", "WORLD_SIZE": "2"}
    with pytest.raises(UserError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT"):
        discover(env)


def test_slurm_sets_torch_env():
    env = dict(SLURM)
    d = discover(env)
    assert (d.rank, d.world_size, d.local_rank, d.local_world_size, d.source) == (13, 16, 5, 8, "slurm")
    assert d.master_addr == "node01" and d.master_port == 15000 + 4242
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["MASTER_ADDR"],
            env["MASTER_PORT"]) == ("13", "16", "5", "node01", "19242")
    # every task derives the same rendezvous without talking to the others
    other = dict(SLURM, SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0")
    assert (discover(other).master_addr, discover(other).master_port) == (d.master_addr, d.master_port)


def test_slurm_uneven_tasks_per_node():
    env = dict(SLURM, SLURM_TASKS_PER_NODE="8,4", SLURM_NTASKS="12", SLURM_PROCID="9",
               SLURM_LOCALID="1", SLURM_NODEID="1")
    assert discover(env).local_world_size == 4


def test_slurm_batch_shell_is_refused():
    env = {k: v for k, v in SLURM.items() if k != "SLURM_STEP_ID"}
    env["HYPERCLOVA_LAUNCHER"] = "slurm"
    with pytest.raises(UserError, match="srun"):
        discover(env)


def test_slurm_incomplete():
    env = {"SLURM_PROCID": "0", "SLURM_STEP_ID": "0"}
    with pytest.raises(UserError, match="SLURM_LOCALID, SLURM_NTASKS, SLURM_JOB_NODELIST"):
        discover(env)


def test_torchrun_per_node_under_slurm_is_fine_but_disagreement_is_not():
    # torchrun started once per node by srun: SLURM counts nodes, torchrun counts GPUs
    env = dict(TORCHRUN, SLURM_PROCID="1", SLURM_NTASKS="4", SLURM_LOCALID="0", SLURM_STEP_ID="0")
    assert discover(env).source == "torchrun"
    # one SLURM task per rank, but RANK says otherwise: a stale variable
    env = dict(TORCHRUN, SLURM_PROCID="2", SLURM_NTASKS="8", SLURM_LOCALID="0", SLURM_STEP_ID="0")
    with pytest.raises(UserError, match="disagree"):
        discover(env)


def test_forced_source_that_disagrees_with_rank():
    env = dict(SLURM, HYPERCLOVA_LAUNCHER="slurm", RANK="2")
    with pytest.raises(UserError, match="launchers disagree"):
        discover(env)
    with pytest.raises(UserError, match="HYPERCLOVA_LAUNCHER"):
        discover({"HYPERCLOVA_LAUNCHER": "pbs"})


def test_single_process():
    env: dict = {}
    d = discover(env)
    assert (d.rank, d.world_size, d.local_rank, d.source, d.master_addr) == (0, 1, 0, "single",
                                                                            "127.0.0.1")
    assert 0 < d.master_port < 65536 and env["MASTER_PORT"] == str(d.master_port)
    assert discover({"MASTER_PORT": "1234"}).master_port == 1234
    with pytest.raises(UserError, match="MASTER_PORT"):
        discover({"MASTER_PORT": "http"})


def test_bad_integers():
    with pytest.raises(UserError, match="RANK='x'"):
        discover(dict(TORCHRUN, RANK="x"))
    with pytest.raises(UserError, match="outside world size"):
        discover(dict(TORCHRUN, RANK="8"))


def test_source_choice_between_slurm_and_mpi():
    from hyperclova.launch import _choose_source

    # srun with an MPI plugin (--mpi=pmi2/pmix): the same tasks, SLURM's variables suffice
    assert _choose_source(dict(SLURM, PMI_SIZE="16", PMIX_RANK="13")) == "slurm"
    # Open MPI's mpirun inside an allocation: its daemons were started by srun, one per node
    assert _choose_source(dict(SLURM, SLURM_NTASKS="2", OMPI_COMM_WORLD_SIZE="16")) == "mpi"
    assert _choose_source({"PMI_SIZE": "2", "PMI_RANK": "0"}) == "mpi"
    assert _choose_source(dict(SLURM, **TORCHRUN)) == "torchrun"
