"""SlurmExecutor without Slurm: the output parsers, the sbatch command line, and the poll logic
driven by a fake runner that replays what the real tools print (outputs copied from a local
Slurm 22.05 started by scripts/slurm-up.sh)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from aifactory.fleet import compile_topology, load_fleet
from aifactory.fleet.errors import SpecError
from aifactory.fleet.loader import parse_fleet
from aifactory.service.executors.base import ExecutorError, Launch, NodeSlice, RunState, Status
from aifactory.service.executors.slurm import (
    SACCT_TRACE_FORMAT,
    SlurmExecutor,
    SlurmJobRecord,
    SlurmState,
    executor_for,
    format_time_limit,
    job_name,
    parse_exit_code,
    parse_sacct,
    parse_sbatch_output,
    parse_scontrol_job,
    parse_squeue,
    parse_state,
    record_status,
    run_command,
    sacct_trace,
    sbatch_argv,
    slurm_node_map,
    slurm_responds,
    to_run_state,
)
from aifactory.service.settings import ServiceSettings

SCONTROL_DONE = (
    "JobId=1 JobName=a4 UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 "
    "Nice=0 Account=root QOS=normal JobState=COMPLETED Reason=None Dependency=(null) "
    "Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:04 "
    "TimeLimit=UNLIMITED TRES=cpu=1,node=1,billing=1,gres/gpu=4 TresPerNode=gres:gpu:4\n"
)
INVALID_JOB = "slurm_load_jobs error: Invalid job id specified\n"


def launch(**overrides: object) -> Launch:
    fields: dict[str, object] = {
        "job_id": "j-1",
        "command": "python train.py --epochs 3",
        "gpus": 4,
        "nodes": (NodeSlice("n0", (0, 1, 2, 3)),),
        "log_path": Path("/tmp/logs/j-1.log"),
        "time_limit_s": 90.0,
    }
    fields.update(overrides)
    return Launch(**fields)  # type: ignore[arg-type]  # test builder: fields checked by Launch


# ------------------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("RUNNING", SlurmState.RUNNING),
        ("CANCELLED by 0", SlurmState.CANCELLED),
        ("CANCELLED+", SlurmState.CANCELLED),
        ("completed", SlurmState.COMPLETED),
        (" OUT_OF_MEMORY ", SlurmState.OUT_OF_MEMORY),
    ],
)
def test_parse_state(text: str, state: SlurmState) -> None:
    assert parse_state(text) is state


def test_parse_state_rejects_unknown_word() -> None:
    with pytest.raises(ValueError, match="unknown Slurm job state 'EXPLODED'"):
        parse_state("EXPLODED")


@pytest.mark.parametrize(
    ("state", "run_state"),
    [
        (SlurmState.PENDING, RunState.RUNNING),
        (SlurmState.COMPLETING, RunState.RUNNING),
        (SlurmState.COMPLETED, RunState.COMPLETED),
        (SlurmState.FAILED, RunState.FAILED),
        (SlurmState.TIMEOUT, RunState.FAILED),
        (SlurmState.NODE_FAIL, RunState.FAILED),
        (SlurmState.CANCELLED, RunState.CANCELLED),
    ],
)
def test_state_mapping(state: SlurmState, run_state: RunState) -> None:
    assert to_run_state(state) is run_state


@pytest.mark.parametrize(
    ("text", "code"),
    [("0:0", 0), ("3:0", 3), ("0:15", 143), ("0:9", 137), ("1:15", 1), ("", None)],
)
def test_parse_exit_code(text: str, code: int | None) -> None:
    assert parse_exit_code(text) == code


def test_parse_exit_code_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="want CODE:SIGNAL"):
        parse_exit_code("x:y")


@pytest.mark.parametrize(("out", "job_id"), [("42\n", "42"), ("17;aifactory\n", "17")])
def test_parse_sbatch_output(out: str, job_id: str) -> None:
    assert parse_sbatch_output(out) == job_id


@pytest.mark.parametrize("out", ["", "Submitted batch job 42\n", "abc"])
def test_parse_sbatch_output_without_id(out: str) -> None:
    with pytest.raises(ValueError, match="sbatch printed no job id"):
        parse_sbatch_output(out)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1, "0-00:00:01"), (59.2, "0-00:01:00"), (3600, "0-01:00:00"), (90_061, "1-01:01:01")],
)
def test_format_time_limit(seconds: float, text: str) -> None:
    assert format_time_limit(seconds) == text


@pytest.mark.parametrize("seconds", [0, -5, float("inf"), float("nan")])
def test_format_time_limit_rejects(seconds: float) -> None:
    with pytest.raises(ValueError, match="time_limit_s must be a positive number"):
        format_time_limit(seconds)


def test_job_name_is_prefixed_and_safe() -> None:
    assert job_name("tenant-a/job 7") == "aif-tenant-a_job_7"


def test_parse_squeue() -> None:
    assert parse_squeue("2|PENDING|Resources\n") == SlurmJobRecord(
        "2", SlurmState.PENDING, reason="Resources"
    )
    assert parse_squeue("1|RUNNING|None\n") == SlurmJobRecord("1", SlurmState.RUNNING)
    assert parse_squeue("\n") is None
    with pytest.raises(ValueError, match="has 2 fields, want 3"):
        parse_squeue("1|RUNNING\n")


def test_parse_sacct_takes_last_attempt_of_the_job() -> None:
    out = "7|REQUEUED|0:0\n8|COMPLETED|0:0\n7|FAILED|2:0\n"
    assert parse_sacct(out, "7") == SlurmJobRecord("7", SlurmState.FAILED, exit_code=2)
    assert parse_sacct(out, "9") is None


def test_parse_scontrol_job() -> None:
    assert parse_scontrol_job(SCONTROL_DONE) == SlurmJobRecord(
        "1", SlurmState.COMPLETED, exit_code=0
    )
    assert parse_scontrol_job("") is None


def test_record_status_hides_exit_code_while_running() -> None:
    status = record_status(SlurmJobRecord("3", SlurmState.PENDING, exit_code=0, reason="Priority"))
    assert status == Status(RunState.RUNNING, exit_code=None, detail="PENDING (Priority)")


# ------------------------------------------------------------------------- sbatch argv


def test_sbatch_argv() -> None:
    argv = sbatch_argv(launch(), partition="gpu")
    assert argv[:-1] == [
        "sbatch",
        "--parsable",
        "--export=AIFACTORY_JOB_ID,AIFACTORY_PLACEMENT,AIFACTORY_TENANT,LANG,PATH",
        "--job-name=aif-j-1-1",
        "--output=/tmp/logs/j-1.log",
        "--open-mode=append",
        "--nodes=1",
        "--ntasks-per-node=1",
        "--gres=gpu:4",
        "--time=0-00:01:30",
        "--partition=gpu",
    ]
    assert argv[-1].startswith("--wrap=exec /bin/bash -c ")


def wrapped_script(argv: list[str]) -> str:
    """The bash launcher inside ``--wrap=exec /bin/bash -c SCRIPT aifactory-launch``."""
    words = shlex.split(argv[-1].removeprefix("--wrap="))
    assert words[:3] == ["exec", "/bin/bash", "-c"], words
    assert words[4:] == ["aifactory-launch"], words
    return words[3]


TWO_NODES = (NodeSlice("local/hgx/d1/n1", tuple(range(8))), NodeSlice("local/hgx/d0/n0", (0, 1)))


def test_a_multi_node_job_is_one_slurm_job_of_one_task_per_node() -> None:
    nodes = (
        NodeSlice("local/hgx/d1/n1", tuple(range(8))),
        NodeSlice("local/hgx/d0/n0", tuple(range(8))),
    )
    node_map = {"local/hgx/d0/n0": "aif-n0", "local/hgx/d1/n1": "aif-n1"}
    argv = sbatch_argv(launch(gpus=16, nodes=nodes), node_map=node_map)
    assert "--nodes=2" in argv
    assert "--ntasks-per-node=1" in argv
    assert "--gres=gpu:8" in argv  # per node
    assert "--nodelist=aif-n1,aif-n0" in argv  # the scheduler's nodes, in rank order
    script = wrapped_script(argv)
    assert "rank_nodes=(aif-n1 aif-n0)" in script
    assert "srun --export=ALL" in script
    assert "--kill-on-bad-exit=1" in script


def test_the_command_reaches_srun_as_one_argument_never_as_script() -> None:
    """Tenant input is hostile: a command with quotes, $() and newlines must arrive at the
    task's /bin/sh -c as exactly the string the tenant gave."""
    hostile = "echo 'a' \"$(id)\" ; `x`\nexit 7 # ' \\"
    script = wrapped_script(sbatch_argv(launch(command=hostile)))
    srun_line = script[script.index("exec srun") :].replace("\\\n", " ")
    words = shlex.split(srun_line)
    assert words[-1] == hostile
    assert words[-2] == "aifactory-rank"


