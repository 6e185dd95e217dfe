"""Wrapper codes that make a real QE executable fail for real, for the failure-branch tests.

A wrapper is an ``InstalledCode`` (on the same computer, with the same prepend text as the real
code) whose executable is a small bash script in a temporary folder. The script runs the real
``pw.x``, ``projwfc.x`` or ``pp.x`` and makes that run fail in one of these ways:

- ``exit``: an unknown variable is added to the first namelist of ``aiida.in``; the executable
  stops with its own "Error in routine read_namelists" and a non-zero exit status;
- ``killed``: the executable runs in the background and gets SIGKILL once its stdout contains a
  ``progress`` text ``progress_count`` times (for pw.x: the second SCF iteration, or the n-th MD
  step), as an out-of-memory kill would;
- ``walltime``: ``max_seconds`` in ``aiida.in`` is set to 0.1 s, so pw.x stops at its first
  time check ("Maximum CPU time exceeded") with a restart file, as on a queue's walltime;
- ``set``: one variable of a namelist of ``aiida.in`` is set to a value (``setting``, e.g.
  ``("ELECTRONS", "electron_maxstep", "2")``: pw.x then really fails to converge the SCF);
- ``damage``: the executable runs normally, then one of its output files is damaged by
  :func:`damage_file` (truncated, or bytes overwritten in a seeded stretch), as a crash or a full
  disk would leave it;
- ``hold``: the script writes ``started`` beside itself and waits (at most ``HOLD_SECONDS``)
  without running anything, so that a test can kill the calculation from AiiDA meanwhile.

With ``first_only`` only the first run of the wrapper fails (an atomic ``mkdir`` marker); later runs
(other snapshots, restarts) run the real executable untouched. For ``killed`` the first run to reach
the progress is the one killed (a run that ends before it is left alone). Every script logs what it did to
``wrapper.log`` beside itself. The wrapper code has its own node, so AiiDA's cache never takes a
failing run for a good one of the real code (and vice versa).
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

MODES = ("exit", "killed", "walltime", "set", "damage", "hold")
DAMAGES = ("truncate", "overwrite", "garble-line")
#: Seconds a ``hold`` wrapper waits before giving up on being killed.
HOLD_SECONDS = 600
UNKNOWN_VARIABLE = "xesml_not_a_qe_variable"

SCRIPT = r"""#!/bin/bash
# aiida-xesml test wrapper around {real}: mode {mode}{first_note}
# mpirun starts one copy per MPI rank; each runs the real executable as its rank.
real={real}
folder={folder}
log="$folder/wrapper.log"
rank=${{OMPI_COMM_WORLD_RANK:-${{PMI_RANK:-0}}}}
claimed() {{  # with first_only: whether this run's folder is the first to claim the fault (all ranks agree)
    [ "{first_only}" = yes ] || return 0
    mkdir "$folder/first-run" 2>/dev/null && pwd > "$folder/first-run/dir.tmp" && mv "$folder/first-run/dir.tmp" \
        "$folder/first-run/dir"
    for _ in $(seq 200); do [ -s "$folder/first-run/dir" ] && break; sleep 0.05; done
    [ "$(cat "$folder/first-run/dir")" = "$(pwd)" ] && return 0
    [ "$rank" = 0 ] && echo "$(pwd): later run, untouched" >> "$log"
    return 1
}}
# a kill claims the fault when it happens (runs that end before the progress are not the first)
[ "{mode}" = killed ] || claimed || exec "$real" "$@"
[ "$rank" = 0 ] && echo "$(pwd): mode {mode}" >> "$log"
case "{mode}" in
exit)
    grep -q "{unknown}" aiida.in || sed -i '0,/^ *&[A-Za-z]*/s//&\n  {unknown} = 1/' aiida.in
    exec "$real" "$@" < aiida.in  # projwfc.x and pp.x read it from stdin, opened before the edit
    ;;
killed)
    "$real" "$@" <&0 &
    pid=$!
    for _ in $(seq 12000); do
        [ "$(grep -c "{progress}" aiida.out 2>/dev/null)" -ge {progress_count} ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ "$(grep -c "{progress}" aiida.out 2>/dev/null)" -ge {progress_count} ]; then
        if claimed; then
            kill -KILL "$pid" 2>/dev/null && echo "$(pwd): rank $rank killed pid $pid" >> "$log"
        fi
    else
        echo "$(pwd): rank $rank ended before the progress, untouched" >> "$log"
    fi
    wait "$pid"
    exit $?
    ;;
walltime)
    sed -i -E 's/^( *max_seconds *= *)[^,]*/\10.1/' aiida.in
    grep -q "max_seconds" aiida.in || sed -i '0,/^ *&CONTROL/Is//&\n  max_seconds = 0.1/' aiida.in
    exec "$real" "$@" < aiida.in
    ;;
set)
    if grep -Eqi "^ *{variable} *=" aiida.in; then
        sed -i -E 's/^( *{variable} *= *)[^,]*/\1{value}/I' aiida.in
    else
        sed -i '0,/^ *&{namelist}/Is//&\n  {variable} = {value}/' aiida.in
    fi
    exec "$real" "$@" < aiida.in
    ;;
