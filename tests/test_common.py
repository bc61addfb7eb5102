"""Registry, file-system helpers (local and ram://) and the CLI error wrapper."""
import pytest

from common import fs
from common.cli import run_main
from common.errors import UserError
from common.registry import Registry


def test_registry_lists_choices_and_closest_match():
    registry = Registry("backbone")
    registry.register("efficientnet_b0")(object())
    registry.register("resnet50")(object())
    with pytest.raises(ValueError) as error:
        registry.get("resnet")
    message = str(error.value)
    assert "unknown backbone 'resnet'" in message
    assert "efficientnet_b0, resnet50" in message
    assert "did you mean 'resnet50'" in message
    assert registry.names() == ["efficientnet_b0", "resnet50"] and "resnet50" in registry


def test_registry_refuses_duplicates():
    registry = Registry("loss")
    registry.register("focal")(len)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("focal")(len)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("sigmoid", "focal")(len)  # an alias may not shadow a name either


def test_registry_names_the_config_key_and_keeps_aliases():
    from common.registry import UnknownName

    registry = Registry("head", where="model.head")

    @registry.register("trunk_mlp", "report004")
    def trunk():
        return "trunk"

    assert registry.get("report004") is trunk and registry.canonical("report004") == "trunk_mlp"
    assert registry.names() == ["trunk_mlp"] and "report004" in registry and registry.aliases() == {
        "report004": "trunk_mlp"}
    with pytest.raises(UnknownName) as error:
        registry.get("trunk")
    assert isinstance(error.value, UserError) and isinstance(error.value, ValueError)
    assert str(error.value).startswith("model.head: unknown head 'trunk'; choose one of: trunk_mlp")
    with pytest.raises(UnknownName, match=r"^loss.per_head.make: unknown head"):
        registry.get("x", where="loss.per_head.make")


@pytest.mark.parametrize("base", ["local", "ram"])
def test_fs_atomic_write_walk_and_temporaries(tmp_path, base):
    root = str(tmp_path) if base == "local" else f"ram://fs-test-{tmp_path.name}"
    fs.makedirs(fs.join(root, "a", "b"))
    fs.write_text_atomic(fs.join(root, "a", "b", "x.txt"), "hello")
    fs.write_bytes_atomic(fs.join(root, "top.bin"), b"\x00\x01")
    assert fs.read_text(fs.join(root, "a", "b", "x.txt")) == "hello"
    assert sorted(fs.walk_files(root)) == ["a/b/x.txt", "top.bin"]
    assert fs.size(fs.join(root, "top.bin")) == 2
    leftover = fs.temporary_name(fs.join(root, "top.bin"))
    fs.write_bytes_atomic(leftover, b"partial")
    assert fs.remove_temporaries(root) == 1
    assert sorted(fs.listdir(root)) == ["a", "top.bin"]
    fs.remove_tree(fs.join(root, "a"))
    assert not fs.exists(fs.join(root, "a"))


def test_run_main_turns_user_errors_into_exit_status_2(capsys):
    def main(argv):
        raise UserError("--dataset: unknown dataset 'x'")

    assert run_main(main, []) == 2
    assert capsys.readouterr().err.strip() == "error: --dataset: unknown dataset 'x'"