def test_unequal_gpus_per_node_ask_slurm_for_the_total() -> None:
    argv = sbatch_argv(launch(gpus=10, nodes=TWO_NODES))
    assert "--gpus=10" in argv
    assert not any(a.startswith("--gres") for a in argv)


def test_a_placement_that_does_not_add_up_is_refused() -> None:
    with pytest.raises(ValueError, match="holds 10 GPUs, the job asks 16"):
        sbatch_argv(launch(gpus=16, nodes=TWO_NODES))


def test_a_node_map_that_misses_a_node_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no Slurm node for fleet node.*d0/n0"):
        sbatch_argv(launch(gpus=10, nodes=TWO_NODES), node_map={"local/hgx/d1/n1": "aif-n1"})


def test_no_node_map_lets_slurm_pick_the_nodes() -> None:
    argv = sbatch_argv(launch(gpus=10, nodes=TWO_NODES))
    assert not any(a.startswith("--nodelist") for a in argv)
    assert "rank_nodes=()" in wrapped_script(argv)


def test_a_job_cannot_set_the_contracts_variables() -> None:
    argv = sbatch_argv(launch(env={"MASTER_PORT": "1", "NODE_RANK": "5", "SEED": "7"}))
    exported = argv[2].removeprefix("--export=").split(",")
    assert "SEED" in exported
    assert "MASTER_PORT" not in exported
    assert "NODE_RANK" not in exported


