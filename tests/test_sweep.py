"""Sweeps over hyperparameters x problems x step sizes: local processes and a Dask cluster.

The reference for every sweep entry is the same study run directly with
:func:`modeq.numeric.study.order_study` (serial, in this process): a sweep only distributes
work, so its errors must equal the serial ones to the last digit.
"""
import pytest
import sympy as sp

from modeq.numeric import problems
from modeq.numeric.study import order_study
from modeq.numeric.sweep import dask_client as _client, grid_points, sweep
from modeq.symbolic import optimizers

HS = [sp.Rational(1, 8), sp.Rational(1, 16), sp.Rational(1, 32)]


def serial(opt, name, hs=HS, **values):
    p = problems.get(name)
    vals = p.values_for(opt, values)
    return order_study(opt, p.loss_or_losses, p.params, p.theta0, T=p.T, hs=hs, dps=20, **vals)


def same_errors(sweep_study, direct):
    for r, o in direct.orders.items():
        got = [pt.error_digits for pt in sweep_study.orders[r].points]
        assert got == [pt.error_digits for pt in o.points]
        assert sweep_study.orders[r].verdict == o.verdict


def test_grid_points():
    assert grid_points({}) == [{}]
    assert grid_points({"b": [1, 2], "a": [3]}) == [{"a": 3, "b": 1}, {"a": 3, "b": 2}]
    with pytest.raises(ValueError):
        grid_points({"a": []})


def test_local_processes():
    opt = optimizers.heavy_ball()
    res = sweep(opt, ["logcosh2d", "coupled3d"], {"beta": ["1/4", "1/2"]}, hs=HS, dps=20,
                jobs=2)
    assert len(res.studies) == 4
    keyed = {(s.problem, s.values["beta"]): s for s in res.studies}
    same_errors(keyed[("coupled3d", "1/2")], serial(opt, "coupled3d", beta=sp.Rational(1, 2)))
    same_errors(keyed[("logcosh2d", "1/4")], serial(opt, "logcosh2d"))
    assert "| coupled3d | heavy_ball | beta=1/2 |" in res.table()


def test_dask_local_cluster():
    import dask.distributed as distributed  # installed by the test extra
    opt = optimizers.gd()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        res = sweep(opt, ["logcosh2d", "leastsquares3"], hs=HS, dps=20,
                    scheduler=cluster.scheduler_address)
    assert [s.problem for s in res.studies] == ["logcosh2d", "leastsquares3"]
    same_errors(res.studies[1], serial(opt, "leastsquares3"))
    assert res.passed


def test_bad_input():
    with pytest.raises(ValueError, match="not hyperparameters"):
        sweep(optimizers.gd(), ["logcosh2d"], {"beta": [0.5]}, hs=HS)
    with pytest.raises(ValueError, match="unknown problem"):
        sweep(optimizers.gd(), ["nope"], hs=HS)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sweep(optimizers.gd(), ["logcosh2d"], hs=HS[::-1])
    with pytest.raises(ValueError, match="beta"):
        sweep(optimizers.heavy_ball(), ["logcosh2d"], {"beta": [1.5]}, hs=HS)
    with pytest.raises(ValueError, match="scheduler must be an address"):
        sweep(optimizers.gd(), ["logcosh2d"], hs=HS, scheduler=8786)
    with pytest.raises(OSError, match="cannot reach"):
        _client("tcp://127.0.0.1:1", timeout=1)
