"""The start-up warning when shared coordination meets storage that looks local to one machine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core import Sections
from core.deployment import filesystem_of, shared_storage_warnings
from core.store.settings import MemoryStoreSettings

MOUNTS = """\
overlay / overlay rw,relatime 0 0
/dev/sda1 /srv ext4 rw 0 0
nas:/export /srv/shared nfs4 rw,vers=4.2 0 0
tmpfs /tmp tmpfs rw 0 0
"""


def test_the_deepest_mount_point_above_a_path_decides_its_filesystem() -> None:
    assert filesystem_of(Path("/srv/shared/workspaces/not-yet-created"), MOUNTS) == "nfs4"
    assert filesystem_of(Path("/srv/local"), MOUNTS) == "ext4"
    assert filesystem_of(Path("/srv/sharedness"), MOUNTS) == "ext4"  # a name prefix is not a parent
    assert filesystem_of(Path("/home/x"), MOUNTS) == "overlay"


def test_local_workspaces_and_sessions_behind_shared_coordination_are_warned_about(
    make_sections: Callable[..., Sections],
) -> None:
    local = make_sections(
        coordination={"backend": "redis", "url": "redis://127.0.0.1:1/0"},
        workspace={"base_dir": "/srv/local/ws"},
        agent={"sessions_dir": "/srv/shared/sessions"},
    )
    [workspace, store] = shared_storage_warnings(local, MOUNTS)
    assert workspace.startswith("workspace.base_dir (/srv/local/ws) is on a local filesystem (ext4)")
    assert "coordination.shared_storage: true" in workspace
    assert store.startswith("store: sqlite with shared coordination works only for instances on this machine")

    shared = make_sections(
        coordination={"backend": "redis", "url": "redis://127.0.0.1:1/0"},
        workspace={"base_dir": "/srv/shared/ws"},
        agent={"sessions_dir": "/srv/shared/sessions"},
    )
    [memory] = shared_storage_warnings(shared.model_copy(update={"store": MemoryStoreSettings()}), MOUNTS)
    assert memory.startswith("store: memory with shared coordination: each instance keeps its own conversations")


def test_a_project_on_local_storage_behind_shared_coordination_is_warned_about(
    make_sections: Callable[..., Sections], tmp_path: Path
) -> None:
    sections = make_sections(
        coordination={"backend": "redis", "url": "redis://127.0.0.1:1/0"},
        workspace={"base_dir": "/srv/shared/ws"},
        projects={"payments": {"path": str(tmp_path), "places": ["slack:C1"]}},
    ).model_copy(update={"store": MemoryStoreSettings()})
    warnings = shared_storage_warnings(sections, MOUNTS)
    [project] = [w for w in warnings if w.startswith("projects.")]
    assert project.startswith(f"projects.payments.path ({tmp_path}) is on a local filesystem (tmpfs)")


def test_no_warning_for_one_instance_or_when_the_operator_says_storage_is_shared(
    make_sections: Callable[..., Sections],
) -> None:
    assert shared_storage_warnings(make_sections(workspace={"base_dir": "/srv/local/ws"}), MOUNTS) == []
    vouched = make_sections(
        coordination={"backend": "redis", "url": "redis://127.0.0.1:1/0", "shared_storage": True},
        workspace={"base_dir": "/srv/local/ws"},
    )
    [store] = shared_storage_warnings(vouched, MOUNTS)  # the files are vouched for; a SQLite file stays one machine's
    assert store.startswith("store: sqlite with shared coordination works only for instances on this machine")


def test_a_local_session_directory_matters_only_while_transcripts_stay_local(
    make_sections: Callable[..., Sections],
) -> None:
    sections = make_sections(
        coordination={"backend": "redis", "url": "redis://127.0.0.1:1/0"},
        workspace={"base_dir": "/srv/shared/ws"},
        agent={"sessions_dir": "/srv/local/sessions"},
    )
    local = shared_storage_warnings(sections.model_copy(update={"store": MemoryStoreSettings()}), MOUNTS)
    assert [w.split(" (")[0].split(":")[0] for w in local] == ["agent.sessions_dir", "store"]
    in_store = sections.model_copy(update={"store": MemoryStoreSettings(transcripts="store")})
    [only] = shared_storage_warnings(in_store, MOUNTS)  # the store's copy of the transcript resumes anywhere
    assert only.startswith("store: memory with shared coordination")