def test_slurm_local_fleet_maps_its_nodes_to_the_slurm_of_slurm_up() -> None:
    topo = compile_topology(load_fleet("slurm-local"))
    assert slurm_node_map(topo) == {"local/hgx/d0/n0": "aif-n0", "local/hgx/d1/n1": "aif-n1"}
    assert slurm_node_map(compile_topology(load_fleet("demo"))) == {}


def test_the_services_executor_takes_the_node_names_of_its_fleet(tmp_path: Path) -> None:
    local = ServiceSettings(database_url="sqlite://", fleet="slurm-local", data_dir=tmp_path)
    assert executor_for(local).node_map == {
        "local/hgx/d0/n0": "aif-n0",
        "local/hgx/d1/n1": "aif-n1",
    }
    demo = ServiceSettings(database_url="sqlite://", fleet="demo", data_dir=tmp_path)
    assert executor_for(demo).node_map == {}
    assert executor_for(None).node_map == {}


def fleet_doc(slurm_nodes: list[str]) -> dict[str, object]:
    group = {"model": "h100", "domains": 2, "owner": "t", "slurm_nodes": slurm_nodes}
    return {
        "name": "f",
        "sites": [
            {
                "name": "s",
                "region": "r",
                "power_mw": 1,
                "pue": 1.2,
                "pods": [{"name": "p", "groups": [group]}],
            }
        ],
        "tenants": [{"name": "t", "quotas": [{"gpu_class": "h100", "nominal": 16}]}],
    }


