"""Run the real `videoq` command in a subprocess, on a temporary SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VIDEOQ = str(Path(sys.executable).with_name("videoq"))


@dataclass
class Cli:
    """The `videoq` command with an environment of its own."""

    db_path: Path
    env: dict[str, str]

    @classmethod
    def on(cls, db_path: Path, **settings: str) -> Cli:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("VIDEOQ_", "T8STAR_", "QSTASH_", "SUPABASE_"))
        }
        env.update(
            {"VIDEOQ_DB": str(db_path), "VIDEOQ_SIM_SPEED": "400", "VIDEOQ_SIM_FAILURE_RATE": "0.2"}
        )
        env["VIDEOQ_LANG"] = "en"  # whatever the machine's locale; a test may ask for zh_CN
        env.update(settings)
        return cls(db_path, env)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VIDEOQ, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, timeout: float = 60) -> str:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"videoq {' '.join(args)} failed: {done.stderr}"
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [VIDEOQ, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
