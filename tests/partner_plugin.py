"""A partner kit in a package of its own: the documented example (docs/examples/harbor_pms),
installed into a temporary folder with a real entry point, as `pip install` would."""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "harbor_pms"
PACKAGE = "interlink_kit_harbor"


def install_example_kit(site: Path) -> Path:
    """Writes the package and its dist-info into ``site``; put ``site`` on sys.path to use it."""
    package = site / PACKAGE
    (package / "kit").mkdir(parents=True)
    for name in ("kit.toml", "mapping.toml", "inbound.schema.json"):
        shutil.copy(EXAMPLE / name, package / "kit" / name)
    (package / "__init__.py").write_text(
        "from pathlib import Path\n\nKIT = Path(__file__).parent / 'kit'\n"
    )
    info = site / "interlink_kit_harbor-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: interlink-kit-harbor\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[interlink.partner_kits]\nharbor_pms = {PACKAGE}:KIT\n"
    )
    return site
