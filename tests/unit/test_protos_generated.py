"""The committed generated code must equal what the .proto files generate."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _gen_protos():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_up_to_date() -> None:
    stale = _gen_protos().stale_files()
    assert stale == [], f"run `python scripts/gen_protos.py` and commit: {stale}"


def test_gateway_service_has_the_three_rpcs() -> None:
    from cumulus.v1 import gateway_pb2

    methods = {m.name for m in gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].methods}
    assert methods == {"Generate", "GenerateStream", "Feedback"}
