"""Running a command with networking disabled, to prove the kernel path needs no internet."""

import shutil
import subprocess


def no_network_prefix() -> list[str]:
    """`unshare --net` where this machine permits it (root, or user namespaces), else []."""
    if shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    return ["unshare", "--net"] if probe.returncode == 0 else []
