"""configs.schema: one validator per section, one error type naming field, value and expectation;
run.py prints `error:` for the project's input errors only."""
import glob
import os

import pytest

import run
from configs import schema
from configs.default import get_default_config
from configs.errors import ConfigError, InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_error_names_field_value_and_expectation():
    e = ConfigError("sampling.steps", 0, "an int >= 1")
    assert (e.field, e.value, e.expected) == ("sampling.steps", 0, "an int >= 1")
    assert str(e) == "config.sampling.steps must be an int >= 1, got 0"
    assert isinstance(e, InputError) and isinstance(e, ValueError)


CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                      if os.path.basename(p) not in ("__init__.py", "schema.py", "schema_prompts.py", "errors.py",
                                                          "sampler_entries.py"))


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_every_shipped_config_is_valid(path):
    schema.validate_config(run.load_config(path))


# (section validator, field, bad value): each must raise ConfigError naming that field.
BAD = [
    (schema.validate_run, "seed", -1),
    (schema.validate_run, "device", "gpu"),
    (schema.validate_data, "data.dataset", "mnist"),
    (schema.validate_data, "data.num_levels", 1),
    (schema.validate_data, "data.test_fraction", 1.0),
    (schema.validate_model, "model.name", "resnet"),
    (schema.validate_training, "training.lr", 0.0),
    (schema.validate_training, "training.precision", "fp8"),
    (schema.validate_training, "training.label_dropout", 1.5),
    (schema.validate_training, "training.progress", "yes"),
    (schema.validate_sampling, "sampling.sampler", "magic"),
    (schema.validate_sampling, "sampling.steps", 0),
    (schema.validate_sampling, "sampling.guidance", "magic"),
    (schema.validate_eval, "eval.trace", "approximate"),
    (schema.validate_eval, "eval.elbo_n_t", 1),
    (schema.validate_eval, "eval.eps", 1.5),
    (schema.validate_compare, "compare.seeds", (0,)),
    (schema.validate_compare, "compare.primary_metric", "fid"),
    (schema.validate_classifier, "classifier.name", "resnet"),
    (schema.validate_classifier, "classifier.lr", -1.0),
    (schema.validate_inpaint, "inpaint.mask", "circle"),
    (schema.validate_inpaint, "inpaint.box", (0.5, 0.5, 0.2, 0.9)),
    (schema.validate_cold, "cold.degradation", "fog"),
    (schema.validate_cold, "cold.loss", "l3"),
    (schema.validate_cold, "cold.steps", 0),
    (schema.validate_cold, "cold.prior_noise", -1.0),
]


@pytest.mark.parametrize("check,field,value", BAD, ids=[f for _, f, _ in BAD])
def test_each_section_refuses_a_bad_value(check, field, value):
    config = get_default_config()
    check(config)                                   # the default passes
    *path, last = field.split(".")
    node = config
    for k in path:
        node = node[k]
    with node.ignore_type():
        node[last] = value
    with pytest.raises(ConfigError) as err:
        check(config)
    assert err.value.field == field and err.value.value == value
    with pytest.raises(ConfigError):
        schema.validate_config(config)             # and the whole-config check runs that section


def test_sampler_options_are_checked_against_the_registry():
    config = get_default_config()
    config.sampling.options.pc.colour = "red"
    with pytest.raises(ConfigError, match=r"sampling.options.pc must be options among"):
        schema.validate_sampling(config)


def test_new_registry_entries_are_valid_values():
    """The schema reads names from the registries: a newly registered sampler is a valid sampler."""
    import solvers
    solvers.register_sampler("schema_probe", lambda sde, score, x, ts, noise, callback: x, options={})
    try:
        config = get_default_config()
        config.sampling.sampler = "schema_probe"
        schema.validate_sampling(config)
    finally:
        solvers.unregister_sampler("schema_probe")


def test_run_prints_input_errors_and_keeps_tracebacks_of_bugs(tmp_path, capsys, monkeypatch):
    """An InputError is one `error:` line and exit 2; any other ValueError is a bug and propagates."""
    wd = str(tmp_path / "w")
    tiny = ["--config", os.path.join(ROOT, "configs", "toy_vp_mlp.py"), "--mode", "train",
            "--config.training.n_iters=1", "--config.training.progress=False"]

    def bad_input(config, workdir):
        raise InputError("data file 'x.npy' does not exist")
    monkeypatch.setattr(run, "run_train", bad_input)
    assert run.main(["--workdir", wd] + tiny) == 2
    assert capsys.readouterr().err == "error: data file 'x.npy' does not exist\n"

    def bug(config, workdir):
        raise ValueError("operands could not be broadcast together")     # e.g. from numpy
    monkeypatch.setattr(run, "run_train", bug)
    with pytest.raises(ValueError, match="operands could not be broadcast"):
        run.main(["--workdir", wd] + tiny)
    assert "error:" not in capsys.readouterr().err
    assert not os.path.exists(wd)


def test_run_has_no_asserts():
    import ast
    tree = ast.parse(open(os.path.join(ROOT, "run.py")).read())
    assert not [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