def test_slurm_nodes_must_name_each_node_once() -> None:
    assert parse_fleet(fleet_doc(["a", "b"])).sites[0].pods[0].groups[0].slurm_nodes == ["a", "b"]
    with pytest.raises(SpecError, match="1 names for the group's 2 nodes"):
        parse_fleet(fleet_doc(["a"]))
    with pytest.raises(SpecError, match="Slurm node 'a' is named twice"):
        parse_fleet(fleet_doc(["a", "a"]))


def test_sbatch_argv_cpu_job_without_limit_has_no_gres_or_time() -> None:
    argv = sbatch_argv(launch(gpus=0, time_limit_s=None))
    assert not any(a.startswith(("--gres", "--time", "--partition")) for a in argv)


def test_sbatch_argv_rejects_empty_command() -> None:
    with pytest.raises(ValueError, match="command must not be empty"):
        sbatch_argv(launch(command="  "))


def test_a_nul_byte_is_an_executor_error_not_a_crash(tmp_path: Path) -> None:
    """``"echo a\u0000b"`` raised ValueError("embedded null byte") out of the executor."""
    fake = FakeSlurm({})
    with pytest.raises(ExecutorError, match="NUL"):
        SlurmExecutor(runner=fake).start(launch(command="echo a\0b", log_path=tmp_path / "l"))
    assert fake.calls == []


def test_find_names_the_attempt_from_squeue_then_sacct() -> None:
    fake = FakeSlurm({"squeue": (0, "41\n", "")})
    assert SlurmExecutor(runner=fake).find("aif-7-2-abc") == "41"
    assert "--name=aif-7-2-abc" in fake.calls[0][0]
    fake = FakeSlurm({"squeue": (0, "", ""), "sacct": (0, "52\n50\n", "")})
    assert SlurmExecutor(runner=fake).find("aif-7-2-abc") == "50"
    fake = FakeSlurm({"squeue": (0, "", ""), "sacct": (0, "", "")})
    assert SlurmExecutor(runner=fake).find("aif-7-2-abc") is None
    fake = FakeSlurm({"squeue": (1, "", "slurm_load_jobs error: Unable to contact")})
    with pytest.raises(ExecutorError, match="squeue failed"):
        SlurmExecutor(runner=fake).find("aif-7-2-abc")


# ------------------------------------------------------------------------- fake runner


Answer = tuple[int, str, str]


class FakeSlurm:
    """Answers each tool with a canned (rc, stdout, stderr) and records the calls."""

    def __init__(self, answers: Mapping[str, Answer | list[Answer]]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def __call__(
        self, argv: Sequence[str], env: Mapping[str, str], timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), dict(env)))
        answer = self.answers.get(argv[0], (0, "", ""))
        if isinstance(answer, list):  # answers in turn, the last one repeated
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        rc, out, err = answer
        return subprocess.CompletedProcess(list(argv), rc, out, err)

    def tools(self) -> list[str]:
        return [argv[0] for argv, _ in self.calls]


def test_start_returns_job_id_and_passes_env(tmp_path: Path) -> None:
    fake = FakeSlurm({"sbatch": (0, "123\n", "")})
    log = tmp_path / "logs" / "j.log"
    handle = SlurmExecutor(runner=fake).start(launch(log_path=log, env={"SEED": "7"}))
    assert handle == "123"
    assert fake.calls[0][1] == {
        "SEED": "7",
        "AIFACTORY_JOB_ID": "j-1",
        "AIFACTORY_PLACEMENT": "n0:0,1,2,3",
        "AIFACTORY_TENANT": "",
    }
    assert (
        "--export=AIFACTORY_JOB_ID,AIFACTORY_PLACEMENT,AIFACTORY_TENANT,LANG,PATH,SEED"
        in (fake.calls[0][0])
    )
    assert log.parent.is_dir()


