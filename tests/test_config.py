import pytest

from ganpipe.config import load_config, validate_config
from ganpipe.errors import ConfigError


def test_no_file_gives_the_demo_config():
    cfg = load_config()
    assert cfg.dataset.sources == ["demo"]
    assert cfg.store.root == "./ganpipe-runs"
    assert cfg.model_name == "demo"


def test_set_values_are_parsed_as_yaml():
    cfg = load_config(
        None,
        [
            "train.steps=2000",
            "dataset.sources=[data/a,s3://b/c]",
            "train.max_minutes=null",
            "filter.keep=top_k:5",
            "style.num_styles=4",
            "model.name=faces",
        ],
    )
    assert cfg.train.steps == 2000
    assert cfg.dataset.sources == ["data/a", "s3://b/c"]
    assert cfg.train.max_minutes is None
    assert cfg.filter.keep == "top_k:5"
    assert cfg.style.num_styles == 4
    assert cfg.model_name == "faces"


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.stepz=3", "train.stepz"),
        ("trian.steps=3", "trian"),
        ("train.steps=-1", "train.steps"),
        ("train.steps=lots", "train.steps"),
        ("dataset.image_size=48", "dataset.image_size"),
        ("dataset.labels=folder", "dataset.labels"),
        ("filter.keep=best", "filter.keep"),
        ("style.source=magic", "style.source"),
        ("dataset.name=../escape", "dataset.name"),
    ],
)
def test_bad_keys_and_values_name_the_key_path(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert f"{key}:" in err.value.message


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.stepz=3"])
    assert "steps" in err.value.fix


def test_every_design_key_is_settable():
    keys = {
        "store.root": "/tmp/x",
        "dataset.name": "d",
        "dataset.sources": "[a]",
        "dataset.labels": "column:style",
        "dataset.image_size": 64,
        "style.source": "labels",
        "style.num_styles": "auto",
        "style.encoder": "texture",
        "model.name": "m",
        "model.generator": "dcgan",
        "model.discriminator": "dcgan",
        "train.loss": "hinge",
        "train.steps": 5,
        "train.max_minutes": 1.5,
        "train.batch_size": 8,
        "train.seed": 3,
        "train.checkpoint_every": 2,
        "train.resume": "never",
        "generate.per_style": 3,
        "generate.seed": 9,
        "filter.filters": "[realism]",
        "filter.keep": "top_k:2",
        "plugins": "[my.plugin]",
    }
    cfg = load_config(None, [f"{k}={v}" for k, v in keys.items()])
    data = cfg.model_dump(mode="json")
    assert data["dataset"]["labels"] == "column:style"
    assert data["train"]["resume"] == "never"
    assert data["plugins"] == ["my.plugin"]
    assert data["filter"]["filters"] == ["realism"]


def test_config_file_round_trips(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 7\ndataset:\n  image_size: 16\n")
    cfg = load_config(path, ["train.seed=4"])
    assert (cfg.train.steps, cfg.train.seed, cfg.dataset.image_size) == (7, 4, 16)
    again = validate_config(__import__("yaml").safe_load(cfg.to_yaml()))
    assert again == cfg


@pytest.mark.parametrize(
    "text, needle",
    [("train: [1, 2", "not valid YAML"), ("- a\n- b\n", "mapping"), ("train: 3\n", "train")],
)
def test_bad_files_give_clear_errors(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in err.value.message


def test_missing_file_and_bad_override_syntax():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/ganpipe.yaml")
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["trainsteps"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(None, ["train.steps=3", "train.steps.x=1"])


def test_section_hash_ignores_other_sections():
    a = load_config(None, ["train.steps=3"])
    b = load_config(None, ["train.steps=4"])
    assert a.section_hash("style") == b.section_hash("style")
    assert a.section_hash("train") != b.section_hash("train")


def test_every_public_name_is_still_importable_from_the_package():
    """ganpipe.config is a package (sections, loading, masking); callers import from its top."""
    import ganpipe.config as config

    for name in ["Config", "GenerateConfig", "ReportConfig", "DEFAULT_FILTERS", "load_config",
                 "validate_config", "redact", "masked_secrets", "resolve_env_refs",
                 "templates_folder", "parse_override", "apply_overrides"]:  # fmt: skip
        assert hasattr(config, name), name
    assert load_config(None).report.templates is None


def test_an_unset_secret_is_not_masked_so_saved_configs_load_again():
    """``serve.token: null`` holds no secret: masking it as '***' made every saved config
    invalid (a token must be an ${ENV_VAR} reference)."""
    from ganpipe.config import redact

    cfg = load_config(None, [])
    assert redact({"token": None, "secret": "x", "key": "${K}"}) == {
        "token": None, "secret": "***", "key": "${K}"}  # fmt: skip
    assert validate_config(__import__("yaml").safe_load(cfg.to_yaml())) == cfg
    named = load_config(None, ["serve.token=${GANPIPE_TOKEN}"])
    assert validate_config(__import__("yaml").safe_load(named.to_yaml())) == named


def test_a_renamed_option_still_reads_for_one_release_and_names_its_new_key():
    import warnings

    from ganpipe.config import load_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(None, ["retrain.per_style=true"])
    assert cfg.retrain.enforce_per_style is True
    (warning,) = [w for w in caught if issubclass(w.category, FutureWarning)]
    assert "retrain.per_style is deprecated: it is now retrain.enforce_per_style" in str(
        warning.message
    )
    with pytest.raises(ConfigError, match="old name of retrain.enforce_per_style"):
        load_config(None, ["retrain.per_style=true", "retrain.enforce_per_style=false"])


def test_the_old_count_flag_is_per_style_with_a_warning():
    import typer

    from ganpipe.cli.generate import _per_style

    assert _per_style(5, None) == 5
    with pytest.warns(FutureWarning, match="--count is deprecated: it is now --per-style"):
        assert _per_style(None, 3) == 3
    with pytest.raises(typer.BadParameter, match="give only --per-style"):
        _per_style(5, 3)
