"""The wire: numpy values from ConfigSpace and HpBandSter become builtins, shown by a Pyro4 round trip."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import Pyro4
import Pyro4.errors
import pytest
import serpent

from hpo_service.pyro_setup import configure_pyro
from hpo_service.records import EvaluationResult, JobRequest, JobStatus
from hpo_service.wire import budget_to_builtin, json_safe, to_builtins

BUILTIN_TYPES = (str, int, float, bool, type(None))


def assert_builtins(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) in BUILTIN_TYPES
            assert_builtins(item)
    elif isinstance(value, list):
        for item in value:
            assert_builtins(item)
    else:
        assert type(value) in BUILTIN_TYPES, f"{value!r} is a {type(value)}"


def numpy_config() -> dict[str, Any]:
    """What ConfigSpace 1.x and HpBandSter hand out under numpy 2."""
    return {
        "optimizer": np.str_("sgd"),
        "kernel_size": np.int64(5),
        "batch_norm": np.bool_(True),
        "learning_rate": np.float64(0.01),
        "dropout": np.float32(0.25),
        "filters": (np.int32(16), np.int64(32)),
        "curve": np.array([0.5, 0.25]),
        "nested": {np.str_("key"): [np.float64(1.0), None]},
    }


@Pyro4.expose
class Echo:
    def echo(self, value: Any) -> Any:
        return value


@pytest.fixture
def echo_proxy() -> Iterator[Pyro4.Proxy]:
    configure_pyro()
    daemon = Pyro4.Daemon(host="127.0.0.1")
    uri = daemon.register(Echo())
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        with Pyro4.Proxy(uri) as proxy:
            proxy._pyroTimeout = 10
            yield proxy
    finally:
        daemon.shutdown()
        daemon.close()
        thread.join(5)


def test_to_builtins_converts_every_numpy_type() -> None:
    converted = to_builtins(numpy_config())
    assert_builtins(converted)
    assert converted == {
        "optimizer": "sgd",
        "kernel_size": 5,
        "batch_norm": True,
        "learning_rate": 0.01,
        "dropout": 0.25,
        "filters": [16, 32],
        "curve": [0.5, 0.25],
        "nested": {"key": [1.0, None]},
    }


def test_to_builtins_refuses_unknown_objects_instead_of_hanging_the_other_side() -> None:
    with pytest.raises(TypeError, match="over the wire"):
        to_builtins({"model": object()})


def test_pyro_round_trip_of_converted_config_keeps_values_and_types(echo_proxy: Pyro4.Proxy) -> None:
    sent = to_builtins({"config": numpy_config(), "budget": budget_to_builtin(np.float64(3.0))})
    received = echo_proxy.echo(sent)
    assert_builtins(received)
    assert received == sent
    assert received["budget"] == 3.0


def test_pyro_round_trip_of_a_result(echo_proxy: Pyro4.Proxy) -> None:
    result = EvaluationResult(
        loss=np.float32(0.125), info={"test_error": np.float64(0.2), "epochs": np.int64(3)}
    )
    sent = to_builtins(result.to_wire())
    received = echo_proxy.echo(sent)
    assert received == {
        "loss": 0.125,
        "info": {"test_error": 0.2, "epochs": 3, "status": "ok", "reason": None},
    }


def test_upstream_failure_numpy_budget_is_written_as_text_the_receiver_cannot_parse() -> None:
    """Reproduces the silent hang: serpent writes np.float64 as ``np.float64(1.0)`` under numpy 2."""
    data = serpent.dumps({"budget": np.float64(1.0)})
    assert b"np.float64" in data
    with pytest.raises(ValueError):
        serpent.loads(data)
    assert serpent.loads(serpent.dumps({"budget": budget_to_builtin(np.float64(1.0))})) == {"budget": 1.0}


def test_upstream_failure_numpy_values_do_not_survive_pyro(echo_proxy: Pyro4.Proxy) -> None:
    """Unconverted numpy values break the call: in HpBandSter this happens inside a thread that then dies."""
    with pytest.raises((Pyro4.errors.PyroError, TypeError, ValueError)):
        echo_proxy.echo({"kernel_size": np.int64(5), "optimizer": np.str_("sgd"), "budget": np.float64(1.0)})


def test_pickle_is_never_accepted_on_the_wire() -> None:
    configure_pyro()
    assert Pyro4.config.SERIALIZER == "serpent"
    assert {"serpent"} == Pyro4.config.SERIALIZERS_ACCEPTED


def test_budget_must_be_positive_and_finite() -> None:
    assert budget_to_builtin(np.float64(2.9999999999999996)) == pytest.approx(3.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            budget_to_builtin(bad)


def test_json_safe_replaces_non_finite_numbers() -> None:
    assert json_safe({"loss": np.float64("nan"), "curve": [np.inf, 1]}) == {"loss": None, "curve": [None, 1]}


def test_non_finite_loss_becomes_a_failed_result_with_the_worst_loss() -> None:
    wire = EvaluationResult(loss=float("nan")).to_wire()
    assert wire["loss"] == 1.0
    assert wire["info"]["status"] == JobStatus.FAILED.value
    assert wire["info"]["reason"] == "non-finite loss"


def test_a_job_from_the_wire_is_a_typed_record() -> None:
    job = JobRequest.from_wire([1, 0, np.int64(2)], {"learning_rate": 0.1}, np.float64(3.0))
    assert job == JobRequest((1, 0, 2), {"learning_rate": 0.1}, 3.0)
    assert type(job.budget) is float and all(type(part) is int for part in job.config_id)
    with pytest.raises(ValueError):
        JobRequest.from_wire([1, 0], {}, 1.0)  # not an HpBandSter id: the worker records an error result