def test_start_reports_sbatch_refusal(tmp_path: Path) -> None:
    err = (
        "sbatch: error: Batch job submission failed: Requested node configuration is not available"
    )
    fake = FakeSlurm({"sbatch": (1, "", err)})
    with pytest.raises(ExecutorError, match=r"sbatch refused job j-1 \(exit 1\): .*not available"):
        SlurmExecutor(runner=fake).start(launch(log_path=tmp_path / "j.log"))


TIMED_OUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"


def test_a_transient_sbatch_error_is_tried_again(tmp_path: Path) -> None:
    fake = FakeSlurm({"sbatch": [(1, "", TIMED_OUT), (0, "124\n", "")], "squeue": (0, "", "")})
    slept: list[float] = []
    ex = SlurmExecutor(runner=fake, sleep=slept.append)
    assert ex.start(launch(log_path=tmp_path / "j.log")) == "124"
    assert fake.tools() == ["sbatch", "squeue", "sacct", "sbatch"]  # asked before the retry
    assert slept == [1.0]


def test_a_submit_that_timed_out_but_got_through_is_not_submitted_again(tmp_path: Path) -> None:
    fake = FakeSlurm({"sbatch": (1, "", TIMED_OUT), "squeue": (0, "77\n", "")})
    ex = SlurmExecutor(runner=fake, sleep=lambda _s: None)
    assert ex.start(launch(log_path=tmp_path / "j.log")) == "77"
    assert fake.tools().count("sbatch") == 1


def test_transient_errors_end_as_the_jobs_error_after_the_last_try(tmp_path: Path) -> None:
    fake = FakeSlurm({"sbatch": (1, "", TIMED_OUT), "squeue": (0, "", "")})
    ex = SlurmExecutor(runner=fake, sleep=lambda _s: None, submit_tries=2)
    with pytest.raises(ExecutorError, match="Socket timed out"):
        ex.start(launch(log_path=tmp_path / "j.log"))
    assert fake.tools().count("sbatch") == 2


def test_a_refusal_is_not_tried_again(tmp_path: Path) -> None:
    refused = "sbatch: error: Batch job submission failed: Invalid generic resource (gres)"
    fake = FakeSlurm({"sbatch": (1, "", refused)})
    with pytest.raises(ExecutorError, match="Invalid generic resource"):
        SlurmExecutor(runner=fake, sleep=lambda _s: None).start(launch(log_path=tmp_path / "l"))
    assert fake.tools() == ["sbatch"]


def test_start_rejects_bad_launch_before_calling_slurm(tmp_path: Path) -> None:
    fake = FakeSlurm({})
    with pytest.raises(ExecutorError, match="job j-1: time_limit_s must be a positive"):
        SlurmExecutor(runner=fake).start(launch(log_path=tmp_path / "j.log", time_limit_s=0))
    assert fake.calls == []


def test_poll_running_asks_only_squeue() -> None:
    fake = FakeSlurm({"squeue": (0, "5|RUNNING|None\n", "")})
    assert SlurmExecutor(runner=fake).poll("5") == Status(RunState.RUNNING, detail="RUNNING")
    assert fake.tools() == ["squeue"]


def test_poll_finished_uses_sacct_exit_code() -> None:
    fake = FakeSlurm(
        {"squeue": (0, "5|FAILED|NonZeroExitCode\n", ""), "sacct": (0, "5|FAILED|3:0\n", "")}
    )
    assert SlurmExecutor(runner=fake).poll("5") == Status(RunState.FAILED, 3, "FAILED")
    assert fake.tools() == ["squeue", "sacct"]


def test_poll_without_accounting_falls_back_to_scontrol() -> None:
    fake = FakeSlurm(
        {
            "squeue": (0, "1|COMPLETED|None\n", ""),
            "sacct": (1, "", "sacct: error: Slurm accounting storage is disabled\n"),
            "scontrol": (0, SCONTROL_DONE, ""),
        }
    )
    assert SlurmExecutor(runner=fake).poll("1") == Status(RunState.COMPLETED, 0, "COMPLETED")