damage)
    "$real" "$@"
    status=$?
    [ "$rank" = 0 ] && {python} {damage_module} {damage} "{target}" {seed} >> "$log" 2>&1
    exit $status
    ;;
hold)
    echo $$ > "$folder/started"
    sleep {hold_seconds}
    exit 1
    ;;
esac
"""


@dataclass(frozen=True)
class Wrapper:
    """A wrapper code and its folder (``wrapper.log``, the ``first-run`` and ``started`` markers)."""

    code: object
    folder: Path

    @property
    def log(self) -> str:
        path = self.folder / "wrapper.log"
        return path.read_text() if path.is_file() else ""

    @property
    def started(self) -> bool:
        return (self.folder / "started").is_file()


def make_wrapper(real_code, folder: Path, mode: str, *, first_only: bool = False, progress: str = "",
                 progress_count: int = 1, damage: str = "overwrite", target: str = "aiida.out", seed: int = 0,
                 setting: tuple[str, str, str] = ("", "", ""), label: str | None = None):
    """Store and return a :class:`Wrapper` around ``real_code`` (see the module docstring for ``mode``).

    :param progress, progress_count: ``killed``: the run is killed once its stdout holds ``progress``
        ``progress_count`` times.
    :param damage, target, seed: ``damage``: how (:data:`DAMAGES`), which file (relative to the
        calculation's folder) and with which seed the output is damaged.
    :param setting: ``set``: (namelist, variable, value) written into ``aiida.in``.
    """
    from aiida import orm

    if mode not in MODES:
        raise ValueError(f"unknown wrapper mode {mode!r}; use one of {MODES}")
    if mode == "killed" and not progress:
        raise ValueError("mode 'killed' needs the `progress` text to wait for")
    if damage not in DAMAGES:
        raise ValueError(f"unknown damage {damage!r}; use one of {DAMAGES}")
    if mode == "set" and not all(setting):
        raise ValueError("mode 'set' needs `setting` = (namelist, variable, value)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"{Path(real_code.get_executable()).name}-{mode}.sh"
    script.write_text(SCRIPT.format(
        real=real_code.get_executable(), folder=folder, mode=mode, first_only="yes" if first_only else "no",
        first_note=" (first run only)" if first_only else "", unknown=UNKNOWN_VARIABLE, progress=progress,
        progress_count=int(progress_count),
        python=sys.executable, damage_module=Path(__file__).resolve(), damage=damage, target=target, seed=seed,
        hold_seconds=HOLD_SECONDS, namelist=setting[0], variable=setting[1], value=setting[2]))
    script.chmod(0o755)
    code = orm.InstalledCode(
        label=label or f"{script.stem}-{folder.name}", computer=real_code.computer, filepath_executable=str(script),
        default_calc_job_plugin=real_code.default_calc_job_plugin, prepend_text=real_code.prepend_text,
        with_mpi=True, description=f"test wrapper: {real_code.get_executable()} ({mode})").store()
    return Wrapper(code, folder)


def damage_file(path: Path, how: str, seed: int) -> str:
    """Damage ``path`` in place, reproducibly for a ``seed``; return what was done.

    - ``truncate``: keep the first 30-45 % of the bytes (seeded), as an interrupted write would;
    - ``overwrite``: overwrite 2,000 bytes starting in the middle third (seeded offset) with seeded
      printable bytes that are not digits, as a crash that scribbles over a file would;
    - ``garble-line``: in the first line that holds ``plot_num``, ``JOB DONE`` or ``<PROJECTIONS``,
      replace its digits by ``#`` (a single damaged line a parser may not expect).
    """
    rng = random.Random(seed)
    data = bytearray(path.read_bytes())
    size = len(data)
    if how == "truncate":
        keep = int(size * rng.uniform(0.30, 0.45))
        path.write_bytes(bytes(data[:keep]))
        return f"truncated {path.name} from {size} to {keep} bytes (seed {seed})"
    if how == "overwrite":
        start = rng.randrange(size // 3, 2 * size // 3)
        alphabet = b"abcdefghijklmnopqrstuvwxyz*#@!?"
        stretch = bytes(rng.choice(alphabet) for _ in range(2000))
        data[start:start + len(stretch)] = stretch
        path.write_bytes(bytes(data[:size]))
        return f"overwrote {path.name} bytes {start}..{start + len(stretch)} of {size} (seed {seed})"
    if how == "garble-line":
        lines = data.decode(errors="replace").splitlines(keepends=True)
        for index, line in enumerate(lines):
            if any(key in line for key in ("plot_num", "JOB DONE", "<PROJECTIONS")):
                lines[index] = "".join("#" if char.isdigit() else char for char in line)
                path.write_text("".join(lines))
                return f"garbled line {index + 1} of {path.name}: {lines[index].strip()!r}"
        raise ValueError(f"{path}: no line to garble")
    raise ValueError(f"unknown damage {how!r}")


if __name__ == "__main__":  # called by the ``damage`` wrapper scripts: HOW PATH SEED
    print(f"{Path.cwd()}: " + damage_file(Path(sys.argv[2]), sys.argv[1], int(sys.argv[3])))