def test_poll_before_slurmdbd_caught_up_keeps_squeue_state() -> None:
    fake = FakeSlurm(
        {
            "squeue": (0, "1|COMPLETED|None\n", ""),
            "sacct": (0, "1|RUNNING|0:0\n", ""),
            "scontrol": (1, "", INVALID_JOB),
        }
    )
    assert SlurmExecutor(runner=fake).poll("1") == Status(RunState.COMPLETED, None, "COMPLETED")


def test_poll_unknown_job_is_lost() -> None:
    fake = FakeSlurm(
        {"squeue": (1, "", INVALID_JOB), "sacct": (0, "", ""), "scontrol": (1, "", INVALID_JOB)}
    )
    status = SlurmExecutor(runner=fake).poll("999")
    assert status.state is RunState.LOST
    assert "no job 999" in status.detail


def test_poll_malformed_handle_is_lost_without_calling_slurm() -> None:
    fake = FakeSlurm({})
    assert SlurmExecutor(runner=fake).poll("pid:12").state is RunState.LOST
    assert fake.calls == []


def test_poll_raises_when_controller_is_down() -> None:
    down = "squeue: error: Unable to contact slurm controller (connect failure)\n"
    fake = FakeSlurm({"squeue": (1, "", down)})
    with pytest.raises(ExecutorError, match=r"squeue failed .*Unable to contact"):
        SlurmExecutor(runner=fake).poll("5")


def test_cancel_is_idempotent() -> None:
    done = "scancel: error: Kill job error on job id 5: Job/step already completing or completed\n"
    SlurmExecutor(runner=FakeSlurm({"scancel": (1, "", done)})).cancel("5")
    SlurmExecutor(runner=FakeSlurm({"scancel": (1, "", INVALID_JOB)})).cancel("5")


def test_cancel_reports_other_failures() -> None:
    fake = FakeSlurm({"scancel": (1, "", "scancel: error: Access/permission denied\n")})
    with pytest.raises(ExecutorError, match=r"scancel 5 failed .*permission denied"):
        SlurmExecutor(runner=fake).cancel("5")


def test_run_command_names_a_missing_tool() -> None:
    with pytest.raises(ExecutorError, match=r"sbatch-does-not-exist not found: .*slurm-up\.sh"):
        run_command(["sbatch-does-not-exist"], {}, 5.0)


def test_run_command_times_out_with_a_clear_error() -> None:
    with pytest.raises(ExecutorError, match=r"sleep did not answer within 0\.2 s"):
        run_command(["sleep", "5"], {}, 0.2)


def test_slurm_responds_false_when_ping_fails() -> None:
    def ping_down(
        argv: Sequence[str], env: Mapping[str, str], timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 1, "", "Unable to contact slurm controller")

    assert slurm_responds(runner=ping_down) is False


def test_executor_rejects_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        SlurmExecutor(timeout_s=0)


def test_sacct_trace_asks_for_the_importer_columns() -> None:
    fake = FakeSlurm({"sacct": (0, "JobID|User\n", "")})
    assert sacct_trace(["4", "5"], runner=fake) == "JobID|User\n"
    argv = fake.calls[0][0]
    assert "--parsable2" in argv
    assert "--allocations" in argv
    assert f"--format={SACCT_TRACE_FORMAT}" in argv
    assert "--jobs=4,5" in argv


def test_sacct_trace_of_no_jobs_is_a_header_without_calling_slurm() -> None:
    fake = FakeSlurm({})
    assert sacct_trace([], runner=fake).splitlines() == [SACCT_TRACE_FORMAT.replace(",", "|")]
    assert fake.calls == []


def test_sacct_trace_rejects_bad_ids_and_reports_failures() -> None:
    with pytest.raises(ExecutorError, match="not Slurm job ids: '4;rm'"):
        sacct_trace(["4;rm"], runner=FakeSlurm({}))
    off = FakeSlurm({"sacct": (1, "", "sacct: error: Slurm accounting storage is disabled")})
    with pytest.raises(ExecutorError, match=r"sacct failed .*accounting storage is disabled"):
        sacct_trace(["4"], runner=off)
